"""A service consuming asyncgate's events, as a consumer would: logged in as the shipped
`consumer` user on a server running infra/nats, against the real edge, executor and projector."""

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path

import httpx
import nats
import nats.errors
import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.kv import KeyValue

from contracts.events import OperationCompleted, OperationFailed, decode_event
from contracts.names import REQUESTS_STREAM, STREAM, VIEW_BUCKET
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.integration import test_nats_permissions
from tests.integration.test_nats_permissions import (
    PASSWORDS,
    SecuredNats,
    as_service,
    every_api_subject,
)
from tests.stack import eventually, graphql, running, serving_edge
from tests.support.processes import ChildProcess

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

# The server running infra/nats's configuration, as the permission tests start it.
secured_nats = test_nats_permissions.secured_nats

ROOT = Path(__file__).parents[2]
TERMINAL = ["ops.events.*.*.completed", "ops.events.*.*.failed"]
SUBMIT = "mutation($q: String!) { asyncQuery(query: $q) { operationId } }"
# What `consumer` may use of JetStream's API, of every verb on every stream and consumer.
CONSUMER_MAY_USE = {
    "$JS.API.INFO",
    # Its own consumers on either event stream, never the services'.
    *(
        subject
        for stream in ("ASYNCGATE_OPERATIONS", "ASYNCGATE_REQUESTS")
        for subject in (
            f"$JS.API.STREAM.INFO.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}",
            f"$JS.API.CONSUMER.CREATE.{stream}.intruder",
            f"$JS.API.CONSUMER.CREATE.{stream}.intruder.some.filter",
            f"$JS.API.CONSUMER.DURABLE.CREATE.{stream}.intruder",
            f"$JS.API.CONSUMER.INFO.{stream}.intruder",
            f"$JS.API.CONSUMER.DELETE.{stream}.intruder",
            f"$JS.API.CONSUMER.MSG.NEXT.{stream}.intruder",
        )
    ),
    # Reading the large results terminal events refer to, as nats-py's Object Store does: the
    # stream holding the chunks (by name lookup), the metadata, and an ordered consumer of the
    # chunks (the services keep no consumer on that stream); direct gets, for batching readers.
    "$JS.API.STREAM.NAMES",
    "$JS.API.STREAM.INFO.OBJ_asyncgate_results",
    "$JS.API.STREAM.MSG.GET.OBJ_asyncgate_results",
    "$JS.API.DIRECT.GET.OBJ_asyncgate_results",
    "$JS.API.DIRECT.GET.OBJ_asyncgate_results.some.subject",
    "$JS.API.CONSUMER.CREATE.OBJ_asyncgate_results",
    *(
        f"$JS.API.CONSUMER.CREATE.OBJ_asyncgate_results.{name}{suffix}"
        for name in ("asyncgate-executor", "asyncgate-projector", "intruder")
        for suffix in ("", ".some.filter")
    ),
}


@contextlib.asynccontextmanager
async def asyncgate(settings: Settings, url: str) -> AsyncIterator[httpx.AsyncClient]:
    """The edge, an executor and the projector on ``url``, each logged in as its own user,
    running the test target (tests/targets.py)."""
    settings = settings.replace(nats_url=url, target_schema="tests.targets:schema")
    async with (
        running(create_projector(as_service(settings, "projector"))),
        running(create_executor(as_service(settings, "executor"))),
        serving_edge(as_service(settings, "edge")) as client,
    ):
        yield client


async def submit_one_that_completes_and_one_that_fails(client: httpx.AsyncClient) -> list[str]:
    """Queue `query Fine { fine }` and `{ refused }` (no data): their operation ids."""
    ids = []
    for query in ("query Fine { fine }", "{ refused }"):
        answer = await graphql(client, SUBMIT, {"q": query})
        ids.append(answer["data"]["asyncQuery"]["operationId"])
    return ids


