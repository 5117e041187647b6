"""The measured workloads, one function each; every one returns a flat dict of figures."""

import asyncio
import math
import signal
import time
import uuid
from dataclasses import dataclass
from typing import Any, Final

import nats
from nats.js.api import StorageType, StreamConfig

from bench.feeds import ViewFeed
from bench.http_client import LeanClient
from bench.load import (
    LEDGER_QUERY,
    SLOW_REPORT_QUERY,
    SUBSCRIPTIONS_PER_CONNECTION,
    DoneFeed,
    LoadResult,
    Request,
    async_submit,
    celery_submit,
    closed_loop,
    list_requests,
    sync_query,
)
from bench.open_loop import SubscriptionPool, asyncgate_offer, celery_offer, open_loop
from bench.peers.celery_peer.stack import CeleryPeer
from bench.probes import (
    CpuSnapshot,
    connections_by_cid,
    percentile,
    process_rss_bytes,
    stream_last_sequences,
)
from bench.stack import AsyncgateStack
from contracts.events import Correlation, OperationCompleted, OperationRequested, OperationStarted
from contracts.lifecycle import evolve
from contracts.names import REQUESTS_STREAM, STREAM, VIEW_BUCKET, principal_view_keys, view_key
from contracts.view import encode_view
from services.common.identity import ANONYMOUS
from services.common.listing import Listing
from services.common.views import list_views

RAW_STREAM: Final = "BENCH_RAW_PUBLISH"
RAW_PAYLOAD: Final = b"x" * 128
MB: Final = 1024 * 1024
# RUNNING is measured on operations that run this long, offered at this share of the rate.
RUNS_VISIBLY: Final = "{ slowReport(seconds: 0.2) }"
RUNNING_SIDE_SHARE: Final = 0.1


@dataclass(frozen=True)
class Sizes:
    """How much work each workload offers."""

    clients: int
    w0_requests: int
    w1_operations: int
    open_loop_s: float
    rates: tuple[float, ...]
    w2_operations: int
    subscriptions: int
    history: int
    list_calls: int
    raw_publishes: int
    drain_timeout_s: float


async def w0_sync(
    clients: list[LeanClient], pids: dict[str, list[int]], sizes: Sizes
) -> dict[str, Any]:
    """W0: the ledger query answered synchronously by the edge; CPU per request too."""
    before = CpuSnapshot.take(pids)
    load = await closed_loop(clients, sizes.w0_requests, sync_query)
    cpu = CpuSnapshot.take(pids).since(before)
    count = max(1, len(load.latencies_ms))
    return load.summary() | {"cpu_ms_per_request_total": sum(cpu.values()) * 1000 / count}


async def _closed_loop_completion(
    clients: list[LeanClient],
    count: int,
    request: Request,
    *,
    feed: DoneFeed,
    pids: dict[str, list[int]],
    timeout_s: float,
) -> tuple[LoadResult, dict[str, Any]]:
    """Submit ``count`` closed-loop, wait until the feed saw each done; rates and CPU."""
    before, bench_before = CpuSnapshot.take(pids), time.process_time()
    load = await closed_loop(clients, count, request)
    ids = set(load.sent_at)
    all_done = await feed.wait_for(ids, timeout_s)
    cpu = CpuSnapshot.take(pids).since(before)
    bench_cpu_s = time.process_time() - bench_before
    done = [feed.done_at[key] for key in ids if key in feed.done_at]
    seconds = (max(done) - load.started) if done else math.nan
    completed = len(done)
    figures: dict[str, Any] = {
        "submit": load.summary(),
        "completed": completed,
        "failed_operations": len(ids & feed.failed),
        "all_done": all_done,
        "completed_per_s": completed / seconds if completed else 0.0,
        "drain_after_last_submit_s": (max(done) - load.finished) if done else math.nan,
        "slowest_s": _slowest_s(load, feed),
        "cpu_ms_per_op": {
            name: used * 1000 / completed if completed else math.nan for name, used in cpu.items()
        },
        "cpu_ms_per_op_total": sum(cpu.values()) * 1000 / completed if completed else math.nan,
        # The load generator's own share (its clients and feeds), not counted above.
        "bench_cpu_ms_per_op": bench_cpu_s * 1000 / completed if completed else math.nan,
    }
    return load, figures


