"""What one delivery of a request should do, decided from the facts in the stream, without I/O.

A request can be delivered more than once: after an executor was lost (its ack timer ran out),
after NATS refused a step (handed back with a delay), or because a fetched message waited for a
free worker longer than its ack timer. Each delivery looks at what the stream holds and does
exactly one of these. Only starts recorded in the stream count as attempts: deliveries handed
back because NATS was briefly away (a leader election, say) never use one up.
"""

from dataclasses import dataclass
from datetime import datetime

from contracts.events import OperationAttemptFailed, OperationStarted
from services.common.event_log import OperationFacts


@dataclass(frozen=True)
class AlreadyEnded:
    """The operation has its terminal event: acknowledge and do nothing."""


@dataclass(frozen=True)
class Superseded:
    """A newer delivery started it: stand back without acknowledging (that ack would be the
    newer delivery's, and nothing would be redelivered if its executor died)."""

    newer_attempt: int


@dataclass(frozen=True)
class Exhausted:
    """It was started as often as allowed and no attempt finished: end it as ATTEMPTS_EXHAUSTED."""

    lost_attempts: int


@dataclass(frozen=True)
class Cancelled:
    """Its owner asked to cancel it and it has not ended: end it as CANCELLED, never run it.

    Once the cancel request is stored no start can follow it (every start is guarded on a
    sequence read after it), so an attempt started before it is the only one that can be
    running, and it is cancelled in its executor; a delivery after that attempt was lost ends
    it here.
    """


@dataclass(frozen=True)
class Expired:
    """It was not started by the deadline its request set: end it as EXPIRED without running."""

    start_by: datetime


@dataclass(frozen=True)
class RetryLater:
    """Its latest attempt failed for a passing reason; the next one may start at ``retry_at``
    (this delivery is handed back until then)."""

    retry_at: datetime


@dataclass(frozen=True)
class Run:
    """Run it as ``attempt``; ``record_start`` is False when this delivery already did."""

    attempt: int
    record_start: bool = True


Decision = AlreadyEnded | Superseded | Cancelled | Exhausted | Expired | RetryLater | Run


def decide(
    facts: OperationFacts, *, delivery: int, max_attempts: int, now: datetime | None = None
) -> Decision:
    """The one thing delivery number ``delivery`` (1 is the first) of a request does.

    An operation is started at most ``max_attempts`` times; a delivery that finds that many
    starts and no ending ends it, so a request that keeps losing its executor still ends. The
    consumer itself never gives up on a request: a delivery that fails to record the ending is
    redelivered (with a back-off) until one succeeds.

    An operation never started whose request's ``start_by`` is before ``now`` expires; one
    started in time is not expired later, whatever becomes of that attempt.

    An attempt that failed for a passing reason (an OperationAttemptFailed for the latest
    start) is followed by the next one once its ``retry_at`` has come, whatever
    ``max_attempts`` says: how often those are retried was decided when the failure was stored.
    """
    if facts.terminal is not None:
        return AlreadyEnded()
    if facts.cancel_requested is not None:
        return Cancelled()
    if facts.started is None:
        return _expired(facts, now) or Run(attempt=1)
    failed = None if facts.attempt_failed is None else facts.attempt_failed[1]
    return _after_start(
        facts.started[1], failed, delivery=delivery, max_attempts=max_attempts, now=now
    )


def _after_start(
    latest: OperationStarted,
    failed: OperationAttemptFailed | None,
    *,
    delivery: int,
    max_attempts: int,
    now: datetime | None,
) -> Decision:
    """What a delivery does about an operation whose latest start is ``latest`` and whose
    latest attempt to fail for a passing reason is ``failed``."""
    if latest.delivery > delivery:
        return Superseded(newer_attempt=latest.attempt)
    if failed is not None and failed.attempt >= latest.attempt:
        if now is not None and now < failed.retry_at:
            return RetryLater(retry_at=failed.retry_at)
        return Run(attempt=latest.attempt + 1)
    if latest.delivery == delivery:
        # This delivery's own start is stored already (its acknowledgement was lost, or a
        # guarded write was refused for an unrelated change): carry on with it.
        return Run(attempt=latest.attempt, record_start=False)
    if latest.attempt >= max_attempts:
        return Exhausted(lost_attempts=latest.attempt)
    return Run(attempt=latest.attempt + 1)


def _expired(facts: OperationFacts, now: datetime | None) -> Expired | None:
    """Expired if the request set a start deadline that ``now`` is past."""
    start_by = None if facts.requested is None else facts.requested[1].start_by
    if start_by is not None and now is not None and now > start_by:
        return Expired(start_by=start_by)
    return None
