"""Refusing a request whose headers or body are over the size limits, before anything reads or
parses them."""

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.errors import ErrorCode
from services.edge.errors import error_body

# Closing a WebSocket handshake before accepting it: the client sees the handshake refused.
_POLICY_VIOLATION = 1008


class _BodyTooLargeError(Exception):
    pass


class RequestLimits:
    """ASGI middleware: headers over ``max_header_bytes`` get 431, a body over ``max_bytes``
    413, each with a coded GraphQL error (a WebSocket handshake with oversized headers is
    refused).

    A declared Content-Length over the limit is refused at once; a body without one (chunked)
    is counted as it arrives and refused as soon as it passes the limit.
    """

    def __init__(self, app: ASGIApp, *, max_bytes: int, max_header_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on, or refuse it for its size."""
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header_bytes = sum(len(name) + len(value) for name, value in scope["headers"])
        if header_bytes > self.max_header_bytes:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": _POLICY_VIOLATION})
                return
            message = f"the request headers are over the limit of {self.max_header_bytes} bytes"
            await self._refuse(send, 431, message, ErrorCode.HEADERS_TOO_LARGE)
            return
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            await self._refuse_body(send)
            return
        received = 0
        started = False

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLargeError
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, tracked_send)
        except _BodyTooLargeError:
            if not started:
                await self._refuse_body(send)

    async def _refuse_body(self, send: Send) -> None:
        message = f"the request body is over the limit of {self.max_bytes} bytes"
        await self._refuse(send, 413, message, ErrorCode.PAYLOAD_TOO_LARGE)

    async def _refuse(self, send: Send, status: int, message: str, code: str) -> None:
        body = json.dumps(error_body(message, code)).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
