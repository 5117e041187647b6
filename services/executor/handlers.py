"""Running one delivered request: decide from the stream's facts, then act and record it.

Every write names the last sequence it saw on the operation's subjects, so two executors racing
on one operation cannot both record a start or an ending: the second one is refused, reads the
facts again and decides again. An operation therefore has exactly one terminal event.
"""

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Final

import nats.errors
from msgspec.structs import replace

from contracts.errors import ErrorCode
from contracts.events import (
    AttemptStart,
    OperationAttemptFailed,
    OperationEvent,
    OperationRequested,
    OperationStarted,
    TerminalEvent,
    cancelled,
    correlation_of,
)
from contracts.names import result_object_name, terminal_msg_id
from services.actions.config import Retry
from services.common.event_log import AppendConflictError, EventLog, OperationFacts
from services.common.results import ResultStore
from services.common.retry import riding_through
from services.executor.decide import (
    AlreadyEnded,
    Cancelled,
    Exhausted,
    Expired,
    RetryLater,
    Run,
    Superseded,
    decide,
)
from services.executor.outcome import (
    Inline,
    ResultLimits,
    failed,
    naming_what_ran,
    place_result,
    with_reference,
)
from services.executor.progress import START_STORED
from services.executor.retries import NO_RETRY, retry_of

log = logging.getLogger(__name__)

# Guarded writes refused this often in one delivery mean the operation is being fought over;
# hand the delivery back and decide again later.
MAX_DECISIONS: Final = 10
# How long a step rides out JetStream not answering (a leader election takes 5-7 s) before the
# delivery is handed back; storing a finished outcome, which would otherwise be lost and the
# operation run again, waits longer.
STEP_RIDE_THROUGH_S: Final = 15.0
OUTCOME_RIDE_THROUGH_S: Final = 30.0
# A fresh first delivery's attempt that ends within this long stores no OperationStarted of its
# own: its start rides on its ending (AttemptStart). RUNNING would show for less than this, to
# nobody, and the start costs an event, its write and its fold (2 of 12.6 ms from submit to a
# subscriber's final state at 50 operations/s with sync_interval always). 50 ms rather than 10:
# a busy executor's attempts of a sub-millisecond query take 10-50 ms of wall time, sharing its
# event loop with hundreds of others, and stored their starts exactly when it could least
# afford them (closed loop with the default sync: 2.4-2.7 events per operation instead of 2.0,
# 855 against 925 operations/s). An attempt still running then stores its start as before; a
# redelivery always stores its start first, so attempts that keep losing their executor are
# counted.
UNRECORDED_START_S: Final = 0.05
# Writing a large result takes time of its own: its budget grows by a second per this many bytes
# (a rate far below what a healthy NATS takes, about 100 MB/s measured here).
RESULT_BYTES_PER_S: Final = 4 * 1024 * 1024


class SupersededDeliveryError(Exception):
    """A newer delivery of this request is already running elsewhere; this one must stand back.

    It must not be acknowledged either: JetStream would take that ack for the newer delivery's,
    and nothing would be redelivered if the executor running the newer one died.
    """


class ContestedOperationError(Exception):
    """Guarded writes kept being refused; the delivery should be handed back."""


class StreamMovedOnError(Exception):
    """An attempt that stored no start found its ending refused: something was stored for the
    operation since its request (a cancel request, a newer delivery's start). As a refused
    start would have, that decides what this delivery does now."""


class RetryScheduledError(Exception):
    """The latest attempt failed for a passing reason: hand the delivery back until
    ``retry_at``, when its redelivery runs the next attempt."""

    def __init__(self, operation_id: str, retry_at: datetime) -> None:
        super().__init__(operation_id, retry_at)
        self.retry_at = retry_at

    def delay_s(self, now: datetime) -> float:
        """Seconds from ``now`` until the next attempt may start (0 if it may already)."""
        return max(0.0, (self.retry_at - now).total_seconds())


def no_retry(_request: OperationRequested) -> Retry:
    """The retry of every request when none is configured: tried once."""
    return NO_RETRY


