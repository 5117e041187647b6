"""Retries by error class, decided without I/O: which failures are tried again, when, and how
the stream's facts say so."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from contracts.errors import ErrorCode
from contracts.events import (
    ActionInvocation,
    Correlation,
    OperationAttemptFailed,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationRequested,
    OperationStarted,
    encode_event,
    event_type,
)
from contracts.lifecycle import fold
from contracts.names import event_subject
from contracts.view import TaskStatus
from services.actions.config import Retry, load_actions
from services.common.event_log import OperationFacts, facts_from
from services.executor.decide import Exhausted, RetryLater, Run, decide
from services.executor.retries import MAX_BACKOFF_S, RetryPolicies, backoff_s, retry_of
from tests.unit.test_actions_config import ENV, YAML, error_of, write

T0 = datetime(2026, 1, 1, tzinfo=UTC)
ENVELOPE: Correlation = {"operation_id": "op", "tenant": "t", "principal": "u", "trace_id": "tr"}
REQUEST = OperationRequested(**ENVELOPE, query="{ a }", occurred_at=T0)


def started(attempt: int, *, delivery: int, sequence: int = 2) -> tuple[int, OperationStarted]:
    return sequence, OperationStarted(**ENVELOPE, attempt=attempt, worker="w", delivery=delivery)


def attempt_failed(attempt: int, retry_at: datetime) -> tuple[int, OperationAttemptFailed]:
    return 3, OperationAttemptFailed(
        **ENVELOPE, attempt=attempt, code="ACTION_HANDLER_FAILED", error="503", retry_at=retry_at
    )


def failure(code: str) -> OperationFailed:
    return OperationFailed(**ENVELOPE, code=code, error="broke")


# -- the back-off ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "lowest", "highest"),
    [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (12, MAX_BACKOFF_S / 2, MAX_BACKOFF_S)],
)
def test_the_backoff_doubles_per_attempt_is_capped_and_jittered_down_to_half(
    attempt: int, lowest: float, highest: float
) -> None:
    retry = Retry(attempts=20, backoff_s=1.0)
    assert backoff_s(retry, attempt, rand=lambda: 0.0) == lowest
    assert backoff_s(retry, attempt, rand=lambda: 1.0) == highest
    assert lowest < backoff_s(retry, attempt) <= highest


# -- which failures are retried --------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.ACTION_HANDLER_FAILED,
        ErrorCode.ACTION_UNREACHABLE,
        ErrorCode.ACTION_TIMEOUT,
        ErrorCode.TIMEOUT,
    ],
)
def test_a_passing_failure_with_attempts_left_is_retried_after_the_backoff(code: str) -> None:
    retry = retry_of(
        REQUEST, failure(code), attempt=2, retry=Retry(3, 1.0), now=T0, rand=lambda: 1.0
    )
    assert retry is not None
    assert (retry.attempt, retry.code, retry.retry_at) == (2, code, T0 + timedelta(seconds=2))


@pytest.mark.parametrize(
    "code",
    [
        ErrorCode.ACTION_REFUSED,  # a handler's 4xx
        "ORDER_REJECTED",  # a target resolver's own code
        ErrorCode.ACTION_BAD_RESPONSE,
        ErrorCode.OPERATION_FAILED,  # GraphQL errors
        ErrorCode.RESULT_TOO_LARGE,
        ErrorCode.CANCELLED,
        ErrorCode.ATTEMPTS_EXHAUSTED,
    ],
)
def test_a_failure_that_will_not_change_is_never_retried(code: str) -> None:
    assert retry_of(REQUEST, failure(code), attempt=1, retry=Retry(5, 1.0), now=T0) is None


def test_success_and_the_last_attempt_are_final() -> None:
    done = OperationCompleted(**ENVELOPE, response={"data": {}})
    assert retry_of(REQUEST, done, attempt=1, retry=Retry(3, 1.0), now=T0) is None
    last = failure(ErrorCode.ACTION_HANDLER_FAILED)
    assert retry_of(REQUEST, last, attempt=3, retry=Retry(3, 1.0), now=T0) is None
    # The default: tried once, as before retries existed.
    assert retry_of(REQUEST, last, attempt=1, retry=Retry(), now=T0) is None


def test_actions_use_their_own_retry_and_queries_the_default(tmp_path: Path) -> None:
    with_retry = YAML.replace(
        "      timeout: 12\n", "      timeout: 12\n      retry: {attempts: 4, backoff: 0.5}\n"
    )
    actions = load_actions(write(tmp_path, with_retry), ENV)
    policies = RetryPolicies(default=Retry(2, 3.0), actions=actions)
    assert policies(REQUEST) == Retry(2, 3.0)
    place = ActionInvocation(name="place_order", input={})
    cancel = ActionInvocation(name="cancel_order", input={})
    assert policies(OperationRequested(**ENVELOPE, query="", action=place)) == Retry(4, 0.5)
    assert policies(OperationRequested(**ENVELOPE, query="", action=cancel)) == Retry(1, 1.0)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("retry: 3", "actions.yaml:7: retry must be a mapping"),
        ("retry: {attempts: 0}", "actions.yaml:7: retry attempts must be a whole number"),
        ("retry: {attempts: 2.5}", "retry attempts must be a whole number from 1 to 100"),
        ("retry: {attempts: 2, backoff: -1}", "retry backoff must be a positive number"),
        ("retry: {attempts: 2, delay: 1}", "retry takes attempts and backoff, not delay"),
    ],
)
def test_a_bad_retry_names_its_line(tmp_path: Path, spec: str, message: str) -> None:
    bad = YAML.replace("      timeout: 12\n", f"      timeout: 12\n      {spec}\n")
    assert message in error_of(tmp_path, bad)


# -- the delivery decision -------------------------------------------------------------------


def test_a_redelivery_before_the_retry_time_hands_the_request_back_until_then() -> None:
    facts = OperationFacts(
        requested=(1, REQUEST),
        started=started(1, delivery=1),
        attempt_failed=attempt_failed(1, T0 + timedelta(seconds=5)),
    )
    decision = decide(facts, delivery=2, max_attempts=4, now=T0)
    assert decision == RetryLater(retry_at=T0 + timedelta(seconds=5))
    # The delivery that stored the failure, deciding again, waits as well.
    assert decide(facts, delivery=1, max_attempts=4, now=T0) == decision


def test_once_the_retry_time_has_come_the_next_attempt_runs_past_the_executor_limit() -> None:
    facts = OperationFacts(
        requested=(1, REQUEST),
        started=started(4, delivery=4),
        attempt_failed=attempt_failed(4, T0),
    )
    # Four starts would exhaust it if they were lost executors; a retried failure is not.
    assert decide(facts, delivery=5, max_attempts=4, now=T0) == Run(attempt=5)


def test_an_older_failed_attempt_does_not_excuse_a_lost_executor() -> None:
    facts = OperationFacts(
        requested=(1, REQUEST),
        started=started(4, delivery=5, sequence=4),
        attempt_failed=attempt_failed(3, T0),
    )
    assert decide(facts, delivery=6, max_attempts=4, now=T0) == Exhausted(lost_attempts=4)
    running = decide(facts, delivery=5, max_attempts=4, now=T0)
    assert running == Run(attempt=4, record_start=False)


# -- the facts and the fold ------------------------------------------------------------------


def stored(sequence: int, event: OperationEvent) -> tuple[int, str, bytes]:
    subject = event_subject(event.tenant, event.operation_id, event_type(event))
    return sequence, subject, encode_event(event)


def test_a_retried_attempt_keeps_the_operation_running_and_counts_the_attempts() -> None:
    events: list[tuple[int, OperationEvent]] = [
        (1, REQUEST),
        started(1, delivery=1, sequence=2),
        attempt_failed(1, T0),
        (4, started(2, delivery=2)[1]),
    ]
    assert fold(events[:3])["op"].status == TaskStatus.RUNNING
    # Folded in any order, the fact alone says the attempt happened.
    view = fold([events[2], events[0]])["op"]
    assert (view.status, view.attempts) == (TaskStatus.RUNNING, 1)
    ended = (5, failure(ErrorCode.ACTION_HANDLER_FAILED))
    final = fold([*events, ended])["op"]
    assert (final.status, final.attempts, final.code) == (
        TaskStatus.ERROR,
        2,
        "ACTION_HANDLER_FAILED",
    )
    # The stream's facts hold the latest failed attempt.
    facts = facts_from([stored(s, e) for s, e in events[1:]], [stored(*events[0])])
    assert facts.attempt_failed is not None
    assert facts.attempt_failed[1].attempt == 1
    assert facts.view() == fold(events)["op"]
