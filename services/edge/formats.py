"""How operation ids look on the wire, and how a client's is checked."""

import uuid

from contracts.errors import ErrorCode
from services.edge.errors import coded_error


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
