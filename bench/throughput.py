"""Throughput of the whole stack: submits, end-to-end completion and reads.

``python -m bench.throughput`` starts its own nats-server (a free port, a temporary store that is
removed afterwards), the projector and one executor in-process, and the edge behind a real uvicorn
server, all on 127.0.0.1, and measures:

(a) submit: N asyncQuery requests from a bounded number of concurrent HTTP clients;
(b) completion: from the first submit until every operation's view in the KV bucket is SUCCESS,
    as seen by a watcher on the bucket itself;
(c) reads: M asyncResult requests for finished operations.

Alongside, the executor's and the projector's durable consumers are sampled once a second, to show
which stage holds the backlog.

The services, the load generator and the bucket watcher share one event loop in one process, so
the numbers are a floor for a deployment that gives each service its own process. Every loop is
bounded by a count and the whole run by ``--timeout``. A human-readable table is printed, then one
line ``RESULT {...}`` with every number as JSON.
"""

import argparse
import asyncio
import contextlib
import importlib.util
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats.errors
import uvloop
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError
from nats.js.kv import KeyValue

from contracts.names import (
    EXECUTOR_DURABLE,
    PROJECTOR_DURABLE,
    STREAM,
    VIEW_BUCKET,
    principal_view_keys,
    view_key,
)
from contracts.view import TaskStatus, decode_view
from services.common.identity import ANONYMOUS
from services.common.jetstream import connect
from services.common.nats_server import free_port, nats_server_command, wait_for_port
from services.common.settings import Settings
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from services.provision import provision
from tests.stack import running, serving_edge

log = logging.getLogger("asyncgate.bench")

INNER_QUERY = "{ useCompany(no: 123456) { generalLedgerAccount(first: 5) { totalCount } } }"
SUBMIT_DOCUMENT = (
    "mutation Submit($query: String!) { asyncQuery(query: $query) { operationId status } }"
)
READ_DOCUMENT = "query Read($id: String!) { asyncResult(id: $id) { operationId status data } }"

HOST = "127.0.0.1"
HTTP_TIMEOUT_S = 30.0
KEEPALIVE_EXPIRY_S = 2.0
POLL_S = 0.02
READY_ATTEMPTS = 250
# Time kept back from --timeout for the read phase and shutting everything down (at most a
# quarter of it).
RESERVE_S = 30.0
# How many views the final check reads from the bucket at once.
CHECK_CONCURRENCY = 64
MAX_REPORTED_FAILURES = 5
# How often the consumers' progress is sampled, and how many samples the timeline keeps.
LAG_SAMPLE_S = 1.0
TIMELINE_ROWS = 12

FASTSTREAM_NATS_LOGGER = "faststream.access.nats"

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


class BenchError(RuntimeError):
    """The benchmark could not run to its end."""


# ---------------------------------------------------------------------------------------------
# Measuring


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``samples`` (0.0 when there are none)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds used so far by process ``pid`` (0.0 without /proc)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    # Fields after the parenthesised command name start at field 3; utime and stime are 14, 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


@dataclass(frozen=True)
class Snapshot:
    """Wall clock and CPU used so far, by this process and by nats-server."""

    wall: float
    python_cpu: float
    nats_cpu: float

    @classmethod
    def take(cls, nats_pid: int) -> "Snapshot":
        """Now."""
        return cls(time.perf_counter(), time.process_time(), process_cpu_s(nats_pid))

    def share_since(self, start: "Snapshot") -> dict[str, float]:
        """Each process's CPU use between ``start`` and this snapshot, in % of one core."""
        wall = max(self.wall - start.wall, 1e-9)
        return {
            "python_cpu_pct": 100 * (self.python_cpu - start.python_cpu) / wall,
            "nats_cpu_pct": 100 * (self.nats_cpu - start.nats_cpu) / wall,
        }


