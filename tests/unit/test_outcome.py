"""Which terminal event an attempt ends in, decided without I/O."""

import msgspec
import pytest

from contracts.errors import ErrorCode
from contracts.events import (
    ActionInvocation,
    OperationCompleted,
    OperationFailed,
    OperationRequested,
    ResultReference,
    TerminalEvent,
    decode_event,
    encode_event,
)
from services.executor.outcome import (
    Inline,
    ResultLimits,
    ToStore,
    failed,
    naming_what_ran,
    outcome_of,
    place_result,
    with_reference,
)

REQUEST = OperationRequested(
    operation_id="op", tenant="t", principal="u", trace_id="tr", query="{ a }"
)


def test_data_with_field_errors_is_a_success_that_keeps_the_errors() -> None:
    response = {"data": {"a": None}, "errors": [{"message": "a broke", "path": ["a"]}]}

    outcome = outcome_of(REQUEST, response)

    assert isinstance(outcome, OperationCompleted)
    assert outcome.response == response


def test_no_data_is_an_error_with_the_messages_and_their_shared_code() -> None:
    response = {
        "data": None,
        "errors": [
            {"message": "first", "extensions": {"code": "NOT_FOUND"}},
            {"message": "second", "extensions": {"code": "NOT_FOUND"}},
        ],
    }

    outcome = outcome_of(REQUEST, response)

    assert isinstance(outcome, OperationFailed)
    assert outcome.error == "first; second"
    assert outcome.code == "NOT_FOUND"
    assert outcome.response == response


def test_mixed_codes_fall_back_to_operation_failed() -> None:
    response = {
        "data": None,
        "errors": [{"message": "a", "extensions": {"code": "X"}}, {"message": "b"}],
    }

    outcome = outcome_of(REQUEST, response)

    assert isinstance(outcome, OperationFailed)
    assert outcome.code == "X"


SMALL_MESSAGES = ResultLimits(max_payload=4096, inline_bytes=2048, max_result_bytes=100_000)


def test_a_result_over_the_inline_limit_is_stored_as_an_object() -> None:
    big = outcome_of(REQUEST, {"data": {"blob": "x" * 5000}})

    placed = place_result(REQUEST, big, SMALL_MESSAGES)

    assert isinstance(placed, ToStore)
    assert placed.event is big
    # Exactly the JSON asyncResult.data would have returned for an inline result.
    assert placed.body == msgspec.json.encode(big.response)


def test_a_result_within_the_inline_limit_stays_in_the_event() -> None:
    small = outcome_of(REQUEST, {"data": {"blob": "x"}})

    placed = place_result(REQUEST, small, SMALL_MESSAGES)

    assert isinstance(placed, Inline)
    assert placed.event is small
    assert placed.payload == encode_event(small)


def test_the_inline_limit_is_the_encoded_responses_size() -> None:
    def sized(extra: int) -> TerminalEvent:
        # {"data":{"b":"..."}} is 17 bytes around the string.
        return outcome_of(REQUEST, {"data": {"b": "x" * (2048 - 17 + extra)}})

    assert isinstance(place_result(REQUEST, sized(0), SMALL_MESSAGES), Inline)
    assert isinstance(place_result(REQUEST, sized(1), SMALL_MESSAGES), ToStore)


def test_a_result_over_the_hard_cap_becomes_a_clear_failure() -> None:
    huge = outcome_of(REQUEST, {"data": {"blob": "x" * 100_001}})

    placed = place_result(REQUEST, huge, SMALL_MESSAGES)

    assert isinstance(placed, Inline)
    assert isinstance(placed.event, OperationFailed)
    assert placed.event.code == ErrorCode.RESULT_TOO_LARGE
    assert "100000 bytes are stored" in placed.event.error
    assert len(placed.payload) < 4096


def test_a_small_result_whose_view_would_not_fit_a_message_is_stored_as_an_object() -> None:
    # The view repeats the request's operation name; the event alone would fit.
    named = OperationRequested(
        operation_id="op",
        tenant="t",
        principal="u",
        trace_id="tr",
        query="{ a }",
        operation_name="n" * 1500,
    )
    result = outcome_of(named, {"data": {"blob": "x" * 2000}})

    assert isinstance(place_result(named, result, SMALL_MESSAGES), ToStore)
    assert isinstance(place_result(REQUEST, result, SMALL_MESSAGES), Inline)


REFERENCE = ResultReference(name="op.ev", size=5017, digest="SHA-256=abc=")


