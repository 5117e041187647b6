"""How events fold into a view: the pure ``evolve`` every reader of the stream shares.

The fold is order-free: each field is merged by a rule that does not care which event came first
(earliest time, highest attempt, the terminal event with the lowest stream sequence), so
duplicated, redelivered and out-of-order events all leave the same view, and two projector replicas
racing on one key converge. The status never goes backwards and a terminal state is final.
"""

from datetime import datetime

from msgspec.structs import replace

from contracts.events import (
    OperationAttemptFailed,
    OperationCancelRequested,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationRequested,
    OperationStarted,
)
from contracts.view import OperationView, TaskStatus


def _earliest(current: datetime | None, candidate: datetime) -> datetime:
    return candidate if current is None or candidate < current else current


def _status(*, attempts: int, terminal: TaskStatus | None) -> TaskStatus:
    if terminal is not None:
        return terminal
    return TaskStatus.RUNNING if attempts > 0 else TaskStatus.QUEUED


def evolve(view: OperationView | None, event: OperationEvent, sequence: int) -> OperationView:
    """Fold one event, stored at stream ``sequence``, into an operation's view."""
    if view is None:
        view = OperationView(
            operation_id=event.operation_id, tenant=event.tenant, principal=event.principal
        )
    last_sequence = max(view.last_sequence, sequence)
    match event:
        case OperationRequested():
            first_request = view.created_at is None or event.occurred_at < view.created_at
            return replace(
                view,
                created_at=_earliest(view.created_at, event.occurred_at),
                operation_name=event.operation_name if first_request else view.operation_name,
                action=(event.action and event.action.name) if first_request else view.action,
                listing_ordinal=(event.listing_ordinal if first_request else view.listing_ordinal),
                last_sequence=last_sequence,
            )
        case OperationStarted():
            attempts = max(view.attempts, event.attempt)
            terminal = view.status if view.status.is_terminal else None
            return replace(
                view,
                attempts=attempts,
                started_at=_earliest(view.started_at, event.occurred_at),
                status=_status(attempts=attempts, terminal=terminal),
                last_sequence=last_sequence,
            )
        case OperationAttemptFailed():
            # Waiting to be tried again: still running as far as a reader can tell, and the
            # attempt counted even if its start is folded later.
            attempts = max(view.attempts, event.attempt)
            terminal = view.status if view.status.is_terminal else None
            return replace(
                view,
                attempts=attempts,
                status=_status(attempts=attempts, terminal=terminal),
                last_sequence=last_sequence,
            )
        case OperationCancelRequested():
            # A request to stop, not an outcome: the terminal event that follows it decides.
            return replace(view, last_sequence=last_sequence)
        case OperationCompleted() | OperationFailed():
            if view.terminal_sequence is not None and view.terminal_sequence <= sequence:
                return replace(view, last_sequence=last_sequence)
            failed = isinstance(event, OperationFailed)
            return replace(
                view,
                status=TaskStatus.ERROR if failed else TaskStatus.SUCCESS,
                completed_at=event.occurred_at,
                code=event.code if isinstance(event, OperationFailed) else None,
                error=event.error if isinstance(event, OperationFailed) else None,
                response=event.response,
                terminal_sequence=sequence,
                last_sequence=last_sequence,
            )


def fold(events: list[tuple[int, OperationEvent]]) -> dict[str, OperationView]:
    """Fold (sequence, event) pairs into views keyed by operation id."""
    views: dict[str, OperationView] = {}
    for sequence, event in events:
        views[event.operation_id] = evolve(views.get(event.operation_id), event, sequence)
    return views
