"""Load generators: closed-loop HTTP clients, an open-loop schedule, and the ways a client learns
that work is done (asyncgate's subscriptions; the Celery peer's result backend)."""

import asyncio
import contextlib
import json
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from bench.probes import percentile
from tests.ws_client import GraphQLWebSocket, graphql_websocket

# The seed's ledger query (../shared/seeds, tests/seed_requests.py) without the item fields it
# lists: the issue measures it this way, and the inner document is what both systems run.
LEDGER_QUERY: Final = "{ useCompany(no: 123456) { generalLedgerAccount(first: 5) { totalCount } } }"
SLOW_REPORT_QUERY: Final = "{ slowReport(seconds: 0.2) }"
SUBMIT_DOCUMENT: Final = (
    "mutation Submit($query: String!) { asyncQuery(query: $query) { operationId status } }"
)
FOLLOW_DOCUMENT: Final = (
    "subscription Follow($id: String!) { asyncResult(id: $id) { operationId status } }"
)
LIST_DOCUMENT: Final = "{ asyncRequests(first: 100) { operationId status } }"
FINAL_STATUSES: Final = frozenset({"SUCCESS", "ERROR", "CANCELLED"})

HTTP_TIMEOUT_S: Final = 30.0
# Below uvicorn's 5 s keep-alive, so a client never reuses a connection the server is closing.
KEEPALIVE_EXPIRY_S: Final = 2.0
# strawberry's default max_subscriptions_per_connection.
SUBSCRIPTIONS_PER_CONNECTION: Final = 100
MAX_REPORTED_FAILURES: Final = 5
POLL_S: Final = 0.01


@dataclass
class LoadResult:
    """What one batch of requests took: per request its id (when it made one), when it was sent
    and answered, and the problems."""

    started: float = 0.0
    finished: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        """Wall time from the first request's start to the last one's end."""
        return self.finished - self.started

    def summary(self) -> dict[str, Any]:
        """Counts, rate and latency percentiles."""
        count = len(self.latencies_ms)
        return {
            "count": count,
            "failed": len(self.failures),
            "seconds": self.seconds,
            "per_s": count / self.seconds if self.seconds > 0 else 0.0,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p99_ms": percentile(self.latencies_ms, 99),
            "first_failures": self.failures[:MAX_REPORTED_FAILURES],
        }


# A request: given a client, send one and return (the id it made or None, a problem or None).
Request = Callable[[httpx.AsyncClient], Awaitable[tuple[str | None, str | None]]]


