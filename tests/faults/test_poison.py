"""Messages nobody can use, published straight onto the stream: each is set aside once, as a
bounded dead letter, and the services go on serving (no zombie, no redelivery loop)."""

import asyncio

import pytest

from contracts.dead_letters import (
    EXCERPT_BYTES,
    SEQUENCE_HEADER,
    SERVICE_HEADER,
    SIZE_HEADER,
    STREAM_HEADER,
)
from contracts.events import (
    Correlation,
    OperationCompleted,
    OperationRequested,
    encode_event,
)
from contracts.names import REQUESTS_STREAM
from tests.faults.conftest import inspector
from tests.stack import dead_letters, eventually
from tests.support.audit import audit, submit_many
from tests.support.nats_servers import NatsServer
from tests.support.processes import ServiceStack

pytestmark = [pytest.mark.faults, pytest.mark.nats, pytest.mark.e2e]


def correlation(operation_id: str, principal: str = "u1") -> Correlation:
    return {"operation_id": operation_id, "tenant": "t1", "principal": principal, "trace_id": "t"}


def poison(max_payload: int) -> list[tuple[str, bytes]]:
    """(subject, body) of every kind of unusable message, on request and terminal subjects."""
    near_limit = b"x" * (max_payload - 64)
    kinds: list[tuple[str, bytes]] = []
    for kind in ("requested", "completed"):
        other = OperationCompleted if kind == "requested" else OperationRequested
        wrong_shape = (
            OperationCompleted(**correlation(f"p-shape-{kind}"), response={"data": {}})
            if other is OperationCompleted
            else OperationRequested(**correlation(f"p-shape-{kind}"), query="{ a }")
        )
        unusable_key = (
            OperationRequested(**correlation(f"p-key-{kind}", "bad key*"), query="{ a }")
            if kind == "requested"
            else OperationCompleted(**correlation(f"p-key-{kind}", "bad key*"), response={})
        )
        kinds += [
            (f"ops.events.t1.p-garbage-{kind}.{kind}", b"\x00garbage"),
            (f"ops.events.t1.p-json-{kind}.{kind}", b'{"hello": "world"}'),
            (f"ops.events.t1.p-shape-{kind}.{kind}", encode_event(wrong_shape)),
            (f"ops.events.t1.p-big-{kind}.{kind}", near_limit),
            (f"ops.events.t1.p-key-{kind}.{kind}", encode_event(unusable_key)),
        ]
    return kinds


async def test_unusable_messages_are_set_aside_once_and_the_services_go_on(
    stack: ServiceStack, server: NatsServer
) -> None:
    look = await inspector([server.url])
    # By (stream, sequence): the requests and the rest are stored in two streams.
    published = {}
    for subject, body in poison(look.nc.max_payload):
        ack = await look.js.publish(subject, body)
        published[ack.stream, ack.seq] = (subject, len(body))
    on_request_subjects = {at for at, (subject, _) in published.items() if "requested" in subject}
    assert {stream for stream, _ in on_request_subjects} == {REQUESTS_STREAM}
    # The executor sees the request subjects, the projector every subject.
    expected = {("executor", *at) for at in on_request_subjects} | {
        ("projector", *at) for at in published
    }

    async def all_set_aside() -> list[tuple[str, dict[str, str]]] | None:
        letters = await dead_letters(look.js)
        return letters if len(letters) >= len(expected) else None

    await eventually(all_set_aside, what="every unusable message set aside")
    # A restart must not bring any of them back (they are terminated, not left pending).
    stack.executor.restart()
    stack.projector.restart()
    await stack.wait_ready()
    seen = await submit_many(stack.base_url, "{ slowReport(seconds: 0) }", count=10, clients=5)
    report = await audit(look.js, seen.accepted, timeout_s=30)
    await asyncio.sleep(1)  # time enough for a redelivery to show
    letters = await dead_letters(look.js)
    await look.nc.close()

    set_aside = [
        (headers[SERVICE_HEADER], headers[STREAM_HEADER], int(headers[SEQUENCE_HEADER]))
        for _, headers in letters
    ]
    assert sorted(set_aside) == sorted(expected)  # each one once, by each service that saw it
    assert all(len(body) <= EXCERPT_BYTES for body, _ in letters)
    sizes = {(h[STREAM_HEADER], int(h[SEQUENCE_HEADER])): int(h[SIZE_HEADER]) for _, h in letters}
    assert sizes == {at: size for at, (_, size) in published.items()}
    assert report.problems() == []
    assert report.statuses == {"SUCCESS": 10}
    assert all(process.running for process in stack.processes)
