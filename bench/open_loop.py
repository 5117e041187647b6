"""Open-loop load: operations offered at a fixed rate whatever the answers, each followed to its
final state (asyncgate: a GraphQL subscription; the peer: its result backend's announcement)."""

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.http_client import LeanClient
from bench.load import (
    FINAL_STATUSES,
    FOLLOW_DOCUMENT,
    MAX_REPORTED_FAILURES,
    DoneFeed,
    async_submit,
    celery_submit,
)
from bench.probes import percentile
from tests.ws_client import GraphQLWebSocket, graphql_websocket


class SubscriptionPool:
    """GraphQL subscriptions (graphql-transport-ws) to operations' results over a few
    connections, each read by one task that hands every message to its subscription."""

    def __init__(self, ws_url: str, connections: int) -> None:
        self.ws_url, self.size = ws_url, connections
        self._sockets: list[GraphQLWebSocket] = []
        self._waiting: list[dict[str, asyncio.Future[float]]] = []
        self._first: list[dict[str, asyncio.Future[None]]] = []
        self._next = 0

    @contextlib.asynccontextmanager
    async def open(self) -> AsyncIterator["SubscriptionPool"]:
        """Open the connections for the block."""
        readers: list[asyncio.Task[None]] = []
        async with contextlib.AsyncExitStack() as stack:
            try:
                for index in range(self.size):
                    socket = await stack.enter_async_context(graphql_websocket(self.ws_url))
                    self._sockets.append(socket)
                    self._waiting.append({})
                    self._first.append({})
                    readers.append(asyncio.create_task(self._read(index)))
                yield self
            finally:
                for task in readers:
                    task.cancel()
                await asyncio.gather(*readers, return_exceptions=True)

    async def _read(self, index: int) -> None:
        waiting, first = self._waiting[index], self._first[index]
        with contextlib.suppress(Exception):  # the connection closing ends the reader
            async for message in self._sockets[index].messages():
                key = message.get("id")
                if not isinstance(key, str):
                    continue
                if key in first and not first[key].done():
                    first[key].set_result(None)
                payload = message.get("payload") or {}
                data = payload.get("data") if isinstance(payload, dict) else None
                view = (data or {}).get("asyncResult") if isinstance(data, dict) else None
                status = view.get("status") if isinstance(view, dict) else None
                final = status in FINAL_STATUSES or message["type"] in ("complete", "error")
                if not final:
                    continue
                first.pop(key, None)
                future = waiting.pop(key, None)
                if future is not None and not future.done():
                    future.set_result(time.perf_counter())

    async def follow(self, operation_id: str) -> tuple[asyncio.Future[None], asyncio.Future[float]]:
        """Subscribe to ``operation_id``: futures for its first message and for the moment its
        final state arrived."""
        index = self._next % self.size
        self._next += 1
        loop = asyncio.get_running_loop()
        first: asyncio.Future[None] = loop.create_future()
        final: asyncio.Future[float] = loop.create_future()
        socket = self._sockets[index]
        key = await socket.start(FOLLOW_DOCUMENT, {"id": operation_id})
        self._first[index][key], self._waiting[index][key] = first, final
        return first, final


@dataclass
class OpenLoopResult:
    """Submit → final state, for work offered at a fixed rate."""

    rate: float
    latencies_ms: list[float] = field(default_factory=list)
    submit_ms: list[float] = field(default_factory=list)
    max_lateness_ms: float = 0.0
    failures: list[str] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """Percentiles and counts."""
        return {
            "offered_per_s": self.rate,
            "count": len(self.latencies_ms),
            "failed": len(self.failures),
            "p50_ms": percentile(self.latencies_ms, 50),
            "p99_ms": percentile(self.latencies_ms, 99),
            "submit_p50_ms": percentile(self.submit_ms, 50),
            "generator_max_lateness_ms": self.max_lateness_ms,
            "first_failures": self.failures[:MAX_REPORTED_FAILURES],
        }


# One offered operation: send it with the client, then wait for its final state; returns the
# operation's id, when its submit was answered and when its final state was seen.
Offer = Callable[[LeanClient], Awaitable[tuple[str, float, float]]]


async def open_loop(
    clients: list[LeanClient], rate: float, count: int, offer: Offer, timeout_s: float
) -> OpenLoopResult:
    """``count`` operations started ``rate`` per second whatever the answers (clients used in
    turn); latency from sending each submit to seeing its final state."""
    result = OpenLoopResult(rate)
    start = time.perf_counter()

    async def one(index: int) -> None:
        began = time.perf_counter()
        result.max_lateness_ms = max(result.max_lateness_ms, (began - start - index / rate) * 1e3)
        try:
            async with asyncio.timeout(timeout_s):
                key, answered, final = await offer(clients[index % len(clients)])
        except Exception as error:
            result.failures.append(f"{type(error).__name__}: {error}")
            return
        result.ids.append(key)
        result.submit_ms.append((answered - began) * 1000)
        result.latencies_ms.append((final - began) * 1000)

    async with asyncio.TaskGroup() as group:
        for index in range(count):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            group.create_task(one(index))
    return result


class SubmitError(RuntimeError):
    """A submit was refused or failed."""


def asyncgate_offer(pool: SubscriptionPool, query: str) -> Offer:
    """Submit through asyncQuery, then follow the operation through a subscription."""
    submit = async_submit(query)

    async def offer(client: LeanClient) -> tuple[str, float, float]:
        made, problem = await submit(client)
        answered = time.perf_counter()
        if made is None:
            raise SubmitError(problem)
        _, final = await pool.follow(made)
        return made, answered, await final

    return offer


def celery_offer(feed: DoneFeed, query: str) -> Offer:
    """Submit to the peer's endpoint, then wait for the result backend to announce the result."""
    submit = celery_submit(query)

    async def offer(client: LeanClient) -> tuple[str, float, float]:
        made, problem = await submit(client)
        answered = time.perf_counter()
        if made is None:
            raise SubmitError(problem)
        return made, answered, await feed.when_done(made)

    return offer
