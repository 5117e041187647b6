"""What one delivery of a request does, decided from the stream's facts alone."""

from datetime import UTC, datetime, timedelta

import pytest

from contracts.events import (
    Correlation,
    OperationCancelRequested,
    OperationCompleted,
    OperationFailed,
    OperationRequested,
    OperationStarted,
    TerminalEvent,
)
from services.common.event_log import OperationFacts
from services.executor.decide import (
    AlreadyEnded,
    Cancelled,
    Decision,
    Exhausted,
    Expired,
    Run,
    Superseded,
    decide,
)

ENVELOPE: Correlation = {"operation_id": "op", "tenant": "t", "principal": "u", "trace_id": "tr"}
REQUESTED = (1, OperationRequested(**ENVELOPE, query="{ a }"))


def started(attempt: int, *, delivery: int) -> tuple[int, OperationStarted]:
    return 2, OperationStarted(**ENVELOPE, attempt=attempt, worker="w", delivery=delivery)


def ended(event: TerminalEvent, sequence: int = 9) -> tuple[int, TerminalEvent]:
    return sequence, event


COMPLETED = OperationCompleted(**ENVELOPE, response={"data": {"a": 1}})
FAILED = OperationFailed(**ENVELOPE, code="X", error="broke")


@pytest.mark.parametrize(
    ("facts", "delivery", "expected"),
    [
        # A first delivery of a fresh request runs it.
        (OperationFacts(requested=REQUESTED), 1, Run(attempt=1)),
        # Ended already, in either way, whatever the delivery: nothing to do.
        (OperationFacts(requested=REQUESTED, terminal=ended(COMPLETED)), 1, AlreadyEnded()),
        (
            OperationFacts(
                requested=REQUESTED, started=started(2, delivery=3), terminal=ended(FAILED)
            ),
            7,
            AlreadyEnded(),
        ),
        # An older delivery that waited too long for a worker: a newer one runs it.
        (
            OperationFacts(requested=REQUESTED, started=started(1, delivery=3)),
            2,
            Superseded(newer_attempt=1),
        ),
        # This delivery's own start is stored (its ack was lost): carry on, do not record again.
        (
            OperationFacts(requested=REQUESTED, started=started(2, delivery=4)),
            4,
            Run(attempt=2, record_start=False),
        ),
        # The executor running attempt 1 was lost: the next delivery runs attempt 2.
        (OperationFacts(requested=REQUESTED, started=started(1, delivery=1)), 2, Run(attempt=2)),
        # Deliveries handed back before anything started (NATS away) use up no attempt.
        (OperationFacts(requested=REQUESTED), 9, Run(attempt=1)),
        (OperationFacts(requested=REQUESTED, started=started(1, delivery=1)), 9, Run(attempt=2)),
        # Started as often as allowed and none finished: the next delivery ends it...
        (
            OperationFacts(requested=REQUESTED, started=started(4, delivery=6)),
            7,
            Exhausted(lost_attempts=4),
        ),
        # ...and so does any later one, if storing that ending failed before.
        (
            OperationFacts(requested=REQUESTED, started=started(4, delivery=6)),
            12,
            Exhausted(lost_attempts=4),
        ),
    ],
)
def test_each_delivery_does_exactly_one_thing(
    facts: OperationFacts, delivery: int, expected: Decision
) -> None:
    assert decide(facts, delivery=delivery, max_attempts=4) == expected


def test_a_single_allowed_attempt_is_run_once_and_never_again() -> None:
    assert decide(OperationFacts(requested=REQUESTED), delivery=1, max_attempts=1) == Run(1)
    lost_once = OperationFacts(requested=REQUESTED, started=started(1, delivery=1))
    assert decide(lost_once, delivery=2, max_attempts=1) == Exhausted(lost_attempts=1)


ASKED = (5, OperationCancelRequested(**ENVELOPE))


@pytest.mark.parametrize(
    ("facts", "delivery"),
    [
        # Cancelled while queued (the edge stored only the request to cancel): never run.
        (OperationFacts(requested=REQUESTED, cancel_requested=ASKED), 1),
        # Its executor was lost mid-run and the owner cancelled it: not run again.
        (
            OperationFacts(
                requested=REQUESTED, started=started(1, delivery=1), cancel_requested=ASKED
            ),
            2,
        ),
        # Even with attempts left over or used up, and for an older delivery.
        (
            OperationFacts(
                requested=REQUESTED, started=started(4, delivery=6), cancel_requested=ASKED
            ),
            7,
        ),
        (
            OperationFacts(
                requested=REQUESTED, started=started(1, delivery=3), cancel_requested=ASKED
            ),
            2,
        ),
    ],
)
def test_a_cancelled_operation_that_has_not_ended_is_ended_as_cancelled(
    facts: OperationFacts, delivery: int
) -> None:
    assert decide(facts, delivery=delivery, max_attempts=4) == Cancelled()


def test_a_cancel_request_after_the_ending_changes_nothing() -> None:
    facts = OperationFacts(requested=REQUESTED, terminal=ended(COMPLETED), cancel_requested=ASKED)

    assert decide(facts, delivery=3, max_attempts=4) == AlreadyEnded()


DEADLINE = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
WITH_DEADLINE = (1, OperationRequested(**ENVELOPE, query="{ a }", start_by=DEADLINE))
LATE = DEADLINE + timedelta(seconds=1)


@pytest.mark.parametrize(
    ("facts", "now", "expected"),
    [
        # Never started and past its deadline: it expires, on any delivery.
        (OperationFacts(requested=WITH_DEADLINE), LATE, Expired(start_by=DEADLINE)),
        # In time: it runs.
        (OperationFacts(requested=WITH_DEADLINE), DEADLINE - timedelta(seconds=1), Run(1)),
        # Started in time, its executor lost: the next attempt runs, deadline or not.
        (OperationFacts(requested=WITH_DEADLINE, started=started(1, delivery=1)), LATE, Run(2)),
        # Ended already: nothing to do.
        (OperationFacts(requested=WITH_DEADLINE, terminal=ended(FAILED)), LATE, AlreadyEnded()),
        # No deadline: as before.
        (OperationFacts(requested=REQUESTED), LATE, Run(1)),
    ],
)
def test_a_start_deadline_expires_only_an_operation_never_started(
    facts: OperationFacts, now: datetime, expected: Decision
) -> None:
    assert decide(facts, delivery=2, max_attempts=4, now=now) == expected