async def answered_subjects(nc: NatsClient, subjects: list[str]) -> set[str]:
    """The subjects the server lets ``nc`` publish to: JetStream's API answers each of those
    (if only with an error, or no responders), and drops the refused ones unanswered."""

    async def answered(subject: str) -> bool:
        try:
            await nc.request(subject, b"", timeout=3)
        except nats.errors.NoRespondersError:
            return True
        except nats.errors.TimeoutError:
            return False
        return True

    verdicts = await asyncio.gather(*(answered(subject) for subject in subjects))
    return {subject for subject, allowed in zip(subjects, verdicts, strict=True) if allowed}


async def as_consumer(url: str, refused: list[str] | None = None) -> NatsClient:
    async def note(error: Exception) -> None:
        if refused is not None:
            refused.append(str(error))

    return await nats.connect(
        url, user="consumer", password=PASSWORDS["consumer"], error_cb=note, connect_timeout=5
    )


async def test_a_consumer_receives_completed_and_failed_events_with_cloudevents_headers(
    secured_nats: SecuredNats, settings: Settings
) -> None:
    nc = await as_consumer(secured_nats.url)
    try:
        js = nc.jetstream()
        inbox = await js.pull_subscribe(
            "",
            durable="billing",
            stream=STREAM,
            config=ConsumerConfig(filter_subjects=TERMINAL, deliver_policy=DeliverPolicy.ALL),
        )
        async with asyncgate(settings, secured_nats.url) as client:
            fine, refused = await submit_one_that_completes_and_one_that_fails(client)
            received: list[Msg] = []

            async def both() -> list[Msg] | None:
                with contextlib.suppress(nats.errors.TimeoutError):
                    received.extend(await inbox.fetch(2, timeout=1))
                return received if len(received) >= 2 else None

            await eventually(both, what="both terminal events reaching the consumer")
        for message in received:
            await message.ack()
    finally:
        await nc.close()

    by_operation = {m.headers["ce-subject"]: m for m in received if m.headers}
    assert set(by_operation) == {fine, refused}
    completed, failed = by_operation[fine], by_operation[refused]
    assert completed.headers is not None
    assert failed.headers is not None
    assert completed.headers["ce-type"] == "io.asyncgate.operation.completed"
    assert failed.headers["ce-type"] == "io.asyncgate.operation.failed"
    for message in (completed, failed):
        headers = message.headers or {}
        event = decode_event(message.data)
        assert headers["ce-specversion"] == "1.0"
        assert headers["ce-id"] == event.event_id
        assert headers["ce-source"] == "asyncgate/executor"
        assert headers["content-type"] == "application/json"
        assert datetime.fromisoformat(headers["ce-time"]) == event.occurred_at
        assert "Nats-Msg-Id" in headers  # the dedup id JetStream needs is still there
    done, broke = decode_event(completed.data), decode_event(failed.data)
    assert isinstance(done, OperationCompleted)
    assert isinstance(broke, OperationFailed)
    # What ran: the name of the document's operation, though the client sent no operationName.
    assert (done.operation_name, broke.operation_name) == ("Fine", None)
    assert done.action is None


async def test_a_consumer_writes_nothing_and_leaves_the_services_consumers_alone(
    secured_nats: SecuredNats,
) -> None:
    refused: list[str] = []
    nc = await as_consumer(secured_nats.url, refused)
    try:
        # A refused request is never answered: wait a second for each, not five.
        js = nc.jetstream(timeout=1.0)
        with pytest.raises((nats.errors.Error, TimeoutError)):
            await js.publish("ops.events.acme.op-1.completed", b"{}", timeout=1)
        # The view bucket, bound without asking (the consumer may not even look it up).
        view = KeyValue(
            name=VIEW_BUCKET,
            stream=f"KV_{VIEW_BUCKET}",
            pre=f"$KV.{VIEW_BUCKET}.",
            js=js,
            direct=True,
        )
        with pytest.raises((nats.errors.Error, TimeoutError)):
            await view.put("acme.alice.op-1", b"{}")
        with pytest.raises(nats.errors.Error):
            await js.key_value(VIEW_BUCKET)
        allowed = await answered_subjects(nc, every_api_subject())
    finally:
        await nc.close()

    assert allowed == CONSUMER_MAY_USE
    assert any("permissions violation" in error.lower() for error in refused)
    log = secured_nats.log.read_text()
    assert 'Publish Violation - Subject "ops.events.acme.op-1.completed"' in log
    assert f'Publish Violation - Subject "$KV.{VIEW_BUCKET}.acme.alice.op-1"' in log


