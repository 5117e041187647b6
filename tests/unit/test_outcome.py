"""Which terminal event an attempt ends in, decided without I/O."""

import msgspec

from contracts.errors import ErrorCode
from contracts.events import (
    ActionInvocation,
    OperationCompleted,
    OperationFailed,
    OperationRequested,
    decode_event,
    encode_event,
)
from services.executor.outcome import (
    failed,
    fit_to_message,
    naming_what_ran,
    outcome_of,
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


def test_a_result_too_large_for_a_message_becomes_a_clear_failure() -> None:
    big = outcome_of(REQUEST, {"data": {"blob": "x" * 5000}})

    event, payload = fit_to_message(REQUEST, big, max_payload=4096)

    assert isinstance(event, OperationFailed)
    assert event.code == ErrorCode.RESULT_TOO_LARGE
    assert "bytes" in event.error
    assert len(payload) < 4096


def test_a_result_that_fits_is_kept_as_it_is() -> None:
    small = outcome_of(REQUEST, {"data": {"blob": "x"}})

    event, _ = fit_to_message(REQUEST, small, max_payload=4096)

    assert event is small


def test_a_result_whose_view_would_not_fit_fails_too() -> None:
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

    event, _ = fit_to_message(named, result, max_payload=4096)

    assert isinstance(event, OperationFailed)
    assert event.code == ErrorCode.RESULT_TOO_LARGE
    assert fit_to_message(REQUEST, result, max_payload=4096)[0] is result


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
    big = naming_what_ran(ACTION_REQUEST, outcome_of(ACTION_REQUEST, {"data": {"b": "x" * 5000}}))

    event, _ = fit_to_message(ACTION_REQUEST, big, max_payload=4096)

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