@contextlib.asynccontextmanager
async def http_clients(base_url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``count`` HTTP clients of one keep-alive connection each, like independent callers."""
    limits = httpx.Limits(
        max_connections=1, max_keepalive_connections=1, keepalive_expiry=KEEPALIVE_EXPIRY_S
    )
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                # Never through a proxy: all traffic stays on 127.0.0.1.
                httpx.AsyncClient(
                    base_url=base_url, limits=limits, timeout=HTTP_TIMEOUT_S, trust_env=False
                )
            )
            for _ in range(count)
        ]
        yield clients


async def closed_loop(clients: list[httpx.AsyncClient], count: int, request: Request) -> LoadResult:
    """``count`` requests, each client sending its next as soon as its last is answered."""
    result = LoadResult()
    remaining = iter(range(count))  # shared: every index is taken by exactly one client

    async def worker(client: httpx.AsyncClient) -> None:
        for _ in remaining:
            began = time.perf_counter()
            made, problem = await request(client)
            result.latencies_ms.append((time.perf_counter() - began) * 1000)
            if made is not None:
                result.sent_at[made] = began
            if problem is not None:
                result.failures.append(problem)

    result.started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for client in clients[: max(1, count)]:
            group.create_task(worker(client))
    result.finished = time.perf_counter()
    return result


def _data(response: httpx.Response, name: str) -> Any:
    """``data.<name>`` of a GraphQL response without errors, else None."""
    if response.status_code != 200:
        return None
    body = response.json()
    if not isinstance(body, dict) or body.get("errors") or not isinstance(body.get("data"), dict):
        return None
    return body["data"].get(name)


def _problem(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:200]}"


async def sync_query(client: httpx.AsyncClient) -> tuple[str | None, str | None]:
    """W0: the ledger query answered in the request."""
    try:
        response = await client.post("/graphql", json={"query": LEDGER_QUERY})
    except httpx.HTTPError as error:
        return None, f"{type(error).__name__}: {error}"
    company = _data(response, "useCompany")
    return None, None if company is not None else _problem(response)


def async_submit(query: str) -> Request:
    """asyncQuery of ``query``; the request makes an operation id."""
    body = {"query": SUBMIT_DOCUMENT, "variables": {"query": query}}

    async def submit(client: httpx.AsyncClient) -> tuple[str | None, str | None]:
        try:
            response = await client.post("/graphql", json=body)
        except httpx.HTTPError as error:
            return None, f"{type(error).__name__}: {error}"
        operation = _data(response, "asyncQuery")
        if not isinstance(operation, dict) or not isinstance(operation.get("operationId"), str):
            return None, _problem(response)
        return operation["operationId"], None

    return submit


def celery_submit(query: str) -> Request:
    """The peer's POST /submit of ``query``; the request makes a task id."""

    async def submit(client: httpx.AsyncClient) -> tuple[str | None, str | None]:
        try:
            response = await client.post("/submit", json={"query": query})
        except httpx.HTTPError as error:
            return None, f"{type(error).__name__}: {error}"
        task_id = response.json().get("id") if response.status_code == 200 else None
        return (task_id, None) if isinstance(task_id, str) else (None, _problem(response))

    return submit


async def list_requests(client: httpx.AsyncClient) -> tuple[str | None, str | None]:
    """asyncRequests(first: 100)."""
    response = await client.post("/graphql", json={"query": LIST_DOCUMENT})
    listed = _data(response, "asyncRequests")
    return None, None if isinstance(listed, list) else _problem(response)


@dataclass
class DoneFeed:
    """When each piece of work was seen done, by id (filled by a feed's callback)."""

    done_at: dict[str, float] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    _waiters: dict[str, asyncio.Future[float]] = field(default_factory=dict)

    def mark(self, key: str, *, ok: bool) -> None:
        """Record ``key`` as done now, unless it was already."""
        if key in self.done_at:
            return
        self.done_at[key] = now = time.perf_counter()
        if not ok:
            self.failed.add(key)
        waiter = self._waiters.pop(key, None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)

    async def when_done(self, key: str) -> float:
        """When ``key`` was (or, waiting, will be) seen done."""
        if key in self.done_at:
            return self.done_at[key]
        waiter = self._waiters.setdefault(key, asyncio.get_running_loop().create_future())
        return await waiter

    async def wait_for(self, keys: set[str], timeout_s: float) -> bool:
        """Wait until every one of ``keys`` is done; False if ``timeout_s`` ran out first."""
        for _ in range(max(1, math.ceil(timeout_s / POLL_S))):
            if keys <= self.done_at.keys():
                return True
            await asyncio.sleep(POLL_S)
        return keys <= self.done_at.keys()


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
Offer = Callable[[httpx.AsyncClient], Awaitable[tuple[str, float, float]]]


async def open_loop(
    clients: list[httpx.AsyncClient], rate: float, count: int, offer: Offer, timeout_s: float
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

    async def offer(client: httpx.AsyncClient) -> tuple[str, float, float]:
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

    async def offer(client: httpx.AsyncClient) -> tuple[str, float, float]:
        made, problem = await submit(client)
        answered = time.perf_counter()
        if made is None:
            raise SubmitError(problem)
        return made, answered, await feed.when_done(made)

    return offer


def decode_result_message(data: bytes) -> tuple[str, bool] | None:
    """(task id, succeeded) from a Celery result-backend announcement, None if it is not final."""
    meta = json.loads(data)
    status = meta.get("status")
    if status not in ("SUCCESS", "FAILURE"):
        return None
    return str(meta.get("task_id")), status == "SUCCESS"
