"""Which callback URLs asyncgate may call: pure checks, no I/O (README: "Callbacks").

A callback URL is checked twice. When it is submitted (asyncQuery's ``callbackUrl``, an action's
``callback_url`` at start-up): an http(s) URL without credentials or fragment whose host is on
``ASYNCGATE_CALLBACK_ALLOWED_HOSTS``. When it is called: every address its host resolves to then
must be a public one, unless the host is listed exactly (not through a ``*.`` wildcard), so a
name that resolves to a private address later (DNS rebinding) reaches nothing inside.

An allow-list entry is a host (any port), ``host:port``, ``[v6-address]:port``, or
``*.example.com`` (any name below example.com, not example.com itself).
"""

import ipaddress
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_CHARS: Final = 2048
DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_WILDCARD: Final = "*."


class CallbackUrlError(ValueError):
    """A callback URL asyncgate will not call; the message says why, for the caller."""


@dataclass(frozen=True)
class HostEntry:
    """One allow-list entry: a host name or address (lower case), any port when ``port`` is
    None; a ``wildcard`` entry matches the names below ``host``."""

    host: str
    port: int | None = None
    wildcard: bool = False

    def matches(self, host: str, port: int) -> bool:
        """Whether ``host`` (lower case) on ``port`` is allowed by this entry."""
        if self.port is not None and self.port != port:
            return False
        if self.wildcard:
            return host.endswith("." + self.host)
        return host == self.host


def _normal_host(host: str) -> str:
    return host.strip().lower().rstrip(".")


def _entry(text: str) -> HostEntry:
    """Parse one allow-list entry; ValueError says what is wrong with it."""
    host, port = text, None
    if text.startswith("["):
        address, _, rest = text[1:].partition("]")
        host = address
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{text!r}: expected [address]:port")
            port = _port(rest[1:], text)
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
        port = _port(port_text, text)
    wildcard = host.startswith(_WILDCARD)
    host = _normal_host(host.removeprefix(_WILDCARD))
    if not host or "*" in host or "/" in host or (":" in host and host_address(host) is None):
        raise ValueError(f"{text!r} is not a host, host:port or *.domain")
    if wildcard and host_address(host) is not None:
        raise ValueError(f"{text!r}: a wildcard needs a domain name, not an address")
    return HostEntry(host=host, port=port, wildcard=wildcard)


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535")
    return int(text)


def host_address(host: str) -> IPAddress | None:
    """``host`` as an IP address, if it is one (no name to resolve)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@dataclass(frozen=True)
class AllowedHosts:
    """``ASYNCGATE_CALLBACK_ALLOWED_HOSTS``, parsed. Empty: no callback URL is allowed."""

    entries: tuple[HostEntry, ...] = ()

    @classmethod
    def parse(cls, text: str) -> "AllowedHosts":
        """Comma-separated entries; ValueError names a bad one."""
        return cls(tuple(_entry(item.strip()) for item in text.split(",") if item.strip()))

    def allows(self, host: str, port: int) -> bool:
        """Whether some entry lets ``host`` on ``port`` be called."""
        return any(entry.matches(host, port) for entry in self.entries)

    def lists_exactly(self, host: str, port: int) -> bool:
        """Whether an entry names ``host`` itself (no wildcard): then it may be private."""
        return any(not entry.wildcard and entry.matches(host, port) for entry in self.entries)


def is_public(address: IPAddress) -> bool:
    """Whether ``address`` is on the public internet: not loopback, link-local, private, shared
    (100.64/10), multicast, reserved or unspecified, in IPv4 or IPv6 (mapped addresses too)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


@dataclass(frozen=True)
class CallbackTarget:
    """A callback URL that passed the submission check, taken apart for calling it."""

    url: str
    scheme: str
    host: str
    port: int
    # Listed exactly (not through a wildcard): its addresses may be private.
    trusted: bool

    def address_allowed(self, address: IPAddress) -> bool:
        """Whether the host may be reached at ``address`` (checked at each call)."""
        return self.trusted or is_public(address)


def _split(url: str) -> SplitResult:
    if len(url) > MAX_URL_CHARS:
        raise CallbackUrlError(f"the callback URL is longer than {MAX_URL_CHARS} characters")
    if not url.isprintable() or any(character.isspace() for character in url):
        raise CallbackUrlError("the callback URL must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 (raises on a port that is not a number)
    except ValueError:
        raise CallbackUrlError("the callback URL is not a valid URL") from None
    return parts


def check_callback_url(url: str, allowed: AllowedHosts) -> CallbackTarget:
    """``url`` taken apart if asyncgate may call it; CallbackUrlError says why not."""
    parts = _split(url)
    scheme = parts.scheme.lower()
    if scheme not in DEFAULT_PORTS:
        raise CallbackUrlError("the callback URL must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise CallbackUrlError("the callback URL must not carry credentials")
    if parts.fragment:
        raise CallbackUrlError("the callback URL must not have a fragment")
    host = _normal_host(parts.hostname or "")
    if not host:
        raise CallbackUrlError("the callback URL has no host")
    port = parts.port or DEFAULT_PORTS[scheme]
    if not allowed.allows(host, port):
        raise CallbackUrlError(
            f"callbacks to {host}:{port} are not allowed (ASYNCGATE_CALLBACK_ALLOWED_HOSTS)"
        )
    target = CallbackTarget(
        url=url, scheme=scheme, host=host, port=port, trusted=allowed.lists_exactly(host, port)
    )
    address = host_address(host)
    if address is not None and not target.address_allowed(address):
        raise CallbackUrlError(f"callbacks to the non-public address {host} are not allowed")
    return target
