"""The body of a callback: the operation's final state, as asyncResult shows it.

Shaped as Standard Webhooks recommends (``type``, ``timestamp``, ``data``); ``data`` has
asyncResult's fields under asyncResult's names (``data`` the stringified JSON of the result),
plus the operation name and action that ran, so a client reads a callback as it reads a poll.
"""

from typing import Any

import msgspec

from contracts.events import OperationCompleted, TerminalEvent
from contracts.view import OperationView
from services.common.results import data_url
from services.common.timestamps import iso_timestamp

_encoder = msgspec.json.Encoder()


def event_type(ended: TerminalEvent) -> str:
    """The callback's ``type``: how the operation ended."""
    return "operation.completed" if isinstance(ended, OperationCompleted) else "operation.failed"


def callback_body(view: OperationView, ended: TerminalEvent) -> bytes:
    """The JSON POSTed for the operation ``view`` shows, which ``ended`` ended."""
    state: dict[str, Any] = {
        "operationId": view.operation_id,
        "status": view.status,
        "operationName": view.operation_name,
        "action": view.action,
        "error": view.error,
        "errorCode": view.code,
        # A large result is kept apart (services/common/results.py): ``data`` is then "null",
        # and the receiver downloads it from ``dataUrl`` with the owner's credentials.
        "data": _encoder.encode(view.response).decode(),
        "dataUrl": data_url(view),
        "createdAt": iso_timestamp(view.created_at),
        "startedAt": iso_timestamp(view.started_at),
        "completedAt": iso_timestamp(view.completed_at),
        "attempts": view.attempts,
    }
    return _encoder.encode(
        {"type": event_type(ended), "timestamp": iso_timestamp(ended.occurred_at), "data": state}
    )
