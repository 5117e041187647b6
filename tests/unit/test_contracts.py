"""The published contracts: JSON on the wire, schemas checked in, names that cannot widen."""

import contextlib
import json
import typing
from pathlib import Path

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from contracts.events import OperationEvent, OperationRequested, decode_event, encode_event
from contracts.jsonschema import SCHEMA_DIR, generated_schemas
from contracts.names import (
    HISTORY_EVENT_TYPES,
    REQUESTS_STREAM,
    STREAM,
    UnsafeTokenError,
    decode_id,
    encode_id,
    event_subject,
    require_id_token,
    stream_of,
)


def test_checked_in_json_schemas_match_the_types() -> None:
    for name, text in generated_schemas().items():
        path = Path(SCHEMA_DIR, name)
        assert path.exists(), f"{name} missing: run ./dev schemas"
        assert path.read_text(encoding="utf-8") == text, f"{name} is stale: run ./dev schemas"


def test_events_round_trip_as_plain_json_with_a_type_tag() -> None:
    event = OperationRequested(
        operation_id="op",
        tenant="t",
        principal="u",
        trace_id="tr",
        query="{ a }",
        variables={"n": 1},
    )

    wire = json.loads(encode_event(event))

    assert wire["type"] == "requested"
    assert wire["schema_version"] == 1
    assert wire["occurred_at"].endswith("Z")
    assert decode_event(encode_event(event)) == event


def test_events_are_frozen() -> None:
    event = OperationRequested(
        operation_id="op", tenant="t", principal="u", trace_id="tr", query=""
    )

    with pytest.raises(AttributeError):
        event.query = "{ other }"  # type: ignore[misc]  # the point: this must not work


@pytest.mark.parametrize("payload", [b"", b"{}", b'{"type": "exploded"}', b"[1]", b'{"type": 1}'])
def test_malformed_events_are_refused(payload: bytes) -> None:
    with pytest.raises((msgspec.ValidationError, msgspec.DecodeError)):
        decode_event(payload)


@pytest.mark.parametrize("token", ["", "a.b", "*", ">", "a b", "x" * 65, "tab\t", "é"])
def test_tokens_that_could_widen_a_subject_are_refused(token: str) -> None:
    with pytest.raises(UnsafeTokenError):
        require_id_token(token, "tenant")


def test_subjects_filter_by_tenant_operation_and_type() -> None:
    assert event_subject("acme", "op-1", "completed") == "ops.events.acme.op-1.completed"


def test_every_event_type_is_stored_in_exactly_one_event_stream() -> None:
    tags = {str(kind.__struct_config__.tag) for kind in typing.get_args(OperationEvent)}

    assert {"requested", *HISTORY_EVENT_TYPES} == tags
    assert len(HISTORY_EVENT_TYPES) == len(tags) - 1
    assert {kind: stream_of(kind) for kind in ("requested", "completed")} == {
        "requested": REQUESTS_STREAM,
        "completed": STREAM,
    }


@given(st.binary(max_size=300))
def test_arbitrary_bytes_either_decode_to_an_event_or_raise_a_decode_error(payload: bytes) -> None:
    try:
        event = decode_event(payload)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return
    assert event.operation_id


@given(
    st.dictionaries(
        st.sampled_from(
            ["type", "operation_id", "tenant", "principal", "trace_id", "query", "attempt"]
        ),
        st.none() | st.integers() | st.text(max_size=5) | st.sampled_from(["requested", "started"]),
    )
)
def test_event_shaped_garbage_is_refused_cleanly(fields: dict[str, object]) -> None:
    with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
        decode_event(json.dumps(fields).encode())


@given(st.text(min_size=1, max_size=256).filter(str.isprintable))
def test_any_printable_id_encodes_to_a_safe_token_and_back(value: str) -> None:
    token = encode_id(value, "user")

    assert require_id_token(token, "user") == token
    assert not set(token) & set(".*> \t")
    assert decode_id(token) == value
