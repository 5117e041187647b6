"""What one page of ``asyncRequests`` costs a user with many retained operations.

``python -m bench.listing`` starts its own nats-server (a free port, a temporary store removed
afterwards), provisions it, stores ``--operations`` finished views for one user (and as many for
other users, so the bucket is not the user's alone), indexes them as the edge does when they are
queued, serves the edge behind a real uvicorn server in this process, and times ``--requests``
sequential ``asyncRequests(first: N)`` calls from one client. It prints p50/p90/p99 in ms and
the process's CPU time per request (edge and client), then one line ``RESULT {...}`` as JSON.

The views are written directly rather than run, so seeding 10,000 takes seconds. On a code base
without the listing index (before it existed) the index step is skipped, which makes this same
file measure the old listing too: ``PYTHONPATH=<old checkout> python bench/listing.py``.
"""

import argparse
import asyncio
import contextlib
import functools
import importlib
import json
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import nats
import uvicorn

from contracts.names import VIEW_BUCKET, view_key
from contracts.view import OperationView, TaskStatus, encode_view
from services.common.nats_server import free_port, nats_server_command, wait_for_port
from services.common.settings import Settings
from services.edge.app import create_app as create_edge
from services.provision import provision_nats

TENANT, USER = "default", "anonymous"  # the edge's principal with authentication off
RESPONSE = {"data": {"ledger": [{"account": f"{n:04}", "balance": n * 10.5} for n in range(8)]}}
CONCURRENCY = 256


def percentile(samples: list[float], q: float) -> float:
    """The q-quantile of ``samples`` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def bounded(jobs: list[Callable[[], Awaitable[Any]]]) -> None:
    """Run ``jobs`` with at most CONCURRENCY at once."""
    gate = asyncio.Semaphore(CONCURRENCY)

    async def one(job: Callable[[], Awaitable[Any]]) -> None:
        async with gate:
            await job()

    await asyncio.gather(*(one(job) for job in jobs))


def finished_view(user: str, operation_id: str, created: datetime) -> OperationView:
    """A view as the projector stores it for a finished operation."""
    return OperationView(
        operation_id=operation_id,
        tenant=TENANT,
        principal=user,
        status=TaskStatus.SUCCESS,
        created_at=created,
        started_at=created,
        completed_at=created + timedelta(milliseconds=5),
        attempts=1,
        response=RESPONSE,
        last_sequence=3,
        terminal_sequence=3,
    )


async def seed(settings: Settings, operations: int) -> bool:
    """Store the views (and, where the code has one, the index); True if indexed."""
    nc = await nats.connect(settings.nats_url)
    try:
        js = nc.jetstream()
        views = await js.key_value(VIEW_BUCKET)
        start = datetime.now(UTC) - timedelta(hours=1)
        ids = {user: [str(uuid.uuid4()) for _ in range(operations)] for user in (USER, "other")}

        async def store(user: str, n: int, operation_id: str) -> None:
            view = finished_view(user, operation_id, start + timedelta(milliseconds=n))
            await views.put(view_key(TENANT, user, operation_id), encode_view(view))

        await bounded(
            [
                functools.partial(store, user, n, operation_id)
                for user, operation_ids in ids.items()
                for n, operation_id in enumerate(operation_ids)
            ]
        )
        try:
            listing_module = importlib.import_module("services.common.listing")
        except ImportError:
            return False
        listing = listing_module.Listing.over(nc)
        for user, operation_ids in ids.items():
            await bounded(
                [functools.partial(listing.record, TENANT, user, op) for op in operation_ids]
            )
        return True
    finally:
        await nc.close()


@contextlib.asynccontextmanager
async def edge(settings: Settings) -> AsyncIterator[str]:
    """The edge behind uvicorn; its base URL."""
    config = uvicorn.Config(
        create_edge(settings), host="127.0.0.1", port=settings.http_port, log_level="warning"
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{settings.http_port}"
    finally:
        server.should_exit = True
        await task


async def measure(settings: Settings, options: argparse.Namespace) -> dict[str, Any]:
    """Seed, then time the listing calls."""
    began = time.perf_counter()
    indexed = await seed(settings, options.operations)
    seeded_s = time.perf_counter() - began
    query = f"{{ asyncRequests(first: {options.first}) {{ operationId status data createdAt }} }}"
    samples = []
    cpu_s = 0.0
    async with (
        edge(settings) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=60) as client,
    ):
        for n in range(options.warmup + options.requests):
            started, started_cpu = time.perf_counter(), time.process_time()
            response = await client.post("/graphql", json={"query": query})
            elapsed = time.perf_counter() - started
            if n >= options.warmup:
                cpu_s += time.process_time() - started_cpu
            listed = response.json()["data"]["asyncRequests"]
            if len(listed) != min(options.first, options.operations):
                raise SystemExit(
                    f"listed {len(listed)}, not {options.first}: {response.text[:300]}"
                )
            if n >= options.warmup:
                samples.append(elapsed * 1000)
    return {
        "operations": options.operations,
        "first": options.first,
        "indexed": indexed,
        "seed_s": round(seeded_s, 1),
        "requests": len(samples),
        "p50_ms": round(statistics.median(samples), 2),
        "p90_ms": round(percentile(samples, 0.9), 2),
        "p99_ms": round(percentile(samples, 0.99), 2),
        # Edge and client together (one process): less at the mercy of other load than latency.
        "cpu_ms_per_request": round(cpu_s * 1000 / len(samples), 2),
    }


async def main(options: argparse.Namespace, nats_url: str) -> None:
    """Provision the server, measure, print."""
    settings = Settings(
        nats_url=nats_url, http_port=free_port(), max_active_per_user=0, min_start_interval_s=0
    )
    await provision_nats(settings)
    result = await measure(settings, options)
    print(
        f"asyncRequests(first: {options.first}), {options.operations} retained operations: "
        f"p50 {result['p50_ms']} ms, p90 {result['p90_ms']} ms, p99 {result['p99_ms']} ms, "
        f"CPU {result['cpu_ms_per_request']} ms a request"
    )
    print("RESULT " + json.dumps(result))


def run(options: argparse.Namespace) -> None:
    """Run nats-server in a temporary directory for the measurement."""
    with tempfile.TemporaryDirectory() as directory:
        port = free_port()
        server = subprocess.Popen(  # noqa: S603 (nats-server from this environment)
            nats_server_command(store_dir=Path(directory) / "js", port=port),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(port)
            asyncio.run(main(options, f"nats://127.0.0.1:{port}"))
        finally:
            server.terminate()
            server.wait(10)


def parse_options() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=10_000)
    parser.add_argument("--first", type=int, default=100)
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    return parser.parse_args()


if __name__ == "__main__":
    run(parse_options())