async def handle_requested(
    request: OperationRequested,
    *,
    delivery: int,
    requested_at: int,
    max_attempts: int,
    events: EventLog,
    run: Callable[[OperationRequested, int], Awaitable[TerminalEvent]],
    worker: str,
    limits: ResultLimits,
    results: ResultStore,
    fresh: bool = True,
    retries: Callable[[OperationRequested], Retry] = no_retry,
) -> TerminalEvent | None:
    """Act on delivery number ``delivery`` of ``request`` (stored at ``requested_at``); return
    the terminal event it stored.

    None when the operation had ended already (or another delivery ended it first). Raises
    SupersededDeliveryError when a newer delivery runs it, and NATS errors when a step could not
    be stored even after riding out a leader election (the caller hands the delivery back).
    Returns only once the operation's terminal event is stored, so the caller may then
    acknowledge. The caller keeps the message alive throughout (services/executor/heartbeats.py).

    A first delivery does not read the stream: nobody else has held the request, so it is the
    operation's only fact as far as anyone can know, and the guarded write of its start says
    otherwise if it is not (a cancel request, say): the facts are read then. A ``fresh`` request
    runs before its start is stored (and one that ends within UNRECORDED_START_S stores none:
    its ending carries it); one that waited in the queue, more likely cancelled meanwhile, only
    once its start is stored, so it is never begun if it was. (It used to be
    read first: one more request per operation exactly when the queue is long.)

    An attempt that fails for a passing reason with attempts left (``retries`` says how many a
    request has) is stored as OperationAttemptFailed and RetryScheduledError raised: the caller
    hands the delivery back until the next attempt is due.
    """
    operation = request.operation_id
    first_look: OperationFacts | None = None
    if delivery == 1:
        # Nothing stored after the request yet: its history is empty (last sequence 0).
        first_look = OperationFacts(requested=(requested_at, request))
    for _ in range(MAX_DECISIONS):
        facts = first_look or await _read_facts(events, request, budget_s=STEP_RIDE_THROUGH_S)
        speculative, first_look = first_look is not None, None
        now = datetime.now(UTC)
        decision = decide(facts, delivery=delivery, max_attempts=max_attempts, now=now)
        if speculative and not isinstance(decision, Run):
            continue  # ending it unrun (expired): only on what the stream really holds
        match decision:
            case AlreadyEnded():
                return None
            case Superseded(newer_attempt=newer):
                log.info("operation %s: attempt %d runs it; standing back", operation, newer)
                raise SupersededDeliveryError(operation)
            case RetryLater(retry_at=retry_at):
                raise RetryScheduledError(operation, retry_at)
            case Cancelled() | Exhausted() | Expired():
                return await record_outcome(
                    events,
                    request,
                    _unrun_ending(request, decision, now),
                    after=facts.last_sequence,
                    limits=limits,
                    results=results,
                )
            case Run(attempt=attempt, record_start=record_start):
                started = OperationStarted(
                    **correlation_of(request), attempt=attempt, worker=worker, delivery=delivery
                )
                ran = await _start_and_run(
                    events,
                    request,
                    started,
                    run,
                    after=facts.last_sequence,
                    record_start=record_start,
                    overlap=speculative and fresh,
                    # An action's handler is told the attempt (Asyncgate-Attempt), so its
                    # attempts are always counted: one lost at once is not told 1 again.
                    carry_quick_start=request.action is None,
                )
                if ran is None:
                    continue  # the stream changed since the facts were read: decide again
                after, outcome = ran
                retry = retry_of(
                    request,
                    outcome,
                    attempt=attempt,
                    retry=retries(request),
                    now=datetime.now(UTC),
                )
                if retry is not None:
                    unstored = started if outcome.start is not None else None
                    if await _record_retry(events, request, retry, after=after, start=unstored):
                        raise RetryScheduledError(operation, retry.retry_at)
                    continue  # it ended or was cancelled meanwhile: decide again
                try:
                    return await record_outcome(
                        events, request, outcome, after=after, limits=limits, results=results
                    )
                except StreamMovedOnError:
                    continue
    raise ContestedOperationError(operation)


def _unrun_ending(
    request: OperationRequested, decision: Cancelled | Exhausted | Expired, now: datetime
) -> TerminalEvent:
    """The terminal event of an operation that ends without running (again)."""
    match decision:
        case Cancelled():
            return cancelled(request)
        case Exhausted(lost_attempts=lost):
            return failed(
                request,
                ErrorCode.ATTEMPTS_EXHAUSTED,
                f"no attempt finished: the executors running it were lost {lost} times",
            )
        case Expired(start_by=start_by):
            late_s = (now - start_by).total_seconds()
            return failed(
                request,
                ErrorCode.EXPIRED,
                f"not started by its deadline ({late_s:.1f} s ago); it never ran",
            )


