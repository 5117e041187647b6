"""The authenticated NATS setup of infra/nats: each service logs in as its own user and can do
its whole job, and nothing more. Against a real nats-server running that configuration."""

import asyncio
import dataclasses
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from services.common.nats_server import free_port, nats_server_binary, wait_for_port
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.seed_requests import ASYNC_QUERY, FETCH_RESULTS
from tests.stack import eventually, graphql, running, serving_edge
from tests.ws_client import graphql_websocket

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

INFRA = Path(__file__).parents[2] / "infra" / "nats"
PASSWORDS = {"edge": "edge-pw-1", "executor": "executor-pw-2", "projector": "projector-pw-3"}


@dataclasses.dataclass
class SecuredNats:
    """A server running infra/nats's configuration, and its log."""

    url: str
    log: Path


@pytest.fixture
def secured_nats(tmp_path: Path) -> Iterator[SecuredNats]:
    """infra/nats/nats.conf and permissions.conf, on a free port with a temporary store."""
    port = free_port()
    config = (INFRA / "nats.conf").read_text()
    config = config.replace("store_dir: /data", f"store_dir: {tmp_path / 'data'}")
    config = re.sub(r"listen: .*", f"listen: 127.0.0.1:{port}", config)
    config = re.sub(r"http: .*", "", config)
    (tmp_path / "nats.conf").write_text(config)
    (tmp_path / "permissions.conf").write_text((INFRA / "permissions.conf").read_text())
    env = os.environ | {
        f"ASYNCGATE_{name.upper()}_NATS_PASSWORD": pw for name, pw in PASSWORDS.items()
    }
    log = tmp_path / "nats.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [nats_server_binary(), "-c", str(tmp_path / "nats.conf")],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        wait_for_port(port)
        yield SecuredNats(url=f"nats://127.0.0.1:{port}", log=log)
    finally:
        process.terminate()
        process.wait(10)


def as_service(settings: Settings, service: str) -> Settings:
    """``settings`` with the service's own NATS login."""
    return dataclasses.replace(settings, nats_user=service, nats_password=PASSWORDS[service])


async def test_each_service_does_its_whole_job_as_its_own_user(
    settings: Settings, secured_nats: SecuredNats
) -> None:
    settings = dataclasses.replace(settings, nats_url=secured_nats.url)
    async with (
        running(create_projector(as_service(settings, "projector"))),
        running(create_executor(as_service(settings, "executor"))),
        serving_edge(as_service(settings, "edge")) as client,
    ):
        submitted = await graphql(client, ASYNC_QUERY)
        operation_id = submitted["data"]["asyncQuery"]["operationId"]
        early = await graphql(client, FETCH_RESULTS, {"oid": operation_id})
        url = str(client.base_url).replace("http://", "ws://") + "/graphql"
        async with graphql_websocket(url) as ws:
            sid = await ws.start(
                "subscription($id: String!) { asyncResult(id: $id) { status } }",
                {"id": operation_id},
            )
            pushed = (await asyncio.wait_for(ws.collect({sid}), 20))[sid]

        async def listed() -> list[dict[str, Any]] | None:
            response = await graphql(client, "{ asyncRequests { status } }")
            found: list[dict[str, Any]] = response["data"]["asyncRequests"]
            return found if found == [{"status": "SUCCESS"}] else None

        await eventually(listed, what="the operation listed as SUCCESS")

    assert early["data"]["asyncResult"]["operationId"] == operation_id
    assert pushed[-1]["payload"]["data"]["asyncResult"]["status"] == "SUCCESS"
    assert "Violation" not in secured_nats.log.read_text()


async def test_the_edge_cannot_forge_an_outcome_and_a_wrong_password_is_refused(
    secured_nats: SecuredNats,
) -> None:
    edge = await nats.connect(secured_nats.url, user="edge", password=PASSWORDS["edge"])
    try:
        with pytest.raises((nats.errors.Error, TimeoutError)):
            await edge.jetstream().publish("ops.events.t.op.completed", b"{}", timeout=1)
    finally:
        await edge.close()

    with pytest.raises((nats.errors.Error, OSError)):
        await nats.connect(
            secured_nats.url,
            user="executor",
            password="guess",
            max_reconnect_attempts=0,
            allow_reconnect=False,
            connect_timeout=2,
        )

    assert 'Publish Violation - Subject "ops.events.t.op.completed"' in secured_nats.log.read_text()


@pytest.mark.parametrize("config", ["nats.conf", "cluster-node.conf"])
def test_the_shipped_server_configurations_are_valid(config: str) -> None:
    env = os.environ | {"ASYNCGATE_NATS_NODE": "nats-1"}
    env |= {f"ASYNCGATE_{name.upper()}_NATS_PASSWORD": pw for name, pw in PASSWORDS.items()}

    checked = subprocess.run(
        [nats_server_binary(), "-c", config, "-t"],
        cwd=INFRA,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "is valid" in checked.stdout + checked.stderr
