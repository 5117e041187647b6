"""How ids and times look on the wire."""

import uuid
from datetime import UTC, datetime

from contracts.errors import ErrorCode
from services.edge.errors import coded_error


def iso_timestamp(moment: datetime | None) -> str | None:
    """ISO-8601 UTC to the second, like ``2022-09-23T12:34:07Z`` (Business NXT's format)."""
    if moment is None:
        return None
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # Half of strftime's cost (a page of a hundred operations formats 300 of these): the first
    # 19 characters of the offset form are the date and time, to the second.
    return moment.isoformat(timespec="seconds")[:19] + "Z"


def operation_id_argument(value: str) -> str:
    """An operation id as a client sent it, checked: asyncgate issues version-4 UUIDs."""
    try:
        parsed = uuid.UUID(value)
    except ValueError:
        parsed = None
    # Only the canonical form asyncgate hands out: a lower-case, hyphenated version-4 UUID.
    if parsed is None or parsed.version != 4 or str(parsed) != value:
        raise coded_error(f"'{value}' is not an operation id", ErrorCode.BAD_USER_INPUT)
    return value
