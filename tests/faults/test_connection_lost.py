"""A NATS connection the client gives up on ends the service, with status 75 and a line that
says why, so a supervisor starts it again: never a process running connected to nothing."""

import asyncio
import signal
import time
from pathlib import Path

import pytest

from services.common.nats_server import free_port
from services.common.runtime import EXIT_NATS_LOST
from tests.faults.conftest import FAST_RECOVERY
from tests.support.nats_servers import NatsServer, start_server
from tests.support.processes import ServiceProcess, ServiceStack

pytestmark = [pytest.mark.faults, pytest.mark.nats, pytest.mark.e2e]

LOGIN = 'authorization { users = [ { user: "asyncgate", password: "before-rotation" } ] }'


async def test_a_login_nats_stops_accepting_ends_every_service_with_status_75(
    tmp_path: Path,
) -> None:
    with start_server(tmp_path, extra_config=LOGIN) as server:
        env = FAST_RECOVERY | {
            "ASYNCGATE_NATS_USER": "asyncgate",
            "ASYNCGATE_NATS_PASSWORD": "before-rotation",
        }
        async with ServiceStack(server.url, tmp_path / "services", env) as stack:
            # An operator rotates the password and reloads the server; the running services
            # still hold the old one, and nats-py does not reconnect after that refusal.
            config = server.config_path.read_text(encoding="utf-8")
            server.config_path.write_text(
                config.replace("before-rotation", "after-rotation"), encoding="utf-8"
            )
            server.signal(signal.SIGHUP)
            deadline = time.monotonic() + 20
            codes = {
                p.name: p.wait_exit(max(0.1, deadline - time.monotonic())) for p in stack.processes
            }
            logs = {p.name: p.log_text() for p in stack.processes}

    assert codes == {
        "edge": EXIT_NATS_LOST,
        "executor": EXIT_NATS_LOST,
        "projector": EXIT_NATS_LOST,
    }
    for name, log in logs.items():
        assert f"{name}: the NATS connection was closed and will not reconnect" in log
        assert "authorization" in log.lower()


@pytest.mark.parametrize("service", ["edge", "executor", "projector"])
async def test_a_service_still_waiting_for_nats_stops_when_told_to(
    service: str, tmp_path: Path
) -> None:
    nowhere = f"nats://127.0.0.1:{free_port()}"
    env = {"ASYNCGATE_NATS_URL": nowhere, "ASYNCGATE_HTTP_PORT": str(free_port())}
    with ServiceProcess(service, env, tmp_path) as waiting:
        await asyncio.sleep(2)  # long enough to be retrying its first connection
        assert waiting.running, waiting.log_tail()

        code = waiting.terminate(timeout_s=5)  # raises if SIGTERM is ignored

    # Stopped by the signal (the edge, like uvicorn) or cleanly (FastStream): never a failure.
    assert code in (0, -signal.SIGTERM), waiting.log_tail()


async def test_services_stopped_while_nats_is_down_exit_cleanly(
    server: NatsServer, stack: ServiceStack
) -> None:
    server.kill()
    await asyncio.sleep(1)  # each service notices and starts reconnecting

    codes = {process.name: process.terminate(timeout_s=10) for process in stack.processes}
    logs = {process.name: process.log_text() for process in stack.processes}

    # The edge ends by the signal, as uvicorn does; the others with 0. No traceback anywhere.
    assert codes == {"edge": -signal.SIGTERM, "executor": 0, "projector": 0}
    assert not [name for name, log in logs.items() if "Traceback" in log]