def _slowest_s(load: LoadResult, feed: DoneFeed) -> float:
    """The longest any operation took from its submit being sent until the feed saw it done
    (NaN if none was seen done): a stalled operation shows here however fast the rest were."""
    took = [feed.done_at[key] - sent for key, sent in load.sent_at.items() if key in feed.done_at]
    return max(took) if took else math.nan


def _edge_out_msgs(stack: AsyncgateStack) -> tuple[float, float]:
    """Messages and bytes nats-server has sent to the idle edge so far (NaN when its connection
    could not be told apart, so an unknown is never reported as zero)."""
    if stack.idle_edge_cid is None:
        return math.nan, math.nan
    connection = connections_by_cid(stack.monitor_url).get(stack.idle_edge_cid)
    if connection is None:  # it reconnected: another cid
        return math.nan, math.nan
    return float(connection["out_msgs"]), float(connection["out_bytes"])


async def w1_asyncgate(
    stack: AsyncgateStack, clients: list[LeanClient], feed: ViewFeed, sizes: Sizes
) -> dict[str, Any]:
    """W1: asyncQuery closed-loop; submit figures, completion rate, CPU per operation, and what
    the idle edge was sent meanwhile."""
    idle_before = _edge_out_msgs(stack)
    stored_before = stream_last_sequences(stack.monitor_url)
    _, figures = await _closed_loop_completion(
        clients,
        sizes.w1_operations,
        async_submit(LEDGER_QUERY),
        feed=feed,
        pids=stack.pids(),
        timeout_s=sizes.drain_timeout_s,
    )
    idle_after = _edge_out_msgs(stack)
    stored = _stored_per_op(
        stored_before, stream_last_sequences(stack.monitor_url), figures["completed"]
    )
    figures["stored_per_op"] = stored
    # What each event stream wrote per second: with sync_interval always each of a stream's
    # writes is synced to disk before its next, so this against the raw ceiling says how close
    # W1 ran.
    for stream, key in ((REQUESTS_STREAM, "requests"), (STREAM, "history")):
        per_s = stored.get(stream, math.nan) * figures["completed_per_s"]
        figures[f"{key}_stream_writes_per_s"] = per_s
    figures["idle_edge_msgs"] = idle_after[0] - idle_before[0]
    figures["idle_edge_bytes"] = idle_after[1] - idle_before[1]
    return figures


def _stored_per_op(
    before: dict[str, int], after: dict[str, int], completed: int
) -> dict[str, float]:
    """Messages each stream (and bucket) stored per completed operation between the two
    readings, the streams that stored none left out; ``all`` is their sum."""
    if not completed:
        return {}
    stored = {
        name: (sequence - before.get(name, 0)) / completed
        for name, sequence in after.items()
        if sequence > before.get(name, 0)
    }
    return stored | {"all": sum(stored.values())}


async def w1_celery(
    peer: CeleryPeer, clients: list[LeanClient], feed: DoneFeed, sizes: Sizes
) -> dict[str, Any]:
    """W1 on the peer: submit closed-loop, completion from the result backend."""
    _, figures = await _closed_loop_completion(
        clients,
        sizes.w1_operations,
        celery_submit(LEDGER_QUERY),
        feed=feed,
        pids=peer.pids(),
        timeout_s=sizes.drain_timeout_s,
    )
    return figures


