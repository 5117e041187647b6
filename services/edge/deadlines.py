"""The time limits a client may set on an operation it queues: how soon it must start
(``startWithin``) and how long it may run (``timeout``), both in whole seconds."""

from datetime import datetime, timedelta

from contracts.errors import ErrorCode
from services.edge.errors import coded_error


def positive_seconds(value: int | None, argument: str) -> int | None:
    """``value`` if it is unset or positive; anything else is refused with BAD_USER_INPUT."""
    if value is not None and value <= 0:
        raise coded_error(
            f"{argument} must be a positive number of seconds", ErrorCode.BAD_USER_INPUT
        )
    return value


def start_deadline(start_within: int | None, default_s: float, now: datetime) -> datetime | None:
    """When an operation queued ``now`` must have started: ``start_within`` seconds if the
    client set it, else the server's default (0: no deadline)."""
    seconds = default_s if start_within is None else start_within
    return now + timedelta(seconds=seconds) if seconds > 0 else None
