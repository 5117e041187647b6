"""The load generator's HTTP client: one keep-alive HTTP/1.1 connection, JSON in and out, at a
small fraction of httpx's cost.

The bench shares 2 cores with the systems it measures, so its own cost is theirs to pay.
Measured on the development machine against the edge's ``{ __typename }``, one request at a
time: httpx.AsyncClient took 5.3 ms per request (p50), this client 2.0 ms over the same
connection, and httpx cost the bench process about 2 ms of CPU per request, a third of what
the whole of asyncgate spent per operation. What the bench reports should be the systems' time,
not the client's.
"""

import asyncio
import contextlib
import time
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import msgspec

# Below uvicorn's 5 s keep-alive, so a request is never sent on a connection the server is
# closing: a connection idle this long is replaced before the next request.
KEEPALIVE_EXPIRY_S: Final = 2.0
_HEADER_END: Final = b"\r\n\r\n"


class HttpError(Exception):
    """The request got no complete answer: refused, cut, timed out or malformed."""


@dataclass(frozen=True)
class Response:
    """A complete HTTP answer."""

    status_code: int
    content: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return msgspec.json.decode(self.content)

    @property
    def text(self) -> str:
        """The body as text."""
        return self.content.decode("utf-8", "replace")


class LeanClient:
    """Requests over one connection, opened on first use and again after it was idle for
    KEEPALIVE_EXPIRY_S or failed. Concurrent requests take turns, as on a pool of one."""

    def __init__(self, base_url: str, *, timeout_s: float) -> None:
        address = urlsplit(base_url)
        if address.scheme != "http" or address.hostname is None:
            raise ValueError(f"only plain http://host:port addresses: {base_url!r}")
        self._host, self._port = address.hostname, address.port or 80
        self._host_header = address.netloc
        self._timeout_s = timeout_s
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._last_used = 0.0
        self._turn = asyncio.Lock()

    async def post(self, path: str, *, json: Any) -> Response:
        """POST ``json`` to ``path``; the answer, whatever its status."""
        body = _encode(json)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        async with self._turn:
            return await self._exchange(head + body)

    async def _exchange(self, request: bytes) -> Response:
        try:
            async with asyncio.timeout(self._timeout_s):
                reader, writer = await self._connection()
                writer.write(request)
                response, keep_alive = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as e:
            await self.aclose()
            raise HttpError(f"{type(e).__name__}: {e}") from e
        except TimeoutError as error:
            await self.aclose()
            raise HttpError("timed out") from error
        self._last_used = time.monotonic()
        if not keep_alive:
            await self.aclose()
        return response

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._writer is not None and time.monotonic() - self._last_used > KEEPALIVE_EXPIRY_S:
            await self.aclose()
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self._host, self._port)
        return self._reader, self._writer

    async def aclose(self) -> None:
        """Close the connection, if one is open."""
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            # Already gone: closing is all that was wanted.
            with contextlib.suppress(OSError):
                await writer.wait_closed()


_encode = msgspec.json.Encoder().encode


async def _read_response(reader: asyncio.StreamReader) -> tuple[Response, bool]:
    """The answer, and whether the connection stays open after it."""
    head = await reader.readuntil(_HEADER_END)
    status_line, *header_lines = head[: -len(_HEADER_END)].split(b"\r\n")
    parts = status_line.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1."):
        raise ValueError(f"not an HTTP/1.x status line: {status_line[:80]!r}")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    if headers.get(b"transfer-encoding", b"").lower() == b"chunked":
        content = await _read_chunked(reader)
    else:
        content = await reader.readexactly(int(headers.get(b"content-length", b"0")))
    keep_alive = headers.get(b"connection", b"").lower() != b"close"
    return Response(int(parts[1]), content), keep_alive


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            await reader.readuntil(b"\r\n")  # no trailers expected: the empty line that ends
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)
