"""What one delivery of a request does, decided from the stream's facts alone."""

import pytest

from contracts.events import (
    Correlation,
    OperationCompleted,
    OperationFailed,
    OperationRequested,
    OperationStarted,
    TerminalEvent,
)
from services.common.event_log import OperationFacts
from services.executor.decide import (
    AlreadyEnded,
    Decision,
    Exhausted,
    Run,
    Superseded,
    decide,
)

ENVELOPE: Correlation = {"operation_id": "op", "tenant": "t", "principal": "u", "trace_id": "tr"}
REQUESTED = (1, OperationRequested(**ENVELOPE, query="{ a }"))


def started(attempt: int, sequence: int = 2) -> tuple[int, OperationStarted]:
    return sequence, OperationStarted(**ENVELOPE, attempt=attempt, worker="w")


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
            OperationFacts(requested=REQUESTED, started=started(2), terminal=ended(FAILED)),
            7,
            AlreadyEnded(),
        ),
        # An older delivery that waited too long for a worker: a newer one runs it.
        (OperationFacts(requested=REQUESTED, started=started(3)), 2, Superseded(newer_attempt=3)),
        # This delivery's own start is stored (its ack was lost): carry on, do not record again.
        (
            OperationFacts(requested=REQUESTED, started=started(2)),
            2,
            Run(attempt=2, record_start=False),
        ),
        # The executor running attempt 1 was lost: the next delivery runs it again.
        (OperationFacts(requested=REQUESTED, started=started(1)), 2, Run(attempt=2)),
        # A delivery handed back before it started anything (NATS trouble) still runs it.
        (OperationFacts(requested=REQUESTED), 3, Run(attempt=3)),
        # The last allowed delivery ends it instead of running it again...
        (OperationFacts(requested=REQUESTED, started=started(4)), 5, Exhausted(lost_attempts=4)),
        # ...and so does any later one, if storing that ending failed before.
        (OperationFacts(requested=REQUESTED, started=started(4)), 9, Exhausted(lost_attempts=8)),
    ],
)
def test_each_delivery_does_exactly_one_thing(
    facts: OperationFacts, delivery: int, expected: Decision
) -> None:
    assert decide(facts, delivery=delivery, max_deliveries=5) == expected


def test_a_single_allowed_delivery_still_runs_the_operation() -> None:
    assert decide(OperationFacts(requested=REQUESTED), delivery=1, max_deliveries=1) == Run(1)
    assert decide(OperationFacts(requested=REQUESTED), delivery=2, max_deliveries=1) == (
        Exhausted(lost_attempts=1)
    )
