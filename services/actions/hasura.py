"""What Hasura answers when an action's handler fails, word for word.

Texts, codes and shapes follow Hasura graphql-engine's latest ``callWebhook`` and
``validateResponse`` (server/src-lib/Hasura/GraphQL/Execute/Action.hs) and what its action tests
expect (server/tests-py/queries/actions/sync/*.yaml). asyncgate's own explanation of a failure
goes under ``extensions.internal``, never into ``message``, and never holds the request, its
headers or the handler's body (Hasura puts those there for admins).
"""

from collections.abc import Mapping
from typing import Any, Final

# Hasura's code for every failure it reports itself, and its code when a 4xx body cannot be read.
UNEXPECTED: Final = "unexpected"
PARSE_FAILED: Final = "parse-failed"
# Hasura reports its own errors at the JSON path of the whole answer.
ROOT_PATH: Final = "$"

HTTP_EXCEPTION: Final = "http exception when calling webhook"
NOT_JSON: Final = "not a valid json response from webhook"
INTERNAL_ERROR: Final = "internal error"

# How aeson names the type Hasura decodes a 4xx body into, in its parse errors.
_ERROR_RESPONSE_TYPE: Final = (
    "Hasura.GraphQL.Execute.Action.Types.ActionWebhookErrorResponse(ActionWebhookErrorResponse)"
)


def hasura_error(
    message: str,
    *,
    code: str = UNEXPECTED,
    path: str = ROOT_PATH,
    internal: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A GraphQL error as Hasura encodes its own (``extensions``: ``path`` and ``code``), with
    asyncgate's explanation as ``extensions.internal`` when there is one."""
    extensions: dict[str, Any] = {"path": path, "code": code}
    if internal:
        extensions["internal"] = dict(internal)
    return {"message": message, "extensions": extensions}


def json_kind(value: Any) -> str:
    """The JSON type of a decoded value, as aeson names it in its errors."""
    if value is None:
        return "Null"
    if isinstance(value, bool):
        return "Boolean"
    if isinstance(value, int | float):
        return "Number"
    if isinstance(value, str):
        return "String"
    return "Array" if isinstance(value, list) else "Object"


def refusal_error(body: Any) -> dict[str, Any]:
    """The error for a handler's 4xx JSON answer, decoded as Hasura decodes
    ``{"message", "code"?, "extensions"?}``.

    The handler's ``extensions`` object wins as a whole, passed on unchanged (its ``code``, if
    any, is the code; none is added); without one, the top-level ``code`` or ``unexpected``, at
    path ``$``. A body of another shape is Hasura's parse failure.
    """
    unreadable = _unreadable_refusal(body)
    if unreadable is not None:
        path, message = unreadable
        return hasura_error(message, code=PARSE_FAILED, path=path)
    extensions = body.get("extensions")
    if isinstance(extensions, dict):
        return {"message": body["message"], "extensions": extensions}
    code = body.get("code")
    return hasura_error(body["message"], code=UNEXPECTED if code is None else code)


def _unreadable_refusal(body: Any) -> tuple[str, str] | None:
    """Where and why (aeson's wording) ``body`` is not Hasura's error response, or None."""
    if not isinstance(body, dict):
        return ROOT_PATH, (
            f"parsing {_ERROR_RESPONSE_TYPE} failed, "
            f"expected Object, but encountered {json_kind(body)}"
        )
    if "message" not in body:
        return ROOT_PATH, f'parsing {_ERROR_RESPONSE_TYPE} failed, key "message" not found'
    for key, optional in (("message", False), ("code", True)):
        value = body.get(key)
        if not isinstance(value, str) and not (optional and value is None):
            return f"{ROOT_PATH}.{key}", (
                f"parsing Text failed, expected String, but encountered {json_kind(value)}"
            )
    return None


def async_errors(error: Mapping[str, Any]) -> dict[str, Any]:
    """What Hasura's async action query answers as ``errors`` for a failure reported
    synchronously as ``error``: its stored error object ``{"error", "path", "code"}`` (plus
    ``internal``), not a list of GraphQL errors.

    Hasura stores no handler ``extensions`` there, and its code is the handler's top-level one
    or ``unexpected``; for an error whose extensions are the handler's own (no ``path``), the
    top-level code is no longer known, so ``unexpected`` stands for it.
    """
    extensions = error.get("extensions") or {}
    own = isinstance(extensions, Mapping) and "path" in extensions
    stored: dict[str, Any] = {
        "error": error.get("message"),
        "path": extensions.get("path", ROOT_PATH) if own else ROOT_PATH,
        "code": extensions.get("code", UNEXPECTED) if own else UNEXPECTED,
    }
    if own and "internal" in extensions:
        stored["internal"] = extensions["internal"]
    return stored
