"""Many distinct large documents, as an attacker sends them to exhaust the edge: its memory stays
bounded and another caller is still served promptly. The edge runs as a process of its own, so
its memory is its own; the comparison is within one run (idle, then under attack), never an
absolute time."""

import asyncio
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.support.nats_servers import start_server
from tests.support.processes import ServiceStack

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

# Enough to show an unbounded cache (600 such documents once took the edge to 499 MB, so 500
# would pass the bound twice over) while the test stays under a minute on a slow 2-core machine
# (each is parsed and validated off the loop, then queued).
DOCUMENTS = 500
MEMORY_BOUND_BYTES = 200 * 1024 * 1024
LATENCY_FACTOR_BOUND = 10
SUBMIT = "mutation($q: String!) { asyncQuery(query: $q) { status } }"
OTHER_CALLERS_QUERY = "{ useCompany(no: 1) { no } }"


def large_document(n: int) -> str:
    """A distinct valid document of about 19.5 KB and 1,900 tokens (under the 2,000 allowed)."""
    values = ", ".join(
        f'{{accountNo: {n * 1000 + i}, name: "account {i:05d} of a very long ledger export"}}'
        for i in range(230)
    )
    return (
        f"mutation Import{n} {{ useCompany(no: 1) {{ "
        f"generalLedgerAccount_create(values: [{values}]) {{ affectedRows }} }} }}"
    )


async def median_latency_ms(http: httpx.AsyncClient, until: Callable[[], bool]) -> float:
    """Another caller's median latency for a small query, sampled until ``until()`` (and at
    least 20 times)."""
    samples: list[float] = []
    while not until() or len(samples) < 20:
        started = time.perf_counter()
        response = await http.post("/graphql", json={"query": OTHER_CALLERS_QUERY})
        assert response.status_code == 200
        samples.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.01)
    return statistics.median(samples)


async def test_many_distinct_large_documents_leave_memory_bounded_and_others_served(
    tmp_path: Path,
) -> None:
    with start_server(tmp_path) as server:
        # The edge alone: no executor runs the queued imports and competes for the CPU.
        stack = ServiceStack(server.url, tmp_path / "services")
        await stack.provision()
        with stack.edge as edge:
            await edge.wait_ready()
            async with httpx.AsyncClient(base_url=stack.base_url, timeout=60) as http:
                idle_ms = await median_latency_ms(http, lambda: True)
                remaining = iter(range(DOCUMENTS))
                queued = 0

                async def attacker() -> None:
                    nonlocal queued
                    for n in remaining:
                        response = await http.post(
                            "/graphql",
                            json={"query": SUBMIT, "variables": {"q": large_document(n)}},
                        )
                        queued += response.json()["data"]["asyncQuery"]["status"] == "QUEUED"

                attack = asyncio.ensure_future(asyncio.gather(attacker(), attacker()))
                under_attack_ms = await median_latency_ms(http, attack.done)
                await attack
                peak = edge.memory_bytes(peak=True)

    assert queued == DOCUMENTS
    assert peak < MEMORY_BOUND_BYTES, f"peak {peak / 2**20:.0f} MiB"
    factor = under_attack_ms / idle_ms
    assert factor < LATENCY_FACTOR_BOUND, f"{idle_ms:.1f} ms idle, {under_attack_ms:.1f} under"
