"""JSON values as Kriti sees them: type names for messages, equality, and text for strings."""

import json
from typing import Any


def type_name(value: Any) -> str:
    """Kriti's name for the JSON type of ``value``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def json_equal(left: Any, right: Any) -> bool:
    """JSON equality: ``1 == 1.0``, but ``true`` is not ``1`` as it is in Python."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(map(json_equal, left, right))
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(json_equal(left[k], right[k]) for k in left)
    numbers = isinstance(left, int | float) and isinstance(right, int | float)
    return (numbers or type(left) is type(right)) and bool(left == right)


def as_text(value: Any) -> str | None:
    """How ``value`` is written into a string: strings as they are, numbers and booleans as
    JSON; None for what cannot be written (null, arrays, objects)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    return None
