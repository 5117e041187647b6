"""The functions a Kriti template may call: Kriti's basic functions and Hasura's
``getSessionVariable``. Each takes one JSON value (and the variables, for the session)."""

from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import quote

from services.actions.kriti.values import type_name

SESSION_VARIABLES: Final = "$session_variables"


class FunctionError(ValueError):
    """A function was given a value it cannot take."""


def _empty(value: Any) -> bool:
    if isinstance(value, bool):
        raise FunctionError("empty cannot tell whether a boolean is empty")
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip() == ""
    if isinstance(value, int | float):
        return value == 0
    return len(value) == 0


def _size(value: Any) -> int | float:
    if isinstance(value, bool):
        return int(value)
    if value is None:
        return 0
    if isinstance(value, int | float):
        return value
    return len(value)


def _inverse(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        if value == 0:
            raise FunctionError("inverse of 0")
        return 1 / value
    if isinstance(value, list | str):
        return value[::-1]
    return value


def _head(value: Any) -> Any:
    if not isinstance(value, list | str):
        raise FunctionError(f"head takes an array or a string, not {type_name(value)}")
    if not value:
        raise FunctionError(f"head of an empty {type_name(value)}")
    return value[0]


def _tail(value: Any) -> Any:
    if not isinstance(value, list | str):
        raise FunctionError(f"tail takes an array or a string, not {type_name(value)}")
    return value[1:]


def _text(name: str, change: Callable[[str], str]) -> Callable[[Any], Any]:
    def apply(value: Any) -> str:
        if not isinstance(value, str):
            raise FunctionError(f"{name} takes a string, not {type_name(value)}")
        return change(value)

    return apply


def _from_pairs(value: Any) -> dict[str, Any]:
    shape = "fromPairs takes an array of [key, value] pairs with string keys"
    if not isinstance(value, list):
        raise FunctionError(shape)
    pairs = {}
    for pair in value:
        if not (isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str)):
            raise FunctionError(shape)
        pairs[pair[0]] = pair[1]
    return pairs


def _to_pairs(value: Any) -> list[list[Any]]:
    if not isinstance(value, dict):
        raise FunctionError(f"toPairs takes an object, not {type_name(value)}")
    return [[key, item] for key, item in value.items()]


def _remove_nulls(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise FunctionError(f"removeNulls takes an array, not {type_name(value)}")
    return [item for item in value if item is not None]


def _concat(value: Any) -> Any:
    """Arrays into one array, strings into one string, objects into one (later fields win)."""
    if not isinstance(value, list):
        raise FunctionError(f"concat takes an array, not {type_name(value)}")
    if all(isinstance(item, list) for item in value):
        return [element for item in value for element in item]
    if all(isinstance(item, str) for item in value):
        return "".join(value)
    if all(isinstance(item, dict) for item in value):
        merged: dict[str, Any] = {}
        for item in value:
            merged.update(item)
        return merged
    raise FunctionError("concat takes an array of arrays, of strings or of objects")


def _not(value: Any) -> bool:
    if not isinstance(value, bool):
        raise FunctionError(f"not takes a boolean, not {type_name(value)}")
    return not value


def _session_variable(value: Any, variables: Mapping[str, Any]) -> Any:
    if not isinstance(value, str):
        raise FunctionError(f"getSessionVariable takes a string, not {type_name(value)}")
    session = variables.get(SESSION_VARIABLES)
    wanted = value.lower()
    for name, found in (session or {}).items():
        if name.lower() == wanted:
            return found
    raise FunctionError(f"session variable {value} is not set")


def _escape_uri(value: Any) -> str:
    if not isinstance(value, str):
        raise FunctionError(f"escapeUri takes a string, not {type_name(value)}")
    # Everything but RFC 3986's unreserved characters is escaped, '/' included.
    return quote(value, safe="-._~")


PURE: Final[Mapping[str, Callable[[Any], Any]]] = {
    "empty": _empty,
    "size": _size,
    "inverse": _inverse,
    "head": _head,
    "tail": _tail,
    "toCaseFold": _text("toCaseFold", str.casefold),
    "toLower": _text("toLower", str.lower),
    "toUpper": _text("toUpper", str.upper),
    "toTitle": _text("toTitle", str.title),
    "escapeUri": _escape_uri,
    "fromPairs": _from_pairs,
    "toPairs": _to_pairs,
    "removeNulls": _remove_nulls,
    "concat": _concat,
    "not": _not,
}
"""Functions of the value alone."""

WITH_VARIABLES: Final[Mapping[str, Callable[[Any, Mapping[str, Any]], Any]]] = {
    "getSessionVariable": _session_variable,
}
"""Functions that also read the template's variables."""

FUNCTION_NAMES: Final = frozenset({*PURE, *WITH_VARIABLES})