async def _start_and_run(
    events: EventLog,
    request: OperationRequested,
    started: OperationStarted,
    run: Callable[[OperationRequested, int], Awaitable[TerminalEvent]],
    *,
    after: int,
    record_start: bool,
    overlap: bool,
    carry_quick_start: bool,
) -> tuple[int, TerminalEvent] | None:
    """Record ``started`` (unless ``record_start`` is False: stored already), run the operation;
    the sequence later writes must name and the outcome, or None if the start was refused
    because the stream changed.

    With ``overlap`` the operation runs before its start is stored: on a first delivery nobody
    else can hold the request, so a refusal is rare, and it cancels the run before its outcome
    is used. With ``carry_quick_start``, an overlapping run that ends within UNRECORDED_START_S
    stores no start at all: its outcome carries it (``start``), and its ending, guarded on the
    same sequence, is the only write.
    """
    start_stored: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    if not record_start:
        start_stored.set_result(True)
        return after, await _run_knowing(start_stored, run, request, started.attempt)
    if not overlap:
        recorded = await _record_start(events, started, after=after)
        if recorded is None:
            return None
        start_stored.set_result(True)
        return recorded, await _run_knowing(start_stored, run, request, started.attempt)
    running = asyncio.ensure_future(_run_knowing(start_stored, run, request, started.attempt))
    if carry_quick_start:
        try:
            await asyncio.wait({running}, timeout=UNRECORDED_START_S)
        except BaseException:
            start_stored.set_result(False)
            running.cancel()
            raise
        if running.done():
            start_stored.set_result(False)  # nor will it be: its reports ride on the ending
            return after, replace(await running, start=_carried(started))
    try:
        recorded = await _record_start(events, started, after=after)
    except BaseException:
        start_stored.set_result(False)
        running.cancel()
        raise
    start_stored.set_result(recorded is not None)
    if recorded is None:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
        return None
    return recorded, await running


def _carried(started: OperationStarted) -> AttemptStart:
    """``started`` as the ending that concludes its attempt carries it."""
    return AttemptStart(
        attempt=started.attempt,
        worker=started.worker,
        delivery=started.delivery,
        started_at=started.occurred_at,
    )


async def _run_knowing(
    start_stored: asyncio.Future[bool],
    run: Callable[[OperationRequested, int], Awaitable[TerminalEvent]],
    request: OperationRequested,
    attempt: int,
) -> TerminalEvent:
    """``run`` the attempt, telling its progress reports when its start is stored."""
    token = START_STORED.set(start_stored)
    try:
        return await run(request, attempt)
    finally:
        START_STORED.reset(token)


async def _read_facts(
    events: EventLog, request: OperationRequested, *, budget_s: float
) -> OperationFacts:
    return await riding_through(
        lambda: events.facts(request.tenant, request.operation_id),
        what=f"reading {request.operation_id}",
        budget_s=budget_s,
    )


async def _append_guarded(
    events: EventLog,
    event: OperationEvent,
    *,
    msg_id: str,
    after: int,
    what: str,
    budget_s: float,
    payload: bytes | None = None,
    refuse_duplicate: bool = False,
) -> int | None:
    """Store ``event`` only if nothing was stored for its operation since ``after``, riding out
    NATS trouble for ``budget_s``; its sequence, or None if the stream changed meanwhile (with
    ``refuse_duplicate``, also if a message with its id was stored already)."""
    try:
        return await riding_through(
            functools.partial(
                events.append,
                event,
                msg_id=msg_id,
                after=after,
                payload=payload,
                refuse_duplicate=refuse_duplicate,
            ),
            what=what,
            budget_s=budget_s,
        )
    except AppendConflictError:
        return None


async def _record_start(events: EventLog, started: OperationStarted, *, after: int) -> int | None:
    """Store this delivery's start; its sequence, or None if the stream changed meanwhile."""
    return await _append_guarded(
        events,
        started,
        msg_id=f"{started.operation_id}.started.{started.attempt}",
        after=after,
        what=f"starting {started.operation_id}",
        budget_s=STEP_RIDE_THROUGH_S,
    )


