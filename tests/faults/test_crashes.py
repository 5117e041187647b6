"""SIGKILL an executor, the projector or nats-server itself while operations are submitted and
run: every acknowledged operation ends, exactly once, and the views equal a fresh replay."""

import asyncio

import pytest

from contracts.events import OperationStarted
from tests.faults.conftest import inspector
from tests.stack import eventually, stored_events
from tests.support.audit import Submissions, audit, submit_many
from tests.support.nats_servers import NatsServer
from tests.support.processes import ServiceStack

pytestmark = [pytest.mark.faults, pytest.mark.nats, pytest.mark.e2e]


async def test_an_executor_killed_during_30_slow_operations_loses_none(
    stack: ServiceStack, server: NatsServer
) -> None:
    look = await inspector([server.url])
    seen = await submit_many(stack.base_url, "{ slowReport(seconds: 3) }", count=30, clients=10)
    assert len(seen.accepted) == 30, seen.describe()

    async def all_running() -> bool | None:
        started = {
            e.operation_id
            for _, e in await stored_events(look.js)
            if isinstance(e, OperationStarted)
        }
        return True if started >= set(seen.accepted) else None

    await eventually(all_running, what="all 30 operations running")
    stack.executor.kill()
    stack.executor.start()

    report = await audit(look.js, seen.accepted, timeout_s=60)
    await look.nc.close()

    assert report.problems() == []
    assert report.ended == 30
    assert report.statuses == {"SUCCESS": 30}
    # Every one was running when its executor died, and was run again.
    assert report.attempts == {2: 30}


async def test_the_projector_killed_during_300_submits_loses_no_view(
    stack: ServiceStack, server: NatsServer
) -> None:
    look = await inspector([server.url])
    seen = Submissions()
    load = asyncio.create_task(
        submit_many(stack.base_url, "{ slowReport(seconds: 0) }", count=300, clients=16, seen=seen)
    )
    await eventually(lambda: seen.at_least(100), what="a hundred submissions acknowledged")
    stack.projector.kill()
    await asyncio.sleep(1)
    stack.projector.start()
    await load

    report = await audit(look.js, seen.accepted, timeout_s=90)
    await look.nc.close()

    assert len(seen.accepted) == 300, seen.describe()
    assert report.problems() == []
    assert report.statuses == {"SUCCESS": 300}


async def test_nats_server_killed_during_submits_and_runs_loses_no_acknowledged_operation(
    stack: ServiceStack, server: NatsServer
) -> None:
    seen = Submissions()
    load = asyncio.create_task(
        submit_many(
            stack.base_url,
            "{ slowReport(seconds: 0.5) }",
            count=400,
            clients=8,
            seen=seen,
            pause_s=0.02,
        )
    )
    await eventually(lambda: seen.at_least(60), what="sixty submissions acknowledged")
    server.kill()
    # Longer than the edge waits for NATS to come back (2 s), so some submits are refused.
    await asyncio.sleep(4)
    server.start()
    await load

    look = await inspector([server.url])
    report = await audit(look.js, seen.accepted, timeout_s=120)
    await look.nc.close()

    # Refused while the server was down, with the code that says "try again".
    assert set(seen.refused) <= {"SERVICE_UNAVAILABLE"}, seen.describe()
    assert seen.refused["SERVICE_UNAVAILABLE"] > 0, seen.describe()
    assert report.problems() == []
    assert report.statuses == {"SUCCESS": len(seen.accepted)}
    assert all(process.running for process in stack.processes)