@dataclass
class LoadResult:
    """What one batch of requests took."""

    started: float
    finished: float
    latencies_ms: list[float]
    failures: list[str]

    @property
    def seconds(self) -> float:
        """Wall time from the first request's start to the last one's end."""
        return self.finished - self.started

    def summary(self) -> dict[str, Any]:
        """Counts, rate and latency percentiles."""
        count = len(self.latencies_ms)
        return {
            "count": count,
            "ok": count - len(self.failures),
            "failed": len(self.failures),
            "seconds": self.seconds,
            "per_s": count / self.seconds if self.seconds > 0 else 0.0,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p95_ms": percentile(self.latencies_ms, 95),
            "p99_ms": percentile(self.latencies_ms, 99),
            "max_ms": max(self.latencies_ms, default=0.0),
            "first_failures": self.failures[:MAX_REPORTED_FAILURES],
        }


async def run_load(
    count: int,
    clients: list[httpx.AsyncClient],
    one: Callable[[httpx.AsyncClient, int], Awaitable[str | None]],
) -> LoadResult:
    """Call ``one(client, i)`` for i in 0..count-1, each client working through the indexes one
    request at a time; ``one`` returns a problem or None."""
    latencies_ms: list[float] = []
    failures: list[str] = []
    indexes = iter(range(count))  # shared: every index is taken by exactly one client

    async def worker(client: httpx.AsyncClient) -> None:
        for index in indexes:
            began = time.perf_counter()
            problem = await one(client, index)
            latencies_ms.append((time.perf_counter() - began) * 1000)
            if problem is not None:
                failures.append(problem)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for client in clients[: max(1, count)]:
            group.create_task(worker(client))
    return LoadResult(started, time.perf_counter(), latencies_ms, failures)


# ---------------------------------------------------------------------------------------------
# Talking to the edge


def _problem(response: httpx.Response) -> str:
    return f"HTTP {response.status_code}: {response.text[:200]}"


def _field(response: httpx.Response, name: str) -> dict[str, Any] | None:
    """``data.<name>`` of a GraphQL response, when the response has it and no errors."""
    if response.status_code != 200:
        return None
    try:
        body = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict) or body.get("errors"):
        return None
    data = body.get("data")
    value = data.get(name) if isinstance(data, dict) else None
    return value if isinstance(value, dict) else None


@dataclass
class Submitter:
    """Sends asyncQuery requests and remembers when each operation was submitted."""

    submitted_at: dict[str, float] = field(default_factory=dict)

    async def submit(self, client: httpx.AsyncClient, _: int) -> str | None:
        """Queue one operation; the problem, or None."""
        began = time.perf_counter()
        body = {"query": SUBMIT_DOCUMENT, "variables": {"query": INNER_QUERY}}
        try:
            response = await client.post("/graphql", json=body)
        except httpx.HTTPError as error:
            return f"{type(error).__name__}: {error}"
        operation = _field(response, "asyncQuery")
        if operation is None or not isinstance(operation.get("operationId"), str):
            return _problem(response)
        self.submitted_at[operation["operationId"]] = began
        return None


async def read_result(client: httpx.AsyncClient, operation_id: str) -> str | None:
    """Read one finished operation through asyncResult; the problem, or None."""
    body = {"query": READ_DOCUMENT, "variables": {"id": operation_id}}
    try:
        response = await client.post("/graphql", json=body)
    except httpx.HTTPError as error:
        return f"{type(error).__name__}: {error}"
    result = _field(response, "asyncResult")
    if result is None:
        return _problem(response)
    if result.get("status") != TaskStatus.SUCCESS or "totalCount" not in str(result.get("data")):
        return f"{operation_id}: {result.get('status')} {str(result.get('data'))[:200]}"
    return None


