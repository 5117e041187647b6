"""``asyncgate ops`` as an operator uses it, against a real nats-server and real services: the
commands run in-process through typer's runner (in a thread, beside the services' event loop),
and as ``python -m services.cli ops`` where the exit status and the stream separation matter."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import msgspec
import nats
import pytest
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.kv import KeyValue
from typer.testing import CliRunner, Result

from contracts.dead_letters import SEQUENCE_HEADER, SIZE_HEADER, STREAM_HEADER, SUBJECT_HEADER
from contracts.events import OperationRequested
from contracts.names import STREAM, VIEW_BUCKET, view_key
from contracts.view import OperationView, TaskStatus, decode_view, encode_view
from services.common.event_log import EventLog
from services.common.identity import ANONYMOUS
from services.common.jetstream import connect
from services.common.nats_server import free_port, record_nats_url
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.ops.app import app
from services.projector.app import create_app as create_projector
from services.provision import provision_nats
from tests.integration.test_nats_permissions import (  # noqa: F401 (secured_nats: a fixture)
    PASSWORDS,
    SecuredNats,
    secured_nats,
)
from tests.integration.test_projector import lifecycle
from tests.seed_requests import ASYNC_QUERY
from tests.stack import eventually, graphql, running, serving_edge, stored_views
from tests.support.processes import REPO_ROOT

pytestmark = [pytest.mark.nats, pytest.mark.e2e]


async def ops(settings: Settings, *arguments: str) -> Result:
    """``asyncgate ops ARGUMENTS`` in-process, pointed at the test's NATS (with its login)."""
    runner = CliRunner()
    env = {"ASYNCGATE_NATS_URL": settings.nats_url}
    if settings.nats_user:
        env |= {"ASYNCGATE_NATS_USER": settings.nats_user}
        env |= {"ASYNCGATE_NATS_PASSWORD": settings.nats_password.get_secret_value()}
    return await asyncio.to_thread(runner.invoke, app, list(arguments), env=env)


