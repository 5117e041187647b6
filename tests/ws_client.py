"""A minimal GraphQL-over-WebSocket client for the tests, speaking both subprotocols for real.

graphql-transport-ws: connection_init/connection_ack, subscribe, next, error, complete.
graphql-ws (legacy Apollo): connection_init/connection_ack, start, data, error, complete.
"""

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import websockets
from websockets.asyncio.client import ClientConnection

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


class GraphQLWebSocket:
    """One connection that can run several subscriptions."""

    def __init__(self, connection: ClientConnection, protocol: str) -> None:
        self._connection = connection
        self._protocol = protocol
        self._next_id = 0

    async def _receive(self) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = json.loads(await self._connection.recv())
            if message["type"] in ("ka", "ping"):
                if message["type"] == "ping":
                    await self._connection.send(json.dumps({"type": "pong"}))
                continue
            return message

    async def start(self, query: str, variables: dict[str, Any] | None = None) -> str:
        """Start a subscription; return its id."""
        self._next_id += 1
        subscription_id = str(self._next_id)
        kind = "subscribe" if self._protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables or {}}
        await self._connection.send(
            json.dumps({"id": subscription_id, "type": kind, "payload": payload})
        )
        return subscription_id

    async def messages(self) -> AsyncIterator[dict[str, Any]]:
        """Every message after the handshake, normalised to next/error/complete."""
        while True:
            message = await self._receive()
            kind = {"data": "next"}.get(message["type"], message["type"])
            yield {**message, "type": kind}

    async def collect(self, subscription_ids: set[str]) -> dict[str, list[dict[str, Any]]]:
        """Every payload of the given subscriptions until each has completed."""
        results: dict[str, list[dict[str, Any]]] = {sid: [] for sid in subscription_ids}
        open_ids = set(subscription_ids)
        async for message in self.messages():
            sid = message.get("id")
            if sid not in results:
                continue
            if message["type"] == "complete":
                open_ids.discard(sid)
                if not open_ids:
                    return results
            else:
                results[sid].append(message)
        return results


@contextlib.asynccontextmanager
async def graphql_websocket(
    url: str, protocol: str = TRANSPORT_WS, init_payload: dict[str, Any] | None = None
) -> AsyncIterator[GraphQLWebSocket]:
    """Open a connection and complete the connection_init handshake."""
    async with websockets.connect(url, subprotocols=[protocol]) as connection:  # type: ignore[list-item]  # websockets types subprotocols as its own NewType
        await connection.send(
            json.dumps({"type": "connection_init", "payload": init_payload or {}})
        )
        client = GraphQLWebSocket(connection, protocol)
        ack = await client._receive()
        if ack["type"] != "connection_ack":
            raise AssertionError(f"expected connection_ack, got {ack}")
        yield client