async def open_loop_asyncgate(
    clients: list[LeanClient],
    pool: SubscriptionPool,
    feed: ViewFeed,
    rate: float,
    sizes: Sizes,
) -> dict[str, Any]:
    """Work offered at ``rate``: submit → final state through a subscription, and RUNNING's
    delay after the started event was stored.

    The ledger query ends within moments, so it stores no started event (its start rides on
    its ending) and never shows RUNNING; RUNNING is measured on a side stream offered at a
    tenth of ``rate`` alongside, of operations that run long enough to show it."""
    count = max(1, round(rate * sizes.open_loop_s))
    side_rate = rate * RUNNING_SIDE_SHARE
    # A connection of its own, so that no ledger submit waits behind a side one.
    main_clients, side_clients = clients[:-1] or clients, clients[-1:]
    result, side = await asyncio.gather(
        open_loop(
            main_clients, rate, count, asyncgate_offer(pool, LEDGER_QUERY), sizes.drain_timeout_s
        ),
        open_loop(
            side_clients,
            side_rate,
            max(1, round(side_rate * sizes.open_loop_s)),
            asyncgate_offer(pool, RUNS_VISIBLY),
            sizes.drain_timeout_s,
        ),
    )
    # The feed sees the views a moment after the subscription does; let it catch up.
    await feed.wait_for(set(result.ids) | set(side.ids), 5.0)
    delays = feed.running_delays_ms(side.ids)
    return result.summary() | {
        "running_visible_p50_ms": percentile(delays, 50),
        "running_visible_p99_ms": percentile(delays, 99),
        "running_visible_max_ms": max(delays, default=math.nan),
        "running_visible_count": len(delays),
    }


async def open_loop_celery(
    clients: list[LeanClient], feed: DoneFeed, rate: float, sizes: Sizes
) -> dict[str, Any]:
    """Work offered at ``rate`` to the peer: submit → result announced by the result backend."""
    count = max(1, round(rate * sizes.open_loop_s))
    result = await open_loop(
        clients, rate, count, celery_offer(feed, LEDGER_QUERY), sizes.drain_timeout_s
    )
    return result.summary()


async def w2_slow_reports(
    clients: list[LeanClient], feed: ViewFeed, sizes: Sizes
) -> dict[str, Any]:
    """W2: many slowReport(0.2) with default settings; last done after last submit."""
    load = await closed_loop(clients, sizes.w2_operations, async_submit(SLOW_REPORT_QUERY))
    ids = set(load.sent_at)
    all_done = await feed.wait_for(ids, sizes.drain_timeout_s)
    done = [feed.done_at[key] for key in ids if key in feed.done_at]
    return {
        "operations": len(ids),
        "completed": len(done),
        "all_done": all_done,
        "submit_s": load.seconds,
        "last_done_after_last_submit_s": (max(done) - load.finished) if done else math.nan,
        "slowest_s": _slowest_s(load, feed),
    }


async def edge_memory(
    stack: AsyncgateStack, clients: list[LeanClient], feed: ViewFeed, sizes: Sizes
) -> dict[str, Any]:
    """Edge RSS with ``sizes.subscriptions`` subscriptions open on operations that cannot end
    meanwhile (the executor is frozen with SIGSTOP until they are counted, then thawed)."""
    edge_pid = stack.services.edge.pid
    executor = stack.services.executor
    executor.signal(signal.SIGSTOP)
    try:
        load = await closed_loop(clients, sizes.subscriptions, async_submit(LEDGER_QUERY))
        rss_before = process_rss_bytes(edge_pid)
        connections = math.ceil(len(load.sent_at) / SUBSCRIPTIONS_PER_CONNECTION)
        async with SubscriptionPool(stack.ws_url, max(1, connections)).open() as pool:
            firsts = [(await pool.follow(key))[0] for key in load.sent_at]
            async with asyncio.timeout(sizes.drain_timeout_s):
                await asyncio.gather(*firsts)
            await asyncio.sleep(0.5)  # let the edge settle (buffers, the GC) before reading
            rss_open = process_rss_bytes(edge_pid)
    finally:
        executor.signal(signal.SIGCONT)
    await feed.wait_for(set(load.sent_at), sizes.drain_timeout_s)
    return {
        "subscriptions": len(load.sent_at),
        "edge_rss_before_mb": rss_before / MB,
        "edge_rss_mb": rss_open / MB,
    }


