"""Cancelling an operation (asyncCancel): store its owner's cancel request, and end it at once
if nothing has started it.

The cancel request (OperationCancelRequested) is a fact on the operation's own subjects. Every
start is guarded on a sequence its executor read, so once the request is stored no executor can
start the operation any more: a later delivery reads it and ends the operation CANCELLED
(services/executor/decide.py). An attempt started before it is cancelled in its executor, which
hears the request as it is stored (services/executor/cancellation.py). An operation nothing
started is ended here, guarded on the cancel request's sequence, so that it reads CANCELLED at
once even while no executor runs. (An attempt that ends within moments stores no start of its
own, so this ending and that attempt's race; both are guarded, and the first one stored is the
operation's.)
"""

import contextlib
import functools
from enum import Enum

import strawberry

from contracts.errors import ErrorCode
from contracts.events import OperationCancelRequested, cancelled, correlation_of
from contracts.names import terminal_msg_id
from contracts.view import OperationView
from services.common.event_log import AppendConflictError
from services.common.retry import riding_through
from services.edge.context import EdgeContext
from services.edge.submit import RIDE_THROUGH_S as RIDE


@strawberry.enum(description="What asyncCancel came to.")
class CancelOutcome(Enum):
    CANCELLED = strawberry.enum_value(
        ErrorCode.CANCELLED.value,
        description="It has ended as cancelled (now, or by an earlier asyncCancel).",
    )
    CANCELLING = strawberry.enum_value(
        "CANCELLING",
        description="It is running: its executor is cancelling it, and it ends as cancelled.",
    )
    ALREADY_FINAL = strawberry.enum_value(
        "ALREADY_FINAL", description="It had ended before; it is left as it was."
    )


def _final_outcome(view: OperationView) -> CancelOutcome:
    return (
        CancelOutcome.CANCELLED if view.code == ErrorCode.CANCELLED else CancelOutcome.ALREADY_FINAL
    )


async def cancel_operation(
    context: EdgeContext, operation_id: str
) -> tuple[CancelOutcome, OperationView] | None:
    """Cancel the caller's operation; what came of it and the operation's state after it.

    None if the caller has no operation by that id (another principal's is not there either).
    Cancelling twice stores nothing new.
    """
    view = await context.find_operation(operation_id)
    if view is None:
        return None
    if view.status.is_terminal:
        return _final_outcome(view), view
    events, tenant = context.events, context.principal.tenant
    facts = await riding_through(
        lambda: events.facts(tenant, operation_id), what=f"reading {operation_id}", budget_s=RIDE
    )
    view = facts.view(view) or view
    if facts.requested is None:
        return None  # only a view is left, and it is about to expire with nothing to cancel
    if view.status.is_terminal:
        return _final_outcome(view), view
    request = facts.requested[1]
    if facts.cancel_requested is None:
        asked = OperationCancelRequested(**correlation_of(request))
        asked_at = await riding_through(
            functools.partial(events.append, asked, msg_id=f"{operation_id}.cancel_requested"),
            what=f"cancelling {operation_id}",
            budget_s=RIDE,
        )
    else:
        asked_at = facts.cancel_requested[0]
    if facts.started is None:
        # Refused: an executor got there first, and it ends the operation as cancelled.
        with contextlib.suppress(AppendConflictError):
            await riding_through(
                functools.partial(
                    events.append,
                    cancelled(request),
                    msg_id=terminal_msg_id(operation_id),
                    after=asked_at,
                ),
                what=f"ending {operation_id}",
                budget_s=RIDE,
            )
    after = await riding_through(
        lambda: events.facts(tenant, operation_id), what=f"reading {operation_id}", budget_s=RIDE
    )
    view = after.view(view) or view
    if view.status.is_terminal:
        return _final_outcome(view), view
    return CancelOutcome.CANCELLING, view
