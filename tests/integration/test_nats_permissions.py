"""The authenticated NATS setup of infra/nats: each service logs in as its own user and can do
its whole job, and nothing more. Against a real nats-server running that configuration."""

import asyncio
import dataclasses
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import nats.errors
import pytest

from contracts.events import (
    Correlation,
    OperationCancelRequested,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationRequested,
    OperationStarted,
    decode_event,
    encode_event,
    event_type,
)
from contracts.names import (
    DEAD_LETTER_STREAM,
    LIMITS_BUCKET,
    RESULTS_BUCKET,
    STREAM,
    VIEW_BUCKET,
    limits_key,
)
from contracts.view import TaskStatus, decode_view
from services.common.active_operations import decode_limits
from services.common.event_log import EventLog
from services.common.identity import ANONYMOUS
from services.common.nats_server import free_port, nats_server_binary, wait_for_port
from services.common.reply_inbox import ReplyInbox
from services.common.results import ResultStore
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from services.projector.view_repair import repair_recent_views
from services.projector.view_writer import ViewWriter
from services.provision import provision_nats
from tests.seed_requests import ASYNC_QUERY, FETCH_RESULTS
from tests.stack import eventually, graphql, projector_backlog, running, serving_edge
from tests.support.nats_servers import run_sync
from tests.ws_client import graphql_websocket

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

INFRA = Path(__file__).parents[2] / "infra" / "nats"
PASSWORDS = {
    "edge": "edge-pw-1",
    "executor": "executor-pw-2",
    "projector": "projector-pw-3",
    "provisioner": "provisioner-pw-4",
    "consumer": "consumer-pw-5",
    "ops": "ops-pw-6",
    "callbacks": "callbacks-pw-7",
}


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
        url = f"nats://127.0.0.1:{port}"
        # As an operator does once: provision with the only login allowed to.
        provisioner = Settings(
            nats_url=url, nats_user="provisioner", nats_password=PASSWORDS["provisioner"]
        )
        run_sync(lambda: provision_nats(provisioner))
        yield SecuredNats(url=url, log=log)
    finally:
        process.terminate()
        process.wait(10)


def as_service(settings: Settings, service: str) -> Settings:
    """``settings`` with the service's own NATS login."""
    return settings.replace(nats_user=service, nats_password=PASSWORDS[service])


async def test_each_service_does_its_whole_job_as_its_own_user(
    settings: Settings, secured_nats: SecuredNats
) -> None:
    # With a cap on active operations, so the projector's part of the limits runs too, and
    # every result kept in the results bucket, so writing, reading and deleting objects do.
    settings = settings.replace(
        nats_url=secured_nats.url, max_active_per_user=5, inline_result_bytes=1
    )
    async with (
        running(create_projector(as_service(settings, "projector"))),
        running(create_executor(as_service(settings, "executor"))),
        serving_edge(as_service(settings, "edge")) as client,
    ):
        submitted = await graphql(client, ASYNC_QUERY)
        operation_id = submitted["data"]["asyncQuery"]["operationId"]
        # An idempotency key claimed, then read back (the second submit queues nothing).
        keyed = [
            (
                await client.post(
                    "/graphql", json={"query": ASYNC_QUERY}, headers={"Idempotency-Key": "k"}
                )
            ).json()["data"]["asyncQuery"]["operationId"]
            for _ in range(2)
        ]
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
            return found if found == [{"status": "SUCCESS"}] * 2 else None

        await eventually(listed, what="both operations listed as SUCCESS")
        read = await graphql(client, FETCH_RESULTS, {"oid": operation_id})
        # A consumer of completion events reads the result a terminal event refers to, with
        # nats-py's own Object Store client.
        consumer = await nats.connect(
            secured_nats.url, user="consumer", password=PASSWORDS["consumer"]
        )
        try:
            terminal = await consumer.jetstream().subscribe(
                f"ops.events.default.{operation_id}.completed", stream=STREAM, ordered_consumer=True
            )
            completed = decode_event((await terminal.next_msg(timeout=5)).data)
            await terminal.unsubscribe()
            assert isinstance(completed, OperationCompleted)
            reference = completed.response_ref
            assert reference is not None
            store = await consumer.jetstream().object_store(RESULTS_BUCKET)
            consumed = (await store.get(reference.name)).data
        finally:
            await consumer.close()
        limits = await nats.connect(secured_nats.url, user="edge", password=PASSWORDS["edge"])
        try:
            bucket = await limits.jetstream().key_value(LIMITS_BUCKET)

            async def released() -> bool | None:
                entry = await bucket.get(limits_key(ANONYMOUS.tenant, ANONYMOUS.user))
                return True if not decode_limits(entry.value or b"").active else None

            await eventually(released, what="the projector releasing the ended operation")
        finally:
            await limits.close()
        # asyncDelete: the operation's events, view and listing entry purged.
        deleted = await graphql(
            client,
            "mutation($id: String!) { asyncDelete(id: $id) { operationId } }",
            {"id": operation_id},
        )
        left = (await graphql(client, "{ asyncRequests { operationId } }"))["data"]
        # The projector's repair after a reconnect reads the stream's recent events.
        projector = await nats.connect(
            secured_nats.url, user="projector", password=PASSWORDS["projector"]
        )
        try:
            events = EventLog(projector, projector.jetstream())
            bucket = await projector.jetstream().key_value(VIEW_BUCKET)
            repaired = await repair_recent_views(events, ViewWriter(bucket, events.inbox), 30.0)
        finally:
            await projector.close()

    assert early["data"]["asyncResult"]["operationId"] == operation_id
    assert consumed is not None
    assert read["data"]["asyncResult"]["data"] == consumed.decode()
    assert json.loads(consumed)["data"]["useCompany"]["generalLedgerAccount"]["totalCount"]
    assert not await objects_left(secured_nats.url, reference.name)
    assert keyed[0] == keyed[1] != operation_id
    assert deleted["data"]["asyncDelete"] == {"operationId": operation_id}
    assert left["asyncRequests"] == [{"operationId": keyed[0]}]
    assert pushed[-1]["payload"]["data"]["asyncResult"]["status"] == "SUCCESS"
    assert repaired == 0
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


