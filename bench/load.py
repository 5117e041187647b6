"""Load generators: closed-loop HTTP clients, an open-loop schedule, and the ways a client learns
that work is done (asyncgate's subscriptions; the Celery peer's result backend)."""

import asyncio
import contextlib
import math
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from bench.http_client import HttpError, LeanClient, Response
from bench.probes import percentile

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
Request = Callable[[LeanClient], Awaitable[tuple[str | None, str | None]]]


@contextlib.asynccontextmanager
async def http_clients(base_url: str, count: int) -> AsyncIterator[list[LeanClient]]:
    """``count`` HTTP clients of one keep-alive connection each, like independent callers
    (bench/http_client.py says why not httpx)."""
    clients = [LeanClient(base_url, timeout_s=HTTP_TIMEOUT_S) for _ in range(count)]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()


async def closed_loop(clients: list[LeanClient], count: int, request: Request) -> LoadResult:
    """``count`` requests, each client sending its next as soon as its last is answered."""
    result = LoadResult()
    remaining = iter(range(count))  # shared: every index is taken by exactly one client

    async def worker(client: LeanClient) -> None:
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


def _data(response: Response, name: str) -> Any:
    """``data.<name>`` of a GraphQL response without errors, else None."""
    if response.status_code != 200:
        return None
    body = response.json()
    if not isinstance(body, dict) or body.get("errors") or not isinstance(body.get("data"), dict):
        return None
    return body["data"].get(name)


def _problem(response: Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:200]}"


async def sync_query(client: LeanClient) -> tuple[str | None, str | None]:
    """W0: the ledger query answered in the request."""
    try:
        response = await client.post("/graphql", json={"query": LEDGER_QUERY})
    except HttpError as error:
        return None, str(error)
    company = _data(response, "useCompany")
    return None, None if company is not None else _problem(response)


def async_submit(query: str) -> Request:
    """asyncQuery of ``query``; the request makes an operation id."""
    body = {"query": SUBMIT_DOCUMENT, "variables": {"query": query}}

    async def submit(client: LeanClient) -> tuple[str | None, str | None]:
        try:
            response = await client.post("/graphql", json=body)
        except HttpError as error:
            return None, str(error)
        operation = _data(response, "asyncQuery")
        if not isinstance(operation, dict) or not isinstance(operation.get("operationId"), str):
            return None, _problem(response)
        return operation["operationId"], None

    return submit


def celery_submit(query: str) -> Request:
    """The peer's POST /submit of ``query``; the request makes a task id."""

    async def submit(client: LeanClient) -> tuple[str | None, str | None]:
        try:
            response = await client.post("/submit", json={"query": query})
        except HttpError as error:
            return None, str(error)
        task_id = response.json().get("id") if response.status_code == 200 else None
        return (task_id, None) if isinstance(task_id, str) else (None, _problem(response))

    return submit


async def list_requests(client: LeanClient) -> tuple[str | None, str | None]:
    """asyncRequests(first: 100)."""
    try:
        response = await client.post("/graphql", json={"query": LIST_DOCUMENT})
    except HttpError as error:
        return None, str(error)
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
