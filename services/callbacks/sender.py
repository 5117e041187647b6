"""POSTing one callback: resolve the host, check every address, connect to a checked one.

The URL's host is resolved at every attempt and each address it resolves to must be allowed
(``CallbackTarget.address_allowed``); the request then goes to the first address itself, with
the host in ``Host`` and, for https, in the TLS server name (so the certificate is checked for
the host), so a second lookup by the HTTP client cannot land somewhere else. Redirects are not
followed, connections are not kept (a pooled connection to an address would be shared by every
name on it), and the answer's body is never read.
"""

import asyncio
import logging
import socket
from dataclasses import dataclass
from typing import Final

import httpx

from services.callbacks.schedule import Answer
from services.common.callback_urls import (
    DEFAULT_PORTS,
    CallbackTarget,
    IPAddress,
    host_address,
)

log = logging.getLogger(__name__)

USER_AGENT: Final = "asyncgate-callbacks"


def callback_client() -> httpx.AsyncClient:
    """The HTTP client for callbacks (one per process): no redirects, no kept connections."""
    return httpx.AsyncClient(
        follow_redirects=False,
        limits=httpx.Limits(max_keepalive_connections=0),
        headers={"user-agent": USER_AGENT},
    )


class AddressNotAllowedError(Exception):
    """The host resolves to an address callbacks may not reach."""


async def _addresses(target: CallbackTarget) -> list[IPAddress]:
    literal = host_address(target.host)
    if literal is not None:
        return [literal]
    found = await asyncio.get_running_loop().getaddrinfo(
        target.host, target.port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP
    )
    addresses: list[IPAddress] = []
    for *_, sockaddr in found:
        address = host_address(str(sockaddr[0]).split("%", 1)[0])
        if address is not None and address not in addresses:
            addresses.append(address)
    return addresses


async def checked_address(target: CallbackTarget) -> IPAddress:
    """The address to call ``target`` at; AddressNotAllowedError if any it resolves to may not
    be called (all are checked: which one a client would pick is not ours to guess)."""
    addresses = await _addresses(target)
    if not addresses:
        raise AddressNotAllowedError(f"{target.host} resolves to no address")
    for address in addresses:
        if not target.address_allowed(address):
            raise AddressNotAllowedError(
                f"{target.host} resolves to the non-public address {address}, which callbacks "
                "may not reach unless the host is listed exactly"
            )
    return addresses[0]


def _authority(host: str, port: int, scheme: str) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if DEFAULT_PORTS[scheme] == port else f"{shown}:{port}"


def pinned_url(target: CallbackTarget, address: IPAddress) -> httpx.URL:
    """``target``'s URL with its host replaced by ``address``."""
    return httpx.URL(target.url).copy_with(host=str(address), port=target.port)


@dataclass(frozen=True)
class Sender:
    """Sends callbacks over one HTTP client, each attempt within ``timeout_s``."""

    http: httpx.AsyncClient
    timeout_s: float

    async def post(self, target: CallbackTarget, body: bytes, headers: dict[str, str]) -> Answer:
        """POST ``body`` to ``target``; how it went. Never raises (but for cancellation)."""
        try:
            async with asyncio.timeout(self.timeout_s):
                address = await checked_address(target)
                return await self._post(target, address, body, headers)
        except AddressNotAllowedError as error:
            return Answer(error=str(error), refused=True)
        except (TimeoutError, httpx.TimeoutException):
            return Answer(error=f"the receiver did not answer within {self.timeout_s:g} s")
        except OSError as error:  # the name did not resolve
            return Answer(error=f"{target.host} could not be resolved ({error.strerror or error})")
        except httpx.TransportError as error:
            return Answer(error=f"the receiver could not be reached ({type(error).__name__})")

    async def _post(
        self, target: CallbackTarget, address: IPAddress, body: bytes, headers: dict[str, str]
    ) -> Answer:
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = self.http.build_request(
            "POST",
            pinned_url(target, address),
            content=body,
            headers={
                **headers,
                "host": _authority(target.host, target.port, target.scheme),
                "content-type": "application/json",
            },
            extensions=extensions,
            timeout=self.timeout_s,
        )
        response = await self.http.send(request, stream=True)
        await response.aclose()  # the body is the receiver's business, not ours
        return Answer(status=response.status_code)