async def raw_publish_ceiling(nats_url: str, sizes: Sizes) -> dict[str, Any]:
    """JetStream publishes/s from Python (nats-py publish_async) to a scratch file stream on
    the same server, acknowledged; the stream is deleted afterwards."""
    nc = await nats.connect(nats_url, name="asyncgate-bench-raw")
    try:
        js = nc.jetstream()
        subject = "bench.raw"
        await js.add_stream(
            StreamConfig(name=RAW_STREAM, subjects=[subject], storage=StorageType.FILE)
        )
        try:
            began = time.perf_counter()
            futures = [
                await js.publish_async(subject, RAW_PAYLOAD) for _ in range(sizes.raw_publishes)
            ]
            await asyncio.gather(*futures)
            seconds = time.perf_counter() - began
        finally:
            await js.delete_stream(RAW_STREAM)
    finally:
        await nc.close()
    return {"publishes": sizes.raw_publishes, "per_s": sizes.raw_publishes / seconds}


def _finished_view(operation_id: str, sequence: int, ordinal: int) -> bytes:
    """The view the projector writes for a finished ledger query of the anonymous user."""
    common: Correlation = {
        "operation_id": operation_id,
        "tenant": ANONYMOUS.tenant,
        "principal": ANONYMOUS.user,
        "trace_id": uuid.uuid4().hex,
    }
    requested = OperationRequested(**common, query=LEDGER_QUERY, listing_ordinal=ordinal)
    started = OperationStarted(**common, attempt=1, worker="bench-seed", delivery=1)
    response = {"data": {"useCompany": {"generalLedgerAccount": {"totalCount": 12}}}}
    completed = OperationCompleted(**common, response=response)
    view = evolve(None, requested, sequence)
    view = evolve(view, started, sequence + 1)
    return encode_view(evolve(view, completed, sequence + 2))


# Operations indexed and stored at once while seeding the listing.
SEED_CHUNK = 500


async def listing(stack: AsyncgateStack, clients: list[LeanClient], sizes: Sizes) -> dict[str, Any]:
    """asyncRequests(first: 100) for a user with ``sizes.history`` retained operations.

    The missing ones are written straight into the view bucket as the projector would write
    them (the fold of requested, started, completed, the request carrying its listing ordinal)
    and indexed for listing as the edge indexes a submit: seeding through the services would
    cost minutes, and a listing reads only the index and the views.
    """
    nc = await nats.connect(stack.server.url, name="asyncgate-bench-seed")
    try:
        js = nc.jetstream()
        index = Listing.over(nc)
        keys = principal_view_keys(ANONYMOUS.tenant, ANONYMOUS.user)
        existing = len(await list_views(js, keys))
        seeded = [str(uuid.uuid4()) for _ in range(max(0, sizes.history - existing))]
        for start in range(0, len(seeded), SEED_CHUNK):
            chunk = seeded[start : start + SEED_CHUNK]
            ordinals = await asyncio.gather(
                *(index.record(ANONYMOUS.tenant, ANONYMOUS.user, op) for op in chunk)
            )
            futures = [
                await js.publish_async(
                    f"$KV.{VIEW_BUCKET}.{view_key(ANONYMOUS.tenant, ANONYMOUS.user, op)}",
                    _finished_view(op, start + n, ordinal),
                )
                for n, (op, ordinal) in enumerate(zip(chunk, ordinals, strict=True))
            ]
            await asyncio.gather(*futures)
        retained = len(await list_views(js, keys))
        await index.reads.close()
    finally:
        await nc.close()
    latencies: list[float] = []
    for _ in range(sizes.list_calls):
        began = time.perf_counter()
        _, problem = await list_requests(clients[0])
        latencies.append((time.perf_counter() - began) * 1000)
        if problem is not None:
            raise RuntimeError(f"asyncRequests failed: {problem}")
    return {
        "retained": retained,
        "calls": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
    }