STREAMS = (
    "ASYNCGATE_OPERATIONS",
    "ASYNCGATE_REQUESTS",
    "ASYNCGATE_DEAD_LETTERS",
    "KV_asyncgate_operations",
)
STREAMS_AND_LIMITS = (
    *STREAMS,
    "OBJ_asyncgate_results",
    "KV_asyncgate_limits",
    "KV_asyncgate_listing",
    "ASYNCGATE_LISTING_COUNTERS",
    "KV_asyncgate_idempotency",
)
DURABLES = ("asyncgate-executor", "asyncgate-projector", "intruder")
STREAM_VERBS = (
    "CREATE",
    "UPDATE",
    "DELETE",
    "INFO",
    "PURGE",
    "MSG.GET",
    "MSG.DELETE",
    "SNAPSHOT",
    "RESTORE",
    "LEADER.STEPDOWN",
    "PEER.REMOVE",
)
CONSUMER_VERBS = (
    "CREATE",
    "DURABLE.CREATE",
    "DELETE",
    "INFO",
    "MSG.NEXT",
    "LEADER.STEPDOWN",
    "PAUSE",
    "UNPIN",
)


def every_api_subject() -> list[str]:
    """Every verb of JetStream's API, on every stream and consumer asyncgate has (and one more)."""
    subjects = [
        f"$JS.API.{verb}"
        for verb in (
            "INFO",
            "STREAM.LIST",
            "STREAM.NAMES",
            "ACCOUNT.PURGE.$G",
            "META.LEADER.STEPDOWN",
            "SERVER.REMOVE",
        )
    ]
    for stream in STREAMS_AND_LIMITS:
        subjects += [f"$JS.API.STREAM.{verb}.{stream}" for verb in STREAM_VERBS]
        subjects += [
            f"$JS.API.DIRECT.GET.{stream}",
            f"$JS.API.DIRECT.GET.{stream}.some.subject",
            f"$JS.API.CONSUMER.CREATE.{stream}",
            f"$JS.API.CONSUMER.LIST.{stream}",
            f"$JS.API.CONSUMER.NAMES.{stream}",
        ]
        for durable in DURABLES:
            subjects += [f"$JS.API.CONSUMER.{verb}.{stream}.{durable}" for verb in CONSUMER_VERBS]
            subjects.append(f"$JS.API.CONSUMER.CREATE.{stream}.{durable}.some.filter")
    return subjects


def own_consumer(durable: str, *streams: str) -> set[str]:
    """Creating, reading and pulling from a service's own durable consumer (on each of
    ``streams``): nothing else."""
    allowed = set()
    for stream in streams:
        base = f"$JS.API.CONSUMER.{{}}.{stream}.{durable}"
        allowed |= {base.format(verb) for verb in ("CREATE", "DURABLE.CREATE", "INFO", "MSG.NEXT")}
        allowed.add(base.format("CREATE") + ".some.filter")
    return allowed


