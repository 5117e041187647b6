"""The headers an upstream call carries (pure): the gateway's own, from configuration, and who
the caller is, the trusted subsystem pattern: the upstream trusts asyncgate (its configured
credentials) and reads the caller's identity from headers only asyncgate sets.

Client headers are never passed on, so a client cannot set ``X-Hasura-Role`` or
``X-Asyncgate-User`` itself; its ``Authorization`` only when the operator opts in.
"""

import json
import string
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote

from services.common.settings import ConfigurationError

TENANT_HEADER: Final = "X-Asyncgate-Tenant"
USER_HEADER: Final = "X-Asyncgate-User"
AUTHORIZATION: Final = "Authorization"
HASURA_PREFIX: Final = "x-hasura-"
_PRINTABLE: Final = frozenset(string.printable) - frozenset("\r\n\t\x0b\x0c")
_TOKEN_CHARS: Final = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


def parse_headers(text: str) -> dict[str, str]:
    """``ASYNCGATE_UPSTREAM_HEADERS``: a JSON object of header names to string values.

    Anything else raises ConfigurationError, whose message never quotes a value (they are
    often secrets).
    """
    if not text.strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        raise ConfigurationError("ASYNCGATE_UPSTREAM_HEADERS is not JSON") from None
    if not isinstance(value, dict):
        raise ConfigurationError("ASYNCGATE_UPSTREAM_HEADERS must be a JSON object")
    for name, header in value.items():
        if not name or not set(name) <= _TOKEN_CHARS:
            raise ConfigurationError(f"ASYNCGATE_UPSTREAM_HEADERS: {name!r} is no header name")
        if not isinstance(header, str) or not set(header) <= _PRINTABLE:
            raise ConfigurationError(
                f"ASYNCGATE_UPSTREAM_HEADERS: the value of {name!r} must be a string of "
                "printable ASCII"
            )
    return value


def header_value(value: str) -> str:
    """``value`` as it may travel in a header: as it is if printable ASCII, percent-encoded
    (UTF-8) otherwise, so no id can break a header or add one."""
    return value if set(value) <= _PRINTABLE else quote(value, safe="")


def _header_name(variable: str) -> str:
    # x-hasura-user-id -> X-Hasura-User-Id, as Hasura documents its headers.
    return "-".join(part.capitalize() for part in variable.split("-"))


def upstream_headers(
    configured: Mapping[str, str],
    *,
    tenant_id: str,
    user_id: str,
    session: Mapping[str, str],
    authorization: str | None = None,
) -> dict[str, str]:
    """Every header of one upstream call.

    The configured headers first; the identity over them (an identity header is asyncgate's
    to set, whatever the configuration says); the client's Authorization, when forwarded,
    over a configured one.
    """
    headers = {name.lower(): (name, value) for name, value in configured.items()}

    def put(name: str, value: str) -> None:
        headers[name.lower()] = (name, header_value(value))

    for variable, value in session.items():
        if variable.lower().startswith(HASURA_PREFIX):
            put(_header_name(variable.lower()), value)
    put(TENANT_HEADER, tenant_id)
    put(USER_HEADER, user_id)
    put("X-Hasura-User-Id", user_id)
    put("X-Hasura-Tenant-Id", tenant_id)
    if authorization is not None:
        put(AUTHORIZATION, authorization)
    return dict(headers.values())
