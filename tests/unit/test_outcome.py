"""Which terminal event an attempt ends in, decided without I/O."""

from contracts.errors import ErrorCode
from contracts.events import OperationCompleted, OperationFailed, OperationRequested
from services.executor.outcome import fit_to_message, outcome_of

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