async def test_a_push_consumer_cannot_deliver_events_into_another_services_subjects(
    secured_nats: SecuredNats,
) -> None:
    edge = await nats.connect(secured_nats.url, user="edge", password=PASSWORDS["edge"])
    nc = await as_consumer(secured_nats.url)
    arrived: list[Msg] = []

    async def arrive(message: Msg) -> None:
        arrived.append(message)

    try:
        await edge.jetstream().publish("ops.events.acme.op-1.requested", b"{}")
        # The edge follows view changes on these subjects; the consumer may not publish there.
        await edge.subscribe(f"$KV.{VIEW_BUCKET}.>", cb=arrive)
        await nc.jetstream().add_consumer(
            REQUESTS_STREAM,
            ConsumerConfig(
                durable_name="sneaky",
                deliver_subject=f"$KV.{VIEW_BUCKET}.acme.alice.op-1",
                ack_policy=AckPolicy.NONE,
            ),
        )
        # The same push consumer delivering to the consumer's own inbox: it does deliver.
        own: list[Msg] = []

        async def deliver(message: Msg) -> None:
            own.append(message)

        inbox = nc.new_inbox()
        await nc.subscribe(inbox, cb=deliver)
        await nc.jetstream().add_consumer(
            REQUESTS_STREAM,
            ConsumerConfig(durable_name="own", deliver_subject=inbox, ack_policy=AckPolicy.NONE),
        )

        async def delivered() -> list[Msg] | None:
            return own or None

        await eventually(delivered, what="the delivery to the consumer's inbox")
        await asyncio.sleep(0.5)  # the sneaky one, created first, had its chance too
        view_messages = (await edge.jetstream().stream_info(f"KV_{VIEW_BUCKET}")).state.messages
    finally:
        await nc.close()
        await edge.close()

    assert arrived == []
    assert view_messages == 0


class ExampleConsumer(ChildProcess):
    """examples/consumer as its user runs it: ``python -m examples.consumer``."""

    def __init__(self, log_path: Path, url: str) -> None:
        super().__init__(log_path)
        self._env = os.environ | {
            "ASYNCGATE_NATS_URL": url,
            "ASYNCGATE_NATS_USER": "consumer",
            "ASYNCGATE_NATS_PASSWORD": PASSWORDS["consumer"],
        }

    def start(self) -> None:
        """Start it from the repository's root."""
        self._spawn([sys.executable, "-m", "examples.consumer"], cwd=ROOT, env=self._env)


async def test_the_example_consumer_reacts_to_a_completed_and_a_failed_operation(
    secured_nats: SecuredNats, settings: Settings, tmp_path: Path
) -> None:
    with ExampleConsumer(tmp_path / "consumer.log", secured_nats.url) as example:

        async def started() -> bool | None:
            return True if "started" in example.log_text() else None

        await eventually(started, what="the example consumer starting")
        async with asyncgate(settings, secured_nats.url) as client:
            fine, refused = await submit_one_that_completes_and_one_that_fails(client)

            async def reacted() -> str | None:
                text = example.log_text()
                return text if fine in text and refused in text else None

            text = await eventually(reacted, what="the example logging both operations")
        assert example.running

    assert f"operation {fine} of default completed (operation Fine)\n" in text
    assert f"operation {refused} of default failed: INTERNAL_SERVER_ERROR\n" in text
    assert text.count(" completed ") == 1  # one line per event
    assert "Violation" not in secured_nats.log.read_text()
