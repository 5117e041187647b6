"""CloudEvents 1.0 attributes as NATS headers (binary content mode), built from an event."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from contracts.cloudevents import cloudevent_headers
from contracts.events import (
    Correlation,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationRequested,
    OperationStarted,
    decode_event,
    encode_event,
)

ENVELOPE: Correlation = {
    "operation_id": "op-7",
    "tenant": "acme",
    "principal": "alice",
    "trace_id": "tr",
}
AT = datetime(2026, 3, 4, 5, 6, 7, 891000, tzinfo=UTC)

EVENTS: list[tuple[OperationEvent, str, str]] = [
    (OperationRequested(**ENVELOPE, occurred_at=AT, query="{ a }"), "requested", "edge"),
    (OperationStarted(**ENVELOPE, occurred_at=AT, attempt=1, worker="w"), "started", "executor"),
    (OperationCompleted(**ENVELOPE, occurred_at=AT, response={}), "completed", "executor"),
    (OperationFailed(**ENVELOPE, occurred_at=AT, code="X", error="e"), "failed", "executor"),
]


@pytest.mark.parametrize(("event", "kind", "service"), EVENTS, ids=[e[1] for e in EVENTS])
def test_every_event_type_gets_its_attributes(
    event: OperationEvent, kind: str, service: str
) -> None:
    headers = cloudevent_headers(event)

    assert headers == {
        "ce-specversion": "1.0",
        "ce-id": event.event_id,
        "ce-source": f"asyncgate/{service}",
        "ce-type": f"io.asyncgate.operation.{kind}",
        "ce-time": "2026-03-04T05:06:07.891000Z",
        "ce-subject": "op-7",
        "content-type": "application/json",
    }


def test_the_time_is_the_bodys_occurred_at_and_parses_back() -> None:
    event = OperationCompleted(**ENVELOPE, response={})
    wire = decode_event(encode_event(event))

    stamped = cloudevent_headers(event)["ce-time"]

    assert stamped in encode_event(event).decode()
    assert datetime.fromisoformat(stamped) == wire.occurred_at == event.occurred_at


def test_other_offsets_are_kept_and_a_naive_time_is_taken_as_utc() -> None:
    elsewhere = datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    naive = datetime(2026, 1, 1, 12)

    offset = cloudevent_headers(
        OperationFailed(**ENVELOPE, occurred_at=elsewhere, code="X", error="")
    )
    utc = cloudevent_headers(OperationFailed(**ENVELOPE, occurred_at=naive, code="X", error=""))

    assert datetime.fromisoformat(offset["ce-time"]) == elsewhere
    assert utc["ce-time"] == "2026-01-01T12:00:00Z"


def test_each_call_gives_a_dict_of_its_own_to_add_headers_to() -> None:
    event = OperationCompleted(**ENVELOPE, response={})
    first = cloudevent_headers(event)
    first["Nats-Msg-Id"] = "x"

    assert "Nats-Msg-Id" not in cloudevent_headers(event)