async def _record_retry(
    events: EventLog,
    request: OperationRequested,
    retry: OperationAttemptFailed,
    *,
    after: int,
    start: OperationStarted | None = None,
) -> bool:
    """Store that the attempt will be retried (and first its ``start``, if the attempt ended
    without storing it: the next attempt is counted from the stored starts); False if the
    operation ended or its owner asked to cancel it meanwhile (then the next decision says what
    to do)."""
    operation = request.operation_id
    if start is not None:
        recorded = await _record_start(events, start, after=after)
        if recorded is None:
            return False
        after = recorded
    for _ in range(MAX_DECISIONS):
        stored_at = await _append_guarded(
            events,
            retry,
            msg_id=f"{operation}.attempt_failed.{retry.attempt}",
            after=after,
            what=f"storing the failed attempt {retry.attempt} of {operation}",
            budget_s=STEP_RIDE_THROUGH_S,
        )
        if stored_at is not None:
            return True
        facts = await _read_facts(events, request, budget_s=STEP_RIDE_THROUGH_S)
        if facts.terminal is not None or facts.cancel_requested is not None:
            return False
        stored = facts.attempt_failed
        if stored is not None and stored[1].attempt >= retry.attempt:
            return True  # stored by a try whose acknowledgement was lost
        after = facts.last_sequence
    raise ContestedOperationError(operation)


async def record_outcome(
    events: EventLog,
    request: OperationRequested,
    outcome: TerminalEvent,
    *,
    after: int,
    limits: ResultLimits,
    results: ResultStore,
) -> TerminalEvent | None:
    """Store ``outcome`` as the operation's one terminal event; None if another one was first.

    A large result is written to the results bucket first, so the stored event never refers to
    nothing; an outcome that loses to another attempt's removes its object again. A finished
    outcome is precious (an action's handler must not be called again for nothing), so NATS
    trouble is ridden out for longer than other steps; a refused write means the stream
    changed, so the facts are read again. An outcome whose attempt stored no start (it carries
    it) is not written over a change: StreamMovedOnError, and the delivery decides again.
    """
    placed = await _placed(request, naming_what_ran(request, outcome), limits, results)
    outcome, payload = placed.event, placed.payload
    operation = request.operation_id
    for _ in range(MAX_DECISIONS):
        stored_at = await _append_guarded(
            events,
            outcome,
            msg_id=terminal_msg_id(operation),
            after=after,
            what=f"storing the outcome of {operation}",
            budget_s=OUTCOME_RIDE_THROUGH_S,
            payload=payload,
            # Another attempt's ending stored under the same id within the dedup window is
            # acknowledged as a duplicate: read, not taken for this one's.
            refuse_duplicate=True,
        )
        if stored_at is not None:
            return outcome
        facts = await _read_facts(events, request, budget_s=OUTCOME_RIDE_THROUGH_S)
        terminal = facts.terminal
        # Ours, stored by a try whose acknowledgement was lost, or another attempt's.
        if terminal is not None and terminal[1].event_id == outcome.event_id:
            return outcome
        if terminal is not None or outcome.start is not None:
            if outcome.response_ref is not None:
                await _discard_result(results, outcome.response_ref.name)
            if terminal is not None:
                return None
            raise StreamMovedOnError(operation)
        after = facts.last_sequence
    raise ContestedOperationError(operation)


async def _placed(
    request: OperationRequested,
    outcome: TerminalEvent,
    limits: ResultLimits,
    results: ResultStore,
) -> Inline:
    """``outcome`` ready to store: inline, or referring to its result written as an object."""
    placed = place_result(request, outcome, limits)
    if isinstance(placed, Inline):
        return placed
    name = result_object_name(request.operation_id, outcome.event_id)
    began = time.monotonic()
    # Rewriting the same object on a retry is harmless: same name, same bytes.
    reference = await riding_through(
        lambda: results.put(name, placed.body),
        what=f"storing the result of {request.operation_id}",
        budget_s=OUTCOME_RIDE_THROUGH_S + len(placed.body) / RESULT_BYTES_PER_S,
    )
    log.info(
        "operation %s: stored its result of %d bytes as %s in %.2f s",
        request.operation_id,
        reference.size,
        name,
        time.monotonic() - began,
    )
    referring = with_reference(request, placed.event, reference, limits)
    if referring.event.response_ref is None:
        await _discard_result(results, name)  # too large even so: nothing will refer to it
    return referring


async def _discard_result(results: ResultStore, name: str) -> None:
    """Remove the object of an outcome that is not stored (left to expire if NATS is away)."""
    try:
        await results.delete(name)
    except (nats.errors.Error, TimeoutError) as error:
        log.warning("could not remove the result %s (%s); it will expire", name, error)
