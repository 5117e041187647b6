"""What an operator reads about operations: their views, filtered and paged, and one
operation's events as a timeline."""

from datetime import UTC, datetime

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from contracts.events import (
    CallbackAbandoned,
    CallbackAttempted,
    CallbackDelivered,
    OperationCompleted,
    OperationEvent,
    OperationFailed,
    OperationStarted,
    event_type,
)
from contracts.names import (
    EVENT_STREAMS,
    UnsafeTokenError,
    encode_id,
    operation_subjects,
    parse_event_subject,
    require_id_token,
)
from contracts.view import OperationView, TaskStatus, decode_view
from services.common.poison import Unusable, admit
from services.common.stream_reads import read_stream
from services.common.views import read_bucket
from services.ops.connection import EXIT_FOUND, OpsError


class OperationFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which operations ``ops list`` shows, and which page of them."""

    tenant: str | None = None
    user: str | None = None
    status: TaskStatus | None = None
    since: datetime | None = None
    limit: int = 50
    after: str | None = None


def _token(value: str | None, what: str) -> str:
    if value is None:
        return "*"
    try:
        return encode_id(value, what)
    except UnsafeTokenError as error:
        raise OpsError(str(error)) from None


def _newest_first(view: OperationView) -> tuple[datetime, str]:
    return (view.created_at or datetime.min.replace(tzinfo=UTC), view.operation_id)


async def list_operations(js: JetStreamContext, wanted: OperationFilter) -> list[OperationView]:
    """The views matching ``wanted``, newest first; a page of ``limit`` after ``after``."""
    key_filter = f"{_token(wanted.tenant, 'tenant')}.{_token(wanted.user, 'user')}.*"
    stored = await read_bucket(js, key_filter, within_s=None)
    views = [decode_view(data) for data, _ in stored.values() if data is not None]
    if wanted.status is not None:
        views = [view for view in views if view.status == wanted.status]
    if wanted.since is not None:
        since = wanted.since
        views = [view for view in views if view.created_at is not None and view.created_at >= since]
    views.sort(key=_newest_first, reverse=True)
    if wanted.after is not None:
        ids = [view.operation_id for view in views]
        if wanted.after not in ids:
            raise OpsError(f"--after {wanted.after}: no such operation among those listed")
        views = views[ids.index(wanted.after) + 1 :]
    return views[: wanted.limit]


class TimelineEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One message stored on an operation's subjects."""

    sequence: int
    stored_at: datetime
    type: str
    tenant: str | None = None
    operation_id: str | None = None
    occurred_at: datetime | None = None
    attempt: int | None = None
    worker: str | None = None
    code: str | None = None
    error: str | None = None


def _attempt_of(event: OperationEvent) -> int | None:
    """The attempt an event is about, if it is about one (an ending: the one it carries)."""
    match event:
        case OperationStarted() | CallbackAttempted() | CallbackDelivered() | CallbackAbandoned():
            return event.attempt
        case OperationCompleted() | OperationFailed() if event.start is not None:
            return event.start.attempt
    return None


def _worker_of(event: OperationEvent) -> str | None:
    """The executor that ran the attempt an event starts (or ends, carrying its start)."""
    match event:
        case OperationStarted():
            return event.worker
        case OperationCompleted() | OperationFailed() if event.start is not None:
            return event.start.worker
    return None


def timeline_entry(msg: Msg) -> TimelineEntry:
    """The timeline's row for one stored message (an unusable one says why)."""
    metadata = msg.metadata
    sequence, stored_at = metadata.sequence.stream, metadata.timestamp
    tenant, operation_id, _ = parse_event_subject(msg.subject) or (None, None, None)
    event = admit(msg.subject, msg.data)
    if isinstance(event, Unusable):
        return TimelineEntry(
            sequence=sequence,
            stored_at=stored_at,
            type="unusable",
            tenant=tenant,
            operation_id=operation_id,
            error=event.reason,
        )
    return TimelineEntry(
        sequence=sequence,
        stored_at=stored_at,
        type=event_type(event),
        tenant=event.tenant,
        operation_id=event.operation_id,
        occurred_at=event.occurred_at,
        attempt=_attempt_of(event),
        worker=_worker_of(event),
        code=event.code if isinstance(event, OperationFailed) else None,
        # A callback attempt's error says why the receiver did not take it.
        error=event.error
        if isinstance(event, OperationFailed | CallbackAttempted | CallbackAbandoned)
        else None,
    )


class OperationDetail(msgspec.Struct, frozen=True, kw_only=True):
    """``ops show``: the operation's view (None if the bucket has none) and its events."""

    operation_id: str
    view: OperationView | None
    timeline: list[TimelineEntry]


async def show_operation(js: JetStreamContext, operation_id: str) -> OperationDetail:
    """The view and every event of one operation, whatever its tenant and user."""
    try:
        require_id_token(operation_id, "operation id")
    except UnsafeTokenError as error:
        raise OpsError(str(error)) from None
    stored = await read_bucket(js, f"*.*.{operation_id}", within_s=None)
    views = [decode_view(data) for data, _ in stored.values() if data is not None]
    timeline: list[TimelineEntry] = []
    for stream in EVENT_STREAMS:
        await read_stream(
            js,
            stream,
            operation_subjects("*", operation_id),
            lambda msg: timeline.append(timeline_entry(msg)),
        )
    if not views and not timeline:
        raise OpsError(f"no operation {operation_id}: no view and no event", EXIT_FOUND)
    # Two streams, two sequence orders: the server's clock orders them (the request first).
    timeline.sort(key=lambda entry: (entry.stored_at, entry.type != "requested", entry.sequence))
    return OperationDetail(
        operation_id=operation_id, view=views[0] if views else None, timeline=timeline
    )
