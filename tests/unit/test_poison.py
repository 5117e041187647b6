"""Which consumed messages a service can use, and what a dead letter keeps of the others."""

import pytest

from contracts.events import Correlation, OperationRequested, OperationStarted, encode_event
from contracts.names import parse_event_subject
from services.common.dead_letters import header_value
from services.common.poison import Unusable, admit

ENVELOPE: Correlation = {
    "operation_id": "op-1",
    "tenant": "t1",
    "principal": "u1",
    "trace_id": "tr",
}
REQUEST = OperationRequested(**ENVELOPE, query="{ a }")


def test_an_event_on_its_own_subject_is_admitted() -> None:
    assert admit("ops.events.t1.op-1.requested", encode_event(REQUEST)) == REQUEST


@pytest.mark.parametrize(
    ("subject", "payload", "reason"),
    [
        ("ops.events.t1.op-1.requested", b"\x00garbage", "not a readable operation event"),
        ("ops.events.t1.op-1.requested", b'{"type": "requested"}', "not a readable"),
        ("ops.events.t1.op-1.requested", b"[]", "not a readable"),
        (
            "ops.events.t1.op-1.requested",
            encode_event(OperationStarted(**ENVELOPE, attempt=1, worker="w")),
            "a started event stored on a requested subject",
        ),
        ("ops.events.t1.op-2.requested", encode_event(REQUEST), "not the one its subject names"),
        ("ops.events.evil.op-1.requested", encode_event(REQUEST), "not the one its subject"),
        ("ops.other.t1.op-1.requested", encode_event(REQUEST), "not stored on an operation"),
        (
            "ops.events.t1.op-1.requested",
            encode_event(OperationRequested(**(ENVELOPE | {"principal": "bad key*"}), query="{a}")),
            "not usable as a view key",
        ),
    ],
)
def test_what_cannot_be_used_says_why(subject: str, payload: bytes, reason: str) -> None:
    verdict = admit(subject, payload)

    assert isinstance(verdict, Unusable)
    assert reason in verdict.reason


def test_event_subjects_parse_into_tenant_operation_and_type() -> None:
    assert parse_event_subject("ops.events.t1.op-1.failed") == ("t1", "op-1", "failed")
    assert parse_event_subject("ops.events.t1.op-1") is None
    assert parse_event_subject("ops.deadletter.executor") is None


def test_header_values_are_one_bounded_line_of_ascii() -> None:
    assert header_value("line one\r\nline two", 100) == "line one line two"
    assert header_value("x" * 1000, 10) == "x" * 10
    assert header_value("caf\u00e9", 100) == "caf\\xe9"