CHECKING = {"$JS.API.INFO"} | {f"$JS.API.STREAM.INFO.{stream}" for stream in STREAMS}
VIEW_WATCHERS = {"$JS.API.CONSUMER.CREATE.KV_asyncgate_operations"} | {
    f"$JS.API.CONSUMER.{verb}.KV_asyncgate_operations.{durable}{suffix}"
    for durable in DURABLES
    for verb, suffix in (("CREATE", ""), ("CREATE", ".some.filter"), ("DELETE", ""), ("INFO", ""))
}
# What each service may do with JetStream's API: read what it needs, check the streams, work its
# own consumer (the edge: its own watchers of the view). No user may create, change or delete a
# stream or a message, or touch another service's consumer; only the edge may purge, for
# asyncDelete.
MAY_USE = {
    "edge": CHECKING
    | VIEW_WATCHERS
    | {
        "$JS.API.STREAM.INFO.KV_asyncgate_limits",
        "$JS.API.DIRECT.GET.ASYNCGATE_OPERATIONS",
        "$JS.API.DIRECT.GET.ASYNCGATE_OPERATIONS.some.subject",
        "$JS.API.DIRECT.GET.ASYNCGATE_REQUESTS",
        "$JS.API.DIRECT.GET.ASYNCGATE_REQUESTS.some.subject",
        "$JS.API.DIRECT.GET.KV_asyncgate_operations.some.subject",
        "$JS.API.DIRECT.GET.KV_asyncgate_limits.some.subject",
        # The listing: its bucket and its counters, read only by direct get.
        "$JS.API.STREAM.INFO.KV_asyncgate_listing",
        "$JS.API.STREAM.INFO.ASYNCGATE_LISTING_COUNTERS",
        "$JS.API.DIRECT.GET.KV_asyncgate_listing",
        "$JS.API.DIRECT.GET.KV_asyncgate_listing.some.subject",
        "$JS.API.DIRECT.GET.ASYNCGATE_LISTING_COUNTERS",
        # A page's views in one burst, asked without headers.
        "$JS.API.DIRECT.GET.KV_asyncgate_operations",
        # Idempotency keys: the loser of a race reads the winner's claim.
        "$JS.API.STREAM.INFO.KV_asyncgate_idempotency",
        "$JS.API.DIRECT.GET.KV_asyncgate_idempotency.some.subject",
        # asyncDelete: a deleted operation's events, view and listing keys, purged by subject.
        "$JS.API.STREAM.PURGE.ASYNCGATE_OPERATIONS",
        "$JS.API.STREAM.PURGE.ASYNCGATE_REQUESTS",
        "$JS.API.STREAM.PURGE.KV_asyncgate_operations",
        "$JS.API.STREAM.PURGE.KV_asyncgate_listing",
        # ...once the projector has acknowledged the operation's events.
        "$JS.API.CONSUMER.INFO.ASYNCGATE_OPERATIONS.asyncgate-projector",
        # Large results: read (metadata by subject, chunks in batches) and, with their
        # operation, deleted.
        "$JS.API.STREAM.INFO.OBJ_asyncgate_results",
        "$JS.API.DIRECT.GET.OBJ_asyncgate_results",
        "$JS.API.DIRECT.GET.OBJ_asyncgate_results.some.subject",
        "$JS.API.STREAM.PURGE.OBJ_asyncgate_results",
    },
    "executor": CHECKING
    | own_consumer("asyncgate-executor", "ASYNCGATE_REQUESTS")
    | {
        "$JS.API.DIRECT.GET.ASYNCGATE_OPERATIONS",
        "$JS.API.DIRECT.GET.ASYNCGATE_REQUESTS",
        # Large results: written with nats-py's Object Store (which reads a name's metadata
        # and purges the chunks of a failed or replaced write); an outcome that lost removes
        # its object again.
        "$JS.API.STREAM.INFO.OBJ_asyncgate_results",
        "$JS.API.STREAM.MSG.GET.OBJ_asyncgate_results",
        "$JS.API.DIRECT.GET.OBJ_asyncgate_results.some.subject",
        "$JS.API.STREAM.PURGE.OBJ_asyncgate_results",
    },
    "projector": CHECKING
    | own_consumer("asyncgate-projector", "ASYNCGATE_OPERATIONS", "ASYNCGATE_REQUESTS")
    | {
        "$JS.API.DIRECT.GET.ASYNCGATE_OPERATIONS",
        "$JS.API.DIRECT.GET.ASYNCGATE_REQUESTS",
        "$JS.API.DIRECT.GET.KV_asyncgate_operations.some.subject",
        # Per-user limits: it stops counting an operation that has ended.
        "$JS.API.STREAM.INFO.KV_asyncgate_limits",
        "$JS.API.DIRECT.GET.KV_asyncgate_limits.some.subject",
    },
}