async def wait_until_ready(client: httpx.AsyncClient) -> None:
    """Poll /readyz until the edge reports ready (bounded)."""
    for _ in range(READY_ATTEMPTS):
        with contextlib.suppress(httpx.HTTPError):
            if (await client.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(POLL_S)
    raise BenchError("the edge did not become ready")


# ---------------------------------------------------------------------------------------------
# Watching the view bucket


@dataclass
class ViewTracker:
    """Follows the view bucket and records when each operation first reached a final status."""

    max_updates: int
    terminal_at: dict[str, float] = field(default_factory=dict)
    succeeded: set[str] = field(default_factory=set)
    updates: int = 0

    async def follow(self, kv: KeyValue) -> None:
        """Consume view changes until cancelled or ``max_updates`` have been seen."""
        watcher = await kv.watch(
            principal_view_keys(ANONYMOUS.tenant, ANONYMOUS.user), ignore_deletes=True
        )
        try:
            async for entry in watcher:
                if entry is None or not entry.value:
                    continue  # the end of the (empty) initial values, or a delete marker
                self.updates += 1
                view = decode_view(entry.value)
                if view.status.is_terminal and view.operation_id not in self.terminal_at:
                    self.terminal_at[view.operation_id] = time.perf_counter()
                    if view.status == TaskStatus.SUCCESS:
                        self.succeeded.add(view.operation_id)
                if self.updates >= self.max_updates:
                    log.warning("view watcher stopped after %d updates", self.updates)
                    return
        finally:
            with contextlib.suppress(nats.errors.Error):
                await watcher.stop()  # type: ignore[no-untyped-call]  # unannotated in nats-py

    def finished(self, operation_ids: set[str]) -> int:
        """How many of ``operation_ids`` have reached a final status."""
        return len(operation_ids & self.terminal_at.keys())

    async def wait_for(self, operation_ids: set[str], timeout_s: float) -> bool:
        """Wait until every one of ``operation_ids`` is final; False if ``timeout_s`` ran out."""
        for _ in range(max(1, math.ceil(timeout_s / POLL_S))):
            if self.finished(operation_ids) == len(operation_ids):
                return True
            await asyncio.sleep(POLL_S)
        return self.finished(operation_ids) == len(operation_ids)


async def check_views(kv: KeyValue, operation_ids: set[str]) -> dict[str, int]:
    """Read every operation's view straight from the bucket: counts by status, and retries."""
    limit = asyncio.Semaphore(CHECK_CONCURRENCY)
    counts = {status.value: 0 for status in TaskStatus} | {"MISSING": 0, "RETRIED": 0}

    async def check(operation_id: str) -> None:
        async with limit:
            try:
                entry = await kv.get(view_key(ANONYMOUS.tenant, ANONYMOUS.user, operation_id))
            except KeyNotFoundError:
                counts["MISSING"] += 1
                return
        if not entry.value:
            counts["MISSING"] += 1
            return
        view = decode_view(entry.value)
        counts[view.status.value] += 1
        counts["RETRIED"] += view.attempts > 1

    await asyncio.gather(*(check(operation_id) for operation_id in operation_ids))
    return counts


# ---------------------------------------------------------------------------------------------
# Watching the consumers


@dataclass(frozen=True)
class ConsumerState:
    """How far one durable consumer has got: messages not yet delivered, delivered but not yet
    acknowledged, acknowledged (the ack floor, in deliveries) and currently redelivered."""

    waiting: int
    in_hand: int
    done: int
    redelivered: int

    def as_list(self) -> list[int]:
        """Compact JSON form."""
        return [self.waiting, self.in_hand, self.done]


UNKNOWN_STATE = ConsumerState(-1, -1, -1, -1)


async def consumer_state(js: JetStreamContext, durable: str) -> ConsumerState:
    """The consumer's progress, or UNKNOWN_STATE if NATS does not say in time."""
    try:
        info = await js.consumer_info(STREAM, durable, timeout=2.0)
    except (nats.errors.Error, TimeoutError):
        return UNKNOWN_STATE
    return ConsumerState(
        waiting=info.num_pending or 0,
        in_hand=info.num_ack_pending or 0,
        done=info.ack_floor.consumer_seq if info.ack_floor else 0,
        redelivered=info.num_redelivered or 0,
    )


@dataclass(frozen=True)
class Progress:
    """Both consumers at one moment."""

    at: float
    executor: ConsumerState
    projector: ConsumerState

    @classmethod
    async def take(cls, js: JetStreamContext) -> "Progress":
        """Now."""
        executor = await consumer_state(js, EXECUTOR_DURABLE)
        projector = await consumer_state(js, PROJECTOR_DURABLE)
        return cls(time.perf_counter(), executor, projector)


@dataclass
class ProgressSampler:
    """Samples both consumers every LAG_SAMPLE_S seconds, at most ``max_samples`` times."""

    js: JetStreamContext
    max_samples: int
    samples: list[Progress] = field(default_factory=list)

    async def follow(self) -> None:
        """Sample until cancelled or ``max_samples`` are taken."""
        for _ in range(self.max_samples):
            self.samples.append(await Progress.take(self.js))
            await asyncio.sleep(LAG_SAMPLE_S)

    def timeline(self, since: float, until: float) -> list[list[float | int]]:
        """At most TIMELINE_ROWS samples between ``since`` and ``until``, as
        [seconds since ``since``, executor waiting, in hand, done, projector waiting, in hand,
        done]."""
        window = [p for p in self.samples if since <= p.at <= until]
        step = max(1, math.ceil(len(window) / TIMELINE_ROWS))
        return [
            [p.at - since, *p.executor.as_list(), *p.projector.as_list()] for p in window[::step]
        ]


# ---------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class Options:
    """The command line."""

    operations: int
    concurrency: int
    reads: int
    executor_concurrency: int
    projector_concurrency: int
    warmup: int
    timeout: float
    loop: str


@dataclass
class Stack:
    """The running stack as the phases see it."""

    clients: list[httpx.AsyncClient]
    js: JetStreamContext
    kv: KeyValue
    tracker: ViewTracker
    sampler: ProgressSampler
    nats_pid: int
    deadline: float
    # When waiting for completion gives up, leaving time for the reads and the shutdown.
    drain_deadline: float


async def warm_up(stack: Stack, count: int) -> None:
    """Run ``count`` operations to completion before measuring anything."""
    warmup = Submitter()
    await run_load(count, stack.clients, warmup.submit)
    if not await stack.tracker.wait_for(
        set(warmup.submitted_at), stack.deadline - time.monotonic()
    ):
        raise BenchError("the warm-up operations did not finish")


def _done_between(first: ConsumerState, second: ConsumerState) -> int:
    if UNKNOWN_STATE in (first, second):
        return -1
    return second.done - first.done


def consumer_report(
    stack: Stack, start: Progress, after_submit: Progress, end: Progress
) -> dict[str, Any]:
    """How the executor and the projector kept up while submitting and afterwards."""
    window = [p for p in stack.sampler.samples if start.at <= p.at <= end.at]
    window = [start, *window, after_submit, end]
    return {
        "executor_done_while_submitting": _done_between(start.executor, after_submit.executor),
        "projector_done_while_submitting": _done_between(start.projector, after_submit.projector),
        "executor_peak_waiting": max(p.executor.waiting for p in window),
        "executor_peak_in_hand": max(p.executor.in_hand for p in window),
        "projector_peak_waiting": max(p.projector.waiting for p in window),
        "projector_peak_in_hand": max(p.projector.in_hand for p in window),
        "executor_redelivered": end.executor.redelivered,
        "projector_redelivered": end.projector.redelivered,
        "timeline": stack.sampler.timeline(start.at, end.at),
    }


async def submit_and_complete(
    stack: Stack, count: int
) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """Phases (a) and (b): submit ``count`` operations, then wait until all are final."""
    submitter = Submitter()
    before, start = Snapshot.take(stack.nats_pid), await Progress.take(stack.js)
    load = await run_load(count, stack.clients, submitter.submit)
    after_submit = Snapshot.take(stack.nats_pid)
    progress_after_submit = await Progress.take(stack.js)
    tracker, operation_ids = stack.tracker, set(submitter.submitted_at)
    finished_while_submitting = sum(
        1 for i in operation_ids if tracker.terminal_at.get(i, math.inf) <= load.finished
    )
    all_final = await tracker.wait_for(
        operation_ids, max(0.0, stack.drain_deadline - time.monotonic())
    )
    after_drain, end = Snapshot.take(stack.nats_pid), await Progress.take(stack.js)
    finals = [tracker.terminal_at[i] for i in operation_ids if i in tracker.terminal_at]
    completed_at = max(finals, default=load.finished)
    end_to_end_ms = [
        (tracker.terminal_at[i] - began) * 1000
        for i, began in submitter.submitted_at.items()
        if i in tracker.terminal_at
    ]
    views = await check_views(stack.kv, operation_ids)
    completion_s = completed_at - load.started
    completion = {
        "operations": len(operation_ids),
        "all_final": all_final,
        "final": len(finals),
        "views": views,
        "seconds": completion_s,
        "ops_per_s": views["SUCCESS"] / completion_s if completion_s > 0 else 0.0,
        "finished_while_submitting": finished_while_submitting,
        "drain_after_last_submit_s": max(0.0, completed_at - load.finished),
        "e2e_p50_ms": percentile(end_to_end_ms, 50),
        "e2e_p95_ms": percentile(end_to_end_ms, 95),
        "e2e_p99_ms": percentile(end_to_end_ms, 99),
        "e2e_max_ms": max(end_to_end_ms, default=0.0),
        "view_updates_seen": tracker.updates,
        **after_drain.share_since(before),
    }
    consumers = consumer_report(stack, start, progress_after_submit, end)
    return load.summary() | after_submit.share_since(before), completion, consumers


async def read_finished(stack: Stack, count: int) -> dict[str, Any]:
    """Phase (c): ``count`` asyncResult reads spread over the operations that succeeded."""
    finished = sorted(stack.tracker.succeeded)
    if not finished or not count:
        return {"count": 0}
    before = Snapshot.take(stack.nats_pid)
    load = await run_load(
        count,
        stack.clients,
        lambda client, index: read_result(client, finished[index % len(finished)]),
    )
    return load.summary() | Snapshot.take(stack.nats_pid).share_since(before)


async def phases(stack: Stack, options: Options) -> dict[str, Any]:
    """Warm up, then measure submits, completion and reads."""
    if options.warmup:
        await warm_up(stack, options.warmup)
    submit, completion, consumers = await submit_and_complete(stack, options.operations)
    reads = await read_finished(stack, options.reads)
    return {"submit": submit, "completion": completion, "consumers": consumers, "reads": reads}


@contextlib.asynccontextmanager
async def background(coroutine: Awaitable[None]) -> AsyncIterator[None]:
    """Run ``coroutine`` as a task for the duration of the block, then cancel it."""
    task = asyncio.ensure_future(coroutine)
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def measure(options: Options, nats_url: str, nats_pid: int, data_dir: Path) -> Any:
    """Run the stack against the server at ``nats_url`` and measure it."""
    deadline = time.monotonic() + options.timeout
    settings = Settings(
        nats_url=nats_url,
        http_host=HOST,
        http_port=free_port(HOST),
        executor_concurrency=options.executor_concurrency,
        projector_concurrency=options.projector_concurrency,
        shutdown_grace_s=2.0,
        data_dir=data_dir,
        # One user submits thousands of operations here: the per-user limits would refuse them.
        max_active_per_user=0,
        min_start_interval_s=0,
    )
    nc = await connect(settings, "asyncgate-bench")
    try:
        js = nc.jetstream()
        await provision(js, settings)
        kv = await js.key_value(VIEW_BUCKET)
        tracker = ViewTracker(max_updates=10 * (options.operations + options.warmup) + 1000)
        sampler = ProgressSampler(js, max_samples=math.ceil(options.timeout / LAG_SAMPLE_S))
        async with (
            background(tracker.follow(kv)),
            running(create_projector(settings)),
            running(create_executor(settings, worker="bench-executor")),
            serving_edge(settings),
            http_clients(f"http://{HOST}:{settings.http_port}", options.concurrency) as clients,
            background(sampler.follow()),
        ):
            await wait_until_ready(clients[0])
            # FastStream's supervisor logs one INFO line per task at shutdown; keep the report
            # readable (warnings and errors still show).
            logging.getLogger(FASTSTREAM_NATS_LOGGER).setLevel(logging.WARNING)
            drain_deadline = deadline - min(RESERVE_S, options.timeout / 4)
            stack = Stack(clients, js, kv, tracker, sampler, nats_pid, deadline, drain_deadline)
            return await phases(stack, options)
    finally:
        await nc.drain()


@contextlib.asynccontextmanager
async def http_clients(base_url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``count`` HTTP clients of one keep-alive connection each, like independent callers.

    One pool per client also keeps httpcore's pool bookkeeping, which grows with the number of
    connections in a pool, out of the measurement.
    """
    async with contextlib.AsyncExitStack() as stack:
        clients = [
            await stack.enter_async_context(
                httpx.AsyncClient(
                    base_url=base_url,
                    limits=httpx.Limits(
                        max_connections=1,
                        max_keepalive_connections=1,
                        # Below uvicorn's 5 s keep-alive, so a client never reuses a connection
                        # the server is closing.
                        keepalive_expiry=KEEPALIVE_EXPIRY_S,
                    ),
                    timeout=HTTP_TIMEOUT_S,
                    trust_env=False,  # never through a proxy: all traffic stays on 127.0.0.1
                )
            )
            for _ in range(count)
        ]
        yield clients


@contextlib.contextmanager
def nats_server(directory: Path) -> Iterator[tuple[str, int]]:
    """A JetStream server on a free port storing under ``directory``; yields its URL and pid."""
    port = free_port(HOST)
    with (directory / "nats-server.log").open("wb") as server_log:
        process = subprocess.Popen(  # noqa: S603 (nats-server from this environment)
            nats_server_command(store_dir=directory / "jetstream", port=port, host=HOST),
            stdout=server_log,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_for_port(port, host=HOST)
            yield f"nats://{HOST}:{port}", process.pid
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@contextlib.asynccontextmanager
async def overall_timeout(seconds: float) -> AsyncIterator[None]:
    """Stop the whole run, shutting everything down, after ``seconds`` (plus shutdown time)."""
    try:
        async with asyncio.timeout(seconds):
            yield
    except TimeoutError:
        raise BenchError(f"the benchmark did not finish within {seconds:g} s") from None


async def run(options: Options, nats_url: str, nats_pid: int, data_dir: Path) -> Any:
    """``measure`` under the overall timeout."""
    async with overall_timeout(options.timeout):
        return await measure(options, nats_url, nats_pid, data_dir)


# ---------------------------------------------------------------------------------------------
# Reporting


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    return value


def report(options: Options, measured: dict[str, Any]) -> dict[str, Any]:
    """Print the table and return the RESULT document."""
    submit, completion, reads = measured["submit"], measured["completion"], measured["reads"]
    consumers = measured["consumers"]
    print(
        f"asyncgate throughput: {options.operations} operations, {options.concurrency} clients, "
        f"executor concurrency {options.executor_concurrency}, projector concurrency "
        f"{options.projector_concurrency}, {options.loop} loop, {os.cpu_count()} CPUs"
    )
    header = (
        f"{'phase':<11}{'count':>7}{'ok':>7}{'seconds':>9}{'per s':>9}"
        f"{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'py cpu%':>9}{'nats cpu%':>10}"
    )
    print(header)
    print("-" * len(header))
    rows = [
        ("submit", submit, submit["count"], submit["ok"], submit["per_s"], "p"),
        ("completion", completion, completion["operations"], completion["views"]["SUCCESS"],
         completion["ops_per_s"], "e2e_p"),
        ("reads", reads, reads.get("count", 0), reads.get("ok", 0), reads.get("per_s", 0.0), "p"),
    ]  # fmt: skip
    for name, phase, count, ok, rate, prefix in rows:
        print(
            f"{name:<11}{count:>7}{ok:>7}{phase.get('seconds', 0.0):>9.2f}{rate:>9.1f}"
            f"{phase.get(prefix + '50_ms', 0.0):>9.1f}{phase.get(prefix + '95_ms', 0.0):>9.1f}"
            f"{phase.get(prefix + '99_ms', 0.0):>9.1f}{phase.get('python_cpu_pct', 0.0):>9.0f}"
            f"{phase.get('nats_cpu_pct', 0.0):>10.0f}"
        )
    print(
        f"completion latencies are end to end (submit to SUCCESS in the bucket); "
        f"{completion['finished_while_submitting']} finished while submitting, the rest "
        f"{completion['drain_after_last_submit_s']:.2f} s after the last submit; "
        f"views {completion['views']}"
    )
    print(
        f"while submitting the executor finished {consumers['executor_done_while_submitting']} "
        f"requests and the projector folded {consumers['projector_done_while_submitting']} events; "
        f"peak executor backlog {consumers['executor_peak_waiting']} waiting + "
        f"{consumers['executor_peak_in_hand']} in hand, peak projector backlog "
        f"{consumers['projector_peak_waiting']} waiting + {consumers['projector_peak_in_hand']} in "
        f"hand; redelivered: executor {consumers['executor_redelivered']}, projector "
        f"{consumers['projector_redelivered']}"
    )
    print(
        f"{'t s':>7} | {'executor: waiting':>17}{'in hand':>9}{'done':>7} | "
        f"{'projector: waiting':>18}{'in hand':>9}{'done':>7}"
    )
    for at, *counts in consumers["timeline"]:
        print(
            f"{at:>7.1f} | {counts[0]:>17}{counts[1]:>9}{counts[2]:>7} | "
            f"{counts[3]:>18}{counts[4]:>9}{counts[5]:>7}"
        )
    for phase_name, phase in (("submit", submit), ("reads", reads)):
        for failure in phase.get("first_failures", []):
            print(f"{phase_name} failure: {failure}")
    document = {
        "operations": options.operations,
        "concurrency": options.concurrency,
        "reads_requested": options.reads,
        "executor_concurrency": options.executor_concurrency,
        "projector_concurrency": options.projector_concurrency,
        "warmup": options.warmup,
        "loop": options.loop,
        "cpus": os.cpu_count(),
        **measured,
    }
    result: dict[str, Any] = _rounded(document)
    print("RESULT " + json.dumps(result, sort_keys=True))
    return result


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _not_negative(value: str) -> int:
    number = int(value)
    if number < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return number


def parse_options(argv: list[str] | None = None) -> Options:
    """Read the command line."""
    defaults = Settings()
    parser = argparse.ArgumentParser(
        prog="python -m bench.throughput", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--operations", type=_positive, default=2000, help="asyncQuery requests")
    parser.add_argument("--concurrency", type=_positive, default=32, help="concurrent clients")
    parser.add_argument("--reads", type=_not_negative, default=2000, help="asyncResult requests")
    parser.add_argument(
        "--executor-concurrency", type=_positive, default=defaults.executor_concurrency
    )
    parser.add_argument(
        "--projector-concurrency", type=_positive, default=defaults.projector_concurrency
    )
    parser.add_argument(
        "--warmup", type=_not_negative, default=20, help="operations run before measuring"
    )
    parser.add_argument(
        "--timeout", type=float, default=300.0, help="seconds the whole run may take"
    )
    parser.add_argument(
        "--loop", choices=("asyncio", "uvloop"), default="asyncio", help="event loop to run on"
    )
    arguments = parser.parse_args(argv)
    return Options(
        operations=arguments.operations,
        concurrency=arguments.concurrency,
        reads=arguments.reads,
        executor_concurrency=arguments.executor_concurrency,
        projector_concurrency=arguments.projector_concurrency,
        warmup=arguments.warmup,
        timeout=arguments.timeout,
        loop=arguments.loop,
    )


def _skip_absent_sniffio() -> None:
    """Make httpcore's per-request ``import sniffio`` fail at once when sniffio is not installed.

    Without this every failed import searches sys.path again, which costs the load generator,
    and so the services sharing its event loop, a noticeable share of the CPU.
    """
    if "sniffio" not in sys.modules and importlib.util.find_spec("sniffio") is None:
        sys.modules["sniffio"] = None  # type: ignore[assignment]  # the import system's "absent"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; 0 when every operation succeeded and every request was answered."""
    options = parse_options(argv)
    _skip_absent_sniffio()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    loop_factory = uvloop.new_event_loop if options.loop == "uvloop" else None
    try:
        with (
            tempfile.TemporaryDirectory(prefix="asyncgate-bench-") as directory,
            nats_server(Path(directory)) as (nats_url, nats_pid),
            asyncio.Runner(loop_factory=loop_factory) as runner,
        ):
            measured = runner.run(run(options, nats_url, nats_pid, Path(directory)))
    except BenchError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    result = report(options, measured)
    submit, completion, reads = result["submit"], result["completion"], result["reads"]
    succeeded = (
        submit["failed"] == 0
        and completion["views"]["SUCCESS"] == options.operations
        and reads.get("failed", 0) == 0
    )
    return 0 if succeeded else 1


if __name__ == "__main__":
    sys.exit(main())