async def ops_json(settings: Settings, *arguments: str) -> Any:
    """The parsed output of ``asyncgate ops ARGUMENTS --json`` (which must succeed)."""
    result = await ops(settings, *arguments, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def ops_process(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -m services.cli ops ARGUMENTS`` with only the given ASYNCGATE_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "ops", *arguments],
        cwd=REPO_ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def finished_operation(settings: Settings, js: JetStreamContext) -> str:
    """Run the seed query through the edge, executor and projector; its operation id once its
    view says SUCCESS."""
    async with serving_edge(settings) as client:
        submitted = await graphql(client, ASYNC_QUERY)
    operation_id: str = submitted["data"]["asyncQuery"]["operationId"]
    key = view_key(ANONYMOUS.tenant, ANONYMOUS.user, operation_id)

    async def succeeded() -> OperationView | None:
        view = (await stored_views(js)).get(key)
        return view if view is not None and view.status == TaskStatus.SUCCESS else None

    await eventually(succeeded, what="the operation succeeding")
    return operation_id


async def test_show_prints_the_full_timeline_of_a_finished_operation(
    settings: Settings, js: JetStreamContext
) -> None:
    async with running(create_projector(settings)), running(create_executor(settings)):
        operation_id = await finished_operation(settings, js)
        shown = await ops(settings, "show", operation_id)
        detail = await ops_json(settings, "show", operation_id)
        listed = await ops_json(settings, "list", "--tenant", ANONYMOUS.tenant)
        failed = await ops_json(settings, "list", "--status", "error", "--since", "1h")
        unknown = await ops(settings, "show", "no-such-operation")

    timeline = detail["timeline"]
    # The seed query ends at once: its start rides on its ending (no event of its own), and
    # the ending's row names the attempt and the executor that ran it.
    assert [entry["type"] for entry in timeline] == ["requested", "completed"]
    ended = timeline[1]
    assert ended["attempt"] == 1
    assert ended["worker"]
    assert timeline[0]["stored_at"] <= ended["stored_at"]
    assert detail["view"]["status"] == "SUCCESS"
    assert detail["view"]["attempts"] == 1
    assert shown.exit_code == 0, shown.output
    for entry in timeline:
        assert f" {entry['sequence']} " in shown.stdout
        assert entry["type"] in shown.stdout
    assert ended["worker"] in shown.stdout
    assert [view["operation_id"] for view in listed] == [operation_id]
    assert failed == []
    assert unknown.exit_code == 1
    assert "no operation no-such-operation" in unknown.stderr


async def test_replay_verify_lists_a_view_altered_by_hand_and_replay_repairs_it(
    settings: Settings, js: JetStreamContext, kv: KeyValue
) -> None:
    env = {"ASYNCGATE_NATS_URL": settings.nats_url}
    async with running(create_projector(settings)), running(create_executor(settings)):
        operation_id = await finished_operation(settings, js)
        key = view_key(ANONYMOUS.tenant, ANONYMOUS.user, operation_id)
        healthy = await asyncio.to_thread(ops_process, "replay", "--verify", env=env)
        original = decode_view((await kv.get(key)).value or b"")
        altered = msgspec.structs.replace(original, status=TaskStatus.ERROR, code="BY_HAND")
        await kv.put(key, encode_view(altered))
        stray = msgspec.structs.replace(original, operation_id="op-stray", attempts=9)
        await kv.put(view_key(ANONYMOUS.tenant, ANONYMOUS.user, "op-stray"), encode_view(stray))
        broken = await asyncio.to_thread(ops_process, "replay", "--verify", env=env)
        reported = await ops(settings, "replay", "--verify", "--json")
        repaired = await ops(settings, "replay")
        again = await ops(settings, "replay", "--verify")
        views = await stored_views(js)

    assert healthy.returncode == 0, healthy.stdout + healthy.stderr
    assert "0 differing from the bucket" in healthy.stdout
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert f"changed    {key}  status: stored 'ERROR', replayed 'SUCCESS'; " in broken.stdout
    assert "code: stored 'BY_HAND', replayed None" in broken.stdout
    stray_key = view_key(ANONYMOUS.tenant, ANONYMOUS.user, "op-stray")
    assert f"extra      {stray_key}  the bucket has a view; the stream has no event" in (
        broken.stdout
    )
    assert reported.exit_code == 1
    summary = json.loads(reported.stdout)
    assert {(d["key"], d["kind"]) for d in summary["differences"]} == {
        (key, "changed"),
        (stray_key, "extra"),
    }
    assert repaired.exit_code == 0, repaired.output
    assert "1 written, 1 removed" in repaired.stdout
    assert again.exit_code == 0, again.output
    assert views == {key: original}


async def test_a_dead_letter_is_listed_shown_requeued_then_folded_and_purged(
    settings: Settings, js: JetStreamContext, event_log: EventLog
) -> None:
    # One delivery only: the projector sets an event aside as soon as folding it fails.
    settings = settings.replace(projector_max_deliver=1)
    request = OperationRequested(
        operation_id="op-lost", tenant="t1", principal="u1", trace_id="trace", query="{ n }"
    )
    async with running(create_projector(settings)):
        # The view bucket is gone while the request is folded (an operator's slip, say).
        await js.delete_key_value(VIEW_BUCKET)
        await event_log.append(request, msg_id=request.event_id)
        [letter] = await eventually(lambda: _letters(settings, 1), what="the request set aside")
        await provision_nats(settings)

        shown = await ops(settings, "dead-letters", "show", str(letter["sequence"]))
        requeued = await ops(settings, "dead-letters", "requeue", str(letter["sequence"]))
        key = view_key("t1", "u1", "op-lost")
        folded = await eventually(
            lambda: _view(js, key), what="the requeued request folded into its view"
        )
        after_requeue = await ops_json(settings, "dead-letters", "list")

        await js.publish("ops.events.t1.op-bad.requested", b"not an event")
        [poison] = await eventually(
            lambda: _letters(settings, 1), what="the unreadable event set aside"
        )
        purged = await ops(settings, "dead-letters", "purge", str(poison["sequence"]))
        after_purge = await ops_json(settings, "dead-letters", "list")

    assert letter["service"] == "projector"
    assert letter["original_subject"] == "ops.events.t1.op-lost.requested"
    assert letter["reason"].startswith("not folded in 1 deliveries")
    assert shown.exit_code == 0, shown.output
    assert "ops.events.t1.op-lost.requested" in shown.stdout
    assert "not folded in 1 deliveries" in shown.stdout
    assert '"operation_id":"op-lost"' in shown.stdout  # the excerpt
    assert requeued.exit_code == 0, requeued.output
    assert f"dead letter {letter['sequence']} requeued" in requeued.stdout
    assert folded.status == TaskStatus.QUEUED
    assert after_requeue == []
    assert purged.exit_code == 0, purged.output
    assert after_purge == []


async def _letters(settings: Settings, count: int) -> list[dict[str, Any]] | None:
    """The dead letters as ``ops dead-letters list --json`` prints them, once there are
    ``count``."""
    letters: list[dict[str, Any]] = await ops_json(settings, "dead-letters", "list")
    return letters if len(letters) == count else None


async def _view(js: JetStreamContext, key: str) -> OperationView | None:
    return (await stored_views(js)).get(key)


async def test_tail_follows_events_as_json_lines(settings: Settings, js: JetStreamContext) -> None:
    async with running(create_projector(settings)), running(create_executor(settings)):
        tail = await asyncio.to_thread(
            subprocess.Popen,
            [sys.executable, "-m", "services.cli", "ops", "tail", "--count", "2", "--json"],
            cwd=REPO_ROOT,
            env=os.environ | {"ASYNCGATE_NATS_URL": settings.nats_url},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert tail.stderr is not None
            following = await asyncio.to_thread(tail.stderr.readline)
            operation_id = await finished_operation(settings, js)
            output, _ = await asyncio.to_thread(tail.communicate, timeout=30)
        finally:
            tail.kill()

    assert following.startswith("following ops.events.*.*.*")
    events = [json.loads(line) for line in output.splitlines()]
    assert [event["type"] for event in events] == ["requested", "completed"]
    assert {event["operation_id"] for event in events} == {operation_id}
    assert tail.returncode == 0


def test_unreachable_nats_is_one_line_and_exit_status_2() -> None:
    url = f"nats://127.0.0.1:{free_port()}"

    finished = ops_process("list", env={"ASYNCGATE_NATS_URL": url})

    assert finished.returncode == 2
    [line] = finished.stderr.splitlines()
    assert line.startswith(f"asyncgate ops: cannot reach NATS at {url} (ASYNCGATE_NATS_URL): ")
    assert finished.stdout == ""


async def test_ops_finds_the_nats_that_asyncgate_up_recorded(
    settings: Settings, nc: NatsClient, tmp_path: Path
) -> None:
    record_nats_url(tmp_path, settings.nats_url)

    found = await asyncio.to_thread(
        ops_process, "dead-letters", "list", "--json", env={"ASYNCGATE_DATA_DIR": str(tmp_path)}
    )

    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout) == []


async def test_the_ops_user_may_do_everything_ops_does(
    secured_nats: SecuredNats,  # noqa: F811 (the fixture imported above, asked for by name)
) -> None:
    operator = Settings(nats_url=secured_nats.url, nats_user="ops", nats_password=PASSWORDS["ops"])
    nc = await connect(operator, "asyncgate-test-ops")
    projector = await nats.connect(
        secured_nats.url, user="projector", password=PASSWORDS["projector"]
    )
    try:
        # Events stored as a service would (the ops user may store on any event subject).
        event_log = EventLog(nc, nc.jetstream())
        for event in lifecycle("op-1"):
            await event_log.append(event, msg_id=event.event_id)
        await event_log.close()
        rebuilt = await ops(operator, "replay")
        verified = await ops(operator, "replay", "--verify")
        listed = await ops_json(operator, "list")
        shown = await ops_json(operator, "show", "op-1")
        # A dead letter as the projector stores one, for the request.
        await projector.jetstream().publish(
            "ops.deadletter.projector",
            b"{}",
            headers={
                STREAM_HEADER: STREAM,
                SEQUENCE_HEADER: str(shown["timeline"][0]["sequence"]),
                SUBJECT_HEADER: "ops.events.t1.op-1.requested",
                SIZE_HEADER: "2",
            },
        )
        [letter] = await ops_json(operator, "dead-letters", "list")
        requeued = await ops(operator, "dead-letters", "requeue", str(letter["sequence"]))
        purged = await ops(operator, "dead-letters", "purge", "--all")
    finally:
        await projector.close()
        await nc.close()

    assert rebuilt.exit_code == 0, rebuilt.output
    assert "1 written, 0 removed, 0 left to a projector that wrote them meanwhile, 1 added" in (
        rebuilt.stdout
    )
    assert verified.exit_code == 0, verified.output
    assert [view["operation_id"] for view in listed] == ["op-1"]
    assert [entry["type"] for entry in shown["timeline"]] == [
        "requested",
        "started",
        "started",
        "completed",
    ]
    assert requeued.exit_code == 0, requeued.output
    assert purged.exit_code == 0, purged.output
    assert "Violation" not in secured_nats.log.read_text()