async def objects_left(url: str, name: str) -> bool:
    """Whether the results bucket still holds the object ``name`` (looked at as the edge)."""
    edge = await nats.connect(url, user="edge", password=PASSWORDS["edge"])
    try:
        return await ResultStore(edge.jetstream(), ReplyInbox(edge)).exists(name)
    finally:
        await edge.close()


async def allowed_subjects(url: str, user: str, subjects: list[str]) -> set[str]:
    """The subjects ``user`` may publish to: the server refuses the others at once."""
    refused: list[str] = []

    async def note(error: Exception) -> None:
        refused.append(str(error))

    nc = await nats.connect(url, user=user, password=PASSWORDS[user], error_cb=note)
    allowed = set()
    try:
        for subject in subjects:
            before = len(refused)
            await nc.publish(subject, b"", reply=nc.new_inbox())
            await nc.flush()
            await asyncio.sleep(0.01)  # the refusal is read off the socket just before the pong
            if len(refused) == before:
                allowed.add(subject)
    finally:
        await nc.close()
    return allowed


@pytest.mark.parametrize("user", ["edge", "executor", "projector"])
async def test_each_service_may_use_only_the_jetstream_api_it_needs(
    secured_nats: SecuredNats, user: str
) -> None:
    allowed = await allowed_subjects(secured_nats.url, user, every_api_subject())

    assert allowed == MAY_USE[user]


VICTIM: Correlation = {
    "operation_id": "op-victim",
    "tenant": "acme",
    "principal": "alice",
    "trace_id": "t",
}


def forged_bodies() -> dict[str, bytes]:
    """A body of every event type, each claiming to be one of alice's facts."""
    events: list[OperationEvent] = [
        OperationRequested(**VICTIM, query="{ whoami }"),
        OperationStarted(**VICTIM, attempt=9, worker="mallory"),
        OperationCompleted(**VICTIM, response={"data": {"forged": True}}),
        OperationFailed(**VICTIM, code="FORGED", error="forged"),
        OperationCancelRequested(**VICTIM),
    ]
    return {event_type(event): encode_event(event) for event in events}


async def test_forged_facts_on_every_subject_are_refused_or_never_folded(
    secured_nats: SecuredNats, settings: Settings
) -> None:
    settings = settings.replace(nats_url=secured_nats.url)
    kinds = ("requested", "started", "completed", "failed", "cancel_requested")
    subjects = {kind: f"ops.events.acme.op-victim.{kind}" for kind in kinds}
    own_kinds = {
        # The edge ends an operation nothing started when its owner cancels it (a failure).
        "edge": {"requested", "cancel_requested", "failed"},
        "executor": {"started", "completed", "failed"},
    }
    published = []
    # The executor first: its completed is then the first terminal fact stored.
    for user in ("executor", "edge", "projector"):
        allowed = await allowed_subjects(secured_nats.url, user, list(subjects.values()))
        assert allowed == {subjects[kind] for kind in own_kinds.get(user, set())}
        published += [(user, kind) for kind in kinds if subjects[kind] in allowed]
    # The request first, as in every real history: the projector makes no view from events
    # whose request is not in the stream (a deleted operation's late events), and which
    # forgeries a batch held would otherwise decide what it dropped.
    published.sort(key=lambda user_kind: user_kind[1] != "requested")
    # Only the publishes the server let through were stored, each with an empty body: now the
    # forgeries, every body on every subject its user may publish to.
    nc = await nats.connect(secured_nats.url, user="edge", password=PASSWORDS["edge"])
    executor = await nats.connect(secured_nats.url, user="executor", password=PASSWORDS["executor"])
    projector = await nats.connect(
        secured_nats.url, user="projector", password=PASSWORDS["projector"]
    )
    try:
        for user, kind in published:
            client = nc if user == "edge" else executor
            for body in forged_bodies().values():
                await client.jetstream().publish(subjects[kind], body)
        async with running(create_projector(as_service(settings, "projector"))):

            async def folded_everything() -> bool | None:
                return True if (await projector_backlog(projector.jetstream())).idle else None

            await eventually(folded_everything, what="the projector reading every message")
            letters = (await nc.jetstream().stream_info(DEAD_LETTER_STREAM)).state.messages
            view = await nc.jetstream().key_value(VIEW_BUCKET)
            entry = await view.get("acme.alice.op-victim")
    finally:
        for client in (nc, executor, projector):
            await client.close()

    folded = decode_view(entry.value or b"")
    # Each user's own kind of fact was folded; every other body was set aside, none folded.
    assert folded.status is TaskStatus.SUCCESS  # the executor's completed: its own fact
    assert folded.attempts == 9
    assert folded.response == {"data": {"forged": True}}
    wrong_kind = sum(len(forged_bodies()) - 1 for _ in published)
    empty = len(published)
    assert letters == wrong_kind + empty
