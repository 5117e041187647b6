"""How events fold into a view: the pure ``evolve`` every reader of the stream shares.

The fold is order-free: each field is merged by a rule that does not care which event came first
(earliest time, highest attempt, the terminal event with the lowest stream sequence), so
duplicated, redelivered and out-of-order events all leave the same view, and two projector replicas
racing on one key converge. The status never goes backwards and a terminal state is final.

Progress keeps the newest report (highest attempt, then highest report number), so an older
report folded later changes nothing; a report stored after the terminal event (a lost attempt
still running somewhere) is ignored once that terminal event is folded.

A callback's state is merged the same way: DELIVERED wins over FAILED, which wins over PENDING;
``attempts`` is the highest attempt recorded, and the last error that of the highest failed
attempt.
"""

from datetime import datetime

from msgspec.structs import replace

from contracts.events import (
    CallbackAbandoned,
    CallbackAttempted,
    CallbackDelivered,
    CallbackEvent,
    OperationAttemptFailed,
    OperationCancelRequested,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationProgressed,
    OperationRequested,
    OperationStarted,
    ProgressReport,
    TerminalEvent,
)
from contracts.names import REQUESTS_STREAM
from contracts.view import (
    CallbackState,
    CallbackStatus,
    OperationProgress,
    OperationView,
    TaskStatus,
)

# Which callback state wins when two are folded: a later fact can only move it forwards.
_CALLBACK_RANK = {CallbackState.PENDING: 0, CallbackState.FAILED: 1, CallbackState.DELIVERED: 2}


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def _status(*, attempts: int, terminal: TaskStatus | None) -> TaskStatus:
    if terminal is not None:
        return terminal
    return TaskStatus.RUNNING if attempts > 0 else TaskStatus.QUEUED


def _newer_progress(
    current: OperationProgress | None, event: OperationProgressed | ProgressReport, sequence: int
) -> OperationProgress | None:
    """The report ``event`` (stored at ``sequence``) if it is newer than ``current``, else
    ``current``: a later attempt's, or a later report of the same attempt (the sequence only
    breaks ties, so that the fold keeps the same one whatever order they come in)."""
    if current is not None and (current.attempt, current.report, current.sequence) >= (
        event.attempt,
        event.report,
        sequence,
    ):
        return current
    return OperationProgress(
        done=event.done,
        total=event.total,
        message=event.message,
        attempt=event.attempt,
        report=event.report,
        sequence=sequence,
    )


def _with_progress(
    view: OperationView, event: OperationProgressed, sequence: int, last_sequence: int
) -> OperationView:
    """``view`` with the report ``event`` (at ``sequence``) if it is newer than the view's and
    not stored after the terminal event."""
    if view.terminal_sequence is not None and sequence > view.terminal_sequence:
        return replace(view, last_sequence=last_sequence)
    progress = _newer_progress(view.progress, event, sequence)
    return replace(view, progress=progress, last_sequence=last_sequence)


def _with_attempt(
    view: OperationView, event: OperationStarted | OperationAttemptFailed, last_sequence: int
) -> OperationView:
    """An attempt began, or failed for a passing reason and waits to be tried again: running as
    far as a reader can tell, and the attempt counted even if its start is folded later."""
    attempts = max(view.attempts, event.attempt)
    terminal = view.status if view.status.is_terminal else None
    started_at = view.started_at
    if isinstance(event, OperationStarted):
        started_at = _earliest(started_at, event.occurred_at)
    return replace(
        view,
        attempts=attempts,
        started_at=started_at,
        status=_status(attempts=attempts, terminal=terminal),
        last_sequence=last_sequence,
    )


def _with_ending(
    view: OperationView, event: TerminalEvent, sequence: int, last_sequence: int
) -> OperationView:
    """The outcome, unless a terminal event stored earlier decided it already.

    The last report an ending carries counts even when another ending decided: it is one of the
    operation's reports all the same, and taking the newest of all of them keeps the fold
    order-free. So does the start an ending carries, as an OperationStarted would."""
    progress = view.progress
    if event.progress is not None:
        progress = _newer_progress(progress, event.progress, sequence)
    attempts, started_at = view.attempts, view.started_at
    if event.start is not None:
        attempts = max(attempts, event.start.attempt)
        started_at = _earliest(started_at, event.start.started_at)
    if view.terminal_sequence is not None and view.terminal_sequence <= sequence:
        return replace(
            view,
            progress=progress,
            attempts=attempts,
            started_at=started_at,
            last_sequence=last_sequence,
        )
    failed = isinstance(event, OperationFailed)
    return replace(
        view,
        progress=progress,
        attempts=attempts,
        started_at=started_at,
        status=TaskStatus.ERROR if failed else TaskStatus.SUCCESS,
        completed_at=event.occurred_at,
        code=event.code if isinstance(event, OperationFailed) else None,
        error=event.error if isinstance(event, OperationFailed) else None,
        response=event.response,
        response_ref=event.response_ref,
        terminal_sequence=sequence,
        last_sequence=last_sequence,
    )