def test_the_stored_event_carries_the_reference_instead_of_the_body() -> None:
    big = naming_what_ran(ACTION_REQUEST, outcome_of(ACTION_REQUEST, {"data": {"b": "x" * 5000}}))

    placed = with_reference(ACTION_REQUEST, big, REFERENCE, SMALL_MESSAGES)

    stored = decode_event(placed.payload)
    assert isinstance(stored, OperationCompleted)
    assert stored.response is None
    assert stored.response_ref == REFERENCE
    assert (stored.event_id, stored.operation_name, stored.action) == (big.event_id, "Pay", "pay")


def test_a_failure_with_a_large_response_refers_to_it_and_keeps_its_code() -> None:
    errors = [{"message": "m" * 40, "extensions": {"code": "NOT_FOUND"}}] * 100
    failure = outcome_of(REQUEST, {"data": None, "errors": errors})

    placed = place_result(REQUEST, failure, SMALL_MESSAGES)
    assert isinstance(placed, ToStore)
    stored = with_reference(REQUEST, placed.event, REFERENCE, SMALL_MESSAGES).event

    assert isinstance(stored, OperationFailed)
    assert (stored.code, stored.response, stored.response_ref) == ("NOT_FOUND", None, REFERENCE)
    assert stored.error.endswith("... (100 errors in all)")


def test_an_event_too_large_even_without_its_response_becomes_a_clear_failure() -> None:
    # An error message of its own too long for a message: no reference can shrink it.
    failure = msgspec.structs.replace(
        failed(REQUEST, "BROKEN", "e" * 5000), response={"data": None}
    )

    placed = with_reference(REQUEST, failure, REFERENCE, SMALL_MESSAGES)

    assert isinstance(placed.event, OperationFailed)
    assert placed.event.code == ErrorCode.RESULT_TOO_LARGE
    assert placed.event.response_ref is None


def test_a_reference_round_trips_and_events_without_one_still_decode() -> None:
    old = msgspec.json.encode(
        {
            "type": "failed",
            "operation_id": "op",
            "tenant": "t",
            "principal": "u",
            "trace_id": "tr",
            "occurred_at": "2026-01-01T00:00:00Z",
            "code": "X",
            "error": "e",
            "response": {"data": None},
        }
    )
    with_ref = OperationCompleted(
        operation_id="op", tenant="t", principal="u", trace_id="tr", response_ref=REFERENCE
    )

    assert decode_event(encode_event(with_ref)) == with_ref
    decoded = decode_event(old)
    assert isinstance(decoded, OperationFailed)
    assert (decoded.response, decoded.response_ref) == ({"data": None}, None)
    with pytest.raises(TypeError):
        ResultReference("op.ev", 1, "d")  # type: ignore[call-arg]  # keyword-only, as events are
    with pytest.raises(AttributeError):
        REFERENCE.size = 2  # type: ignore[misc]  # frozen


ACTION_REQUEST = OperationRequested(
    operation_id="op",
    tenant="t",
    principal="u",
    trace_id="tr",
    query="mutation Pay { pay(amount: 3) }",
    operation_name="Pay",
    action=ActionInvocation(name="pay", input={"amount": 3}),
)


def test_terminal_events_name_the_operation_and_the_action_that_ran() -> None:
    for outcome in (
        outcome_of(ACTION_REQUEST, {"data": {"pay": 1}}),
        failed(ACTION_REQUEST, ErrorCode.TIMEOUT, "too slow"),
    ):
        named = naming_what_ran(ACTION_REQUEST, outcome)

        assert (named.operation_name, named.action) == ("Pay", "pay")
        assert named.event_id == outcome.event_id
        assert decode_event(encode_event(named)) == named
    anonymous = naming_what_ran(REQUEST, outcome_of(REQUEST, {"data": {}}))
    assert (anonymous.operation_name, anonymous.action) == (None, None)


def test_a_result_too_large_still_names_what_ran() -> None:
    big = naming_what_ran(
        ACTION_REQUEST, outcome_of(ACTION_REQUEST, {"data": {"b": "x" * 100_001}})
    )

    event = place_result(ACTION_REQUEST, big, SMALL_MESSAGES).event

    assert isinstance(event, OperationFailed)
    assert event.code == ErrorCode.RESULT_TOO_LARGE
    assert (event.operation_name, event.action) == ("Pay", "pay")


def test_terminal_events_stored_before_the_names_existed_still_decode() -> None:
    old = msgspec.json.encode(
        {
            "type": "completed",
            "operation_id": "op",
            "tenant": "t",
            "principal": "u",
            "trace_id": "tr",
            "occurred_at": "2026-01-01T00:00:00Z",
            "response": {"data": {}},
        }
    )

    event = decode_event(old)

    assert isinstance(event, OperationCompleted)
    assert (event.operation_name, event.action) == (None, None)
