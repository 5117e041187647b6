"""``asyncgate up`` as a user runs it: the whole stack in subprocesses, stopped with Ctrl-C
(SIGINT) and started again on the same data folder."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.common.nats_server import NATS_URL_FILE, free_port, port_is_free
from tests.seed_requests import (
    ASYNC_QUERY,
    ASYNC_REQUESTS,
    FETCH_RESULTS,
    HASURA_SEED_ID,
    HASURA_SEED_MUTATION,
    HASURA_SEED_SUBSCRIPTION,
    SEED_RESULT_DATA,
)
from tests.stack import eventually, graphql
from tests.ws_client import graphql_websocket

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

DEFAULT_NATS_PORT = 4222


@contextmanager
def default_nats_port_taken() -> Iterator[None]:
    """Hold port 4222 so ``up`` has to find another one (if someone else holds it, fine too)."""
    if not port_is_free(DEFAULT_NATS_PORT):
        yield
        return
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", DEFAULT_NATS_PORT))
        holder.listen()
        yield


@contextmanager
def stack_up(data_dir: Path, http_port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``asyncgate up``; on leaving, stop it with SIGINT like Ctrl-C and check it exits 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCGATE_")}
    env |= {
        "ASYNCGATE_DATA_DIR": str(data_dir),
        "ASYNCGATE_HTTP_PORT": str(http_port),
        # The test starts the seed's query and action back to back, as one user.
        "ASYNCGATE_MIN_START_INTERVAL_S": "0",
    }
    with log.open("ab") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up"], env=env, stdout=output, stderr=output
        )
    try:
        yield process
    finally:
        process.send_signal(signal.SIGINT)
        code = process.wait(timeout=60)
        assert code == 0, log.read_text()


def second_up_on_the_same_data(
    data_dir: Path, command: str = "up"
) -> subprocess.CompletedProcess[str]:
    """Run another ``asyncgate up`` (or ``command``) on ``data_dir`` while one runs."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCGATE_")}
    env |= {"ASYNCGATE_DATA_DIR": str(data_dir), "ASYNCGATE_HTTP_PORT": str(free_port())}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def ops_on_the_same_data(data_dir: Path, operation_id: str) -> subprocess.CompletedProcess[str]:
    """``asyncgate ops show`` told only the data directory: it must find NATS by itself."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "ops", "show", operation_id, "--json"],
        env=env | {"ASYNCGATE_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


async def ready(client: httpx.AsyncClient) -> bool | None:
    """True once the edge answers ready."""
    try:
        response = await client.get("/readyz")
    except httpx.TransportError:
        return None
    return True if response.status_code == 200 else None


async def check_hasura_seed(client: httpx.AsyncClient, http_port: int) -> None:
    """The Hasura seed's mutation and subscription, as written, against the demo action."""
    queued = await graphql(
        client, HASURA_SEED_MUTATION, {"order_input": {"product_id": "p-1", "quantity": 2}}
    )
    action_id = queued["data"]["place_order"]
    subscription = HASURA_SEED_SUBSCRIPTION.replace(HASURA_SEED_ID, action_id)
    async with graphql_websocket(f"ws://127.0.0.1:{http_port}/graphql") as ws:
        sid = await ws.start(subscription)
        pushed = (await asyncio.wait_for(ws.collect({sid}), 30))[sid]
    final = pushed[-1]["payload"]["data"]["place_order"]
    assert final["output"]["status"] == "placed"
    assert final["errors"] is None
    query = await graphql(
        client, f'{{ place_order(id: "{action_id}") {{ id created_at output errors }} }}'
    )
    assert query["data"]["place_order"]["id"] == action_id
    assert query["data"]["place_order"]["output"] == final["output"]


async def test_up_serves_the_seed_and_keeps_results_across_a_restart(tmp_path: Path) -> None:
    http_port = free_port()
    log = tmp_path / "up.log"
    base_url = f"http://127.0.0.1:{http_port}"
    async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
        with default_nats_port_taken(), stack_up(tmp_path / "data", http_port, log) as stack:
            await eventually(lambda: ready(client), timeout_s=60, what="the stack starting")
            submitted = await graphql(client, ASYNC_QUERY)
            operation_id = submitted["data"]["asyncQuery"]["operationId"]

            async def succeeded() -> dict[str, Any] | None:
                result = await graphql(client, FETCH_RESULTS, {"oid": operation_id})
                found: dict[str, Any] = result["data"]["asyncResult"]
                return found if found["status"] == "SUCCESS" else None

            before = await eventually(succeeded, what="the seed query finishing")
            page = await client.get("/graphql", headers={"accept": "text/html"})
            assert "graphiql" in page.text.lower()
            await check_hasura_seed(client, http_port)
            second = second_up_on_the_same_data(tmp_path / "data")
            found = ops_on_the_same_data(tmp_path / "data", operation_id)
            refused_clean = second_up_on_the_same_data(tmp_path / "data", "clean")

        output = log.read_text()
        assert f"GraphiQL: http://127.0.0.1:{http_port}/graphql" in output
        assert "embedded NATS with JetStream on port 4222" not in output
        assert "up | NATS: nats://127.0.0.1:" in output
        assert not (tmp_path / "data" / NATS_URL_FILE).exists(), "removed when the stack stops"
        assert found.returncode == 0, found.stderr
        assert json.loads(found.stdout)["view"]["status"] == "SUCCESS"
        # The embedded server acknowledges a write only once it is on disk.
        assert "sync_interval: always" in (tmp_path / "data" / "nats-server.conf").read_text()
        assert "Using configuration file" in output
        assert second.returncode == 1
        assert f"in use by another asyncgate up (pid {stack.pid}, NATS on port" in second.stdout
        assert refused_clean.returncode == 1
        assert f"a running asyncgate up uses {tmp_path / 'data'} (pid {stack.pid}" in (
            refused_clean.stderr
        )
        # Piped output: no terminal colour codes, from the supervisor or any service's logging.
        assert "\x1b[" not in output

        with stack_up(tmp_path / "data", http_port, log):
            await eventually(lambda: ready(client), timeout_s=60, what="the stack restarting")
            after = await graphql(client, FETCH_RESULTS, {"oid": operation_id})

            async def both_listed() -> list[dict[str, Any]] | None:
                # Listings come from the view, which may still be folding the last events.
                listed = await graphql(client, ASYNC_REQUESTS)
                operations: list[dict[str, Any]] = listed["data"]["asyncRequests"]
                return operations if len(operations) == 2 else None

            listed_operations = await eventually(both_listed, what="both operations listed")

    cleaned = second_up_on_the_same_data(tmp_path / "data", "clean")
    assert cleaned.returncode == 0, cleaned.stderr
    assert not (tmp_path / "data").exists()
    assert after["data"]["asyncResult"] == before
    assert before["data"] == SEED_RESULT_DATA
    # The seed query and the Hasura seed's action, newest first, both kept across the restart.
    assert listed_operations[1] == {"operationId": operation_id, "status": "SUCCESS"}
    assert listed_operations[0]["status"] == "SUCCESS"