def _with_request(view: OperationView, event: OperationRequested, sequence: int) -> OperationView:
    """What the request (stored at ``sequence``) says: the earliest one stored decides (a retried
    submit is the same)."""
    first_request = view.created_at is None or event.occurred_at < view.created_at
    return replace(
        view,
        # 0: no place in the requests stream (folded_at).
        request_sequence=(sequence or None) if first_request else view.request_sequence,
        created_at=_earliest(view.created_at, event.occurred_at),
        operation_name=event.operation_name if first_request else view.operation_name,
        action=(event.action and event.action.name) if first_request else view.action,
        listing_ordinal=(event.listing_ordinal if first_request else view.listing_ordinal),
        # Pending from the start, so a reader sees a callback is coming.
        callback=view.callback or CallbackStatus() if event.callback_url else view.callback,
    )


def _with_callback(current: CallbackStatus | None, event: CallbackEvent) -> CallbackStatus:
    """``current`` with one recorded callback attempt merged in, whatever order they come in."""
    current = current or CallbackStatus()
    match event:
        case CallbackDelivered():
            state = CallbackState.DELIVERED
        case CallbackAbandoned():
            state = CallbackState.FAILED
        case CallbackAttempted():
            state = CallbackState.PENDING
    if _CALLBACK_RANK[current.state] > _CALLBACK_RANK[state]:
        state = current.state
    last_error, last_error_attempt = current.last_error, current.last_error_attempt
    if not isinstance(event, CallbackDelivered) and event.attempt > last_error_attempt:
        last_error, last_error_attempt = event.error, event.attempt
    return CallbackStatus(
        state=state,
        attempts=max(current.attempts, event.attempt),
        last_error=last_error,
        last_error_attempt=last_error_attempt,
    )


def folded_at(stream: str, event: OperationEvent, sequence: int) -> int:
    """The sequence ``evolve`` takes for ``event``, stored at ``sequence`` of ``stream``: its
    own, but 0 for a request stored in the history stream (before requests had a stream of
    their own), which has no place in the requests stream. Every reader of the streams folds
    through this, so that such a request leaves ``request_sequence`` empty everywhere."""
    if isinstance(event, OperationRequested) and stream != REQUESTS_STREAM:
        return 0
    return sequence


def evolve(view: OperationView | None, event: OperationEvent, sequence: int) -> OperationView:
    """Fold one event, stored at ``sequence`` of its stream, into an operation's view.

    The view's ``last_sequence`` is its place in the history stream (contracts/names.py): a
    request, stored in the requests stream with sequences of their own, does not move it. A
    request folded at 0 (``folded_at``: one stored in the history stream before requests had a
    stream of their own) leaves ``request_sequence`` None, as the views written then have it,
    so it is never compared with the requests stream's."""
    if view is None:
        view = OperationView(
            operation_id=event.operation_id, tenant=event.tenant, principal=event.principal
        )
    if isinstance(event, OperationRequested):
        return _with_request(view, event, sequence)
    last_sequence = max(view.last_sequence, sequence)
    match event:
        case OperationStarted() | OperationAttemptFailed():
            return _with_attempt(view, event, last_sequence)
        case OperationCancelRequested():
            # A request to stop, not an outcome: the terminal event that follows it decides.
            return replace(view, last_sequence=last_sequence)
        case OperationProgressed():
            return _with_progress(view, event, sequence, last_sequence)
        case CallbackAttempted() | CallbackDelivered() | CallbackAbandoned():
            callback = _with_callback(view.callback, event)
            return replace(view, callback=callback, last_sequence=last_sequence)
        case OperationCompleted() | OperationFailed():
            return _with_ending(view, event, sequence, last_sequence)


def fold(events: list[tuple[int, OperationEvent]]) -> dict[str, OperationView]:
    """Fold (sequence, event) pairs into views keyed by operation id."""
    views: dict[str, OperationView] = {}
    for sequence, event in events:
        views[event.operation_id] = evolve(views.get(event.operation_id), event, sequence)
    return views
