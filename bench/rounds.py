"""One benchmark run: start both systems side by side, then measure them in interleaved rounds
(which system goes first alternates), then the one-off figures."""

import contextlib
import logging
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import workloads
from bench.feeds import ViewFeed, result_feed, view_feed
from bench.http_client import LeanClient
from bench.load import (
    LEDGER_QUERY,
    DoneFeed,
    async_submit,
    celery_submit,
    closed_loop,
    http_clients,
)
from bench.open_loop import SubscriptionPool
from bench.peers.celery_peer.stack import (
    INSTALL_HINT,
    CeleryPeer,
    celery_peer,
    redis_server_binary,
)
from bench.probes import load_average, machine
from bench.stack import AsyncgateStack, asyncgate_stack, scratch_server
from bench.workloads import Sizes
from services.common.nats_server import nats_server_binary

log = logging.getLogger("bench")

# Open-loop subscriptions are spread over this many WebSocket connections (each takes 100).
SUBSCRIPTION_CONNECTIONS = 16
WARMUP_OPERATIONS = 50


@dataclass(frozen=True)
class Options:
    """What to run."""

    rounds: int
    sizes: Sizes
    peer: bool
    sync_always: bool


@dataclass
class Systems:
    """Everything running during the rounds."""

    asyncgate: AsyncgateStack
    asyncgate_clients: list[LeanClient]
    views: ViewFeed
    pool: SubscriptionPool
    peer: CeleryPeer | None
    peer_clients: list[LeanClient]
    results: DoneFeed | None


def _say(message: str) -> None:
    print(f"bench {time.strftime('%H:%M:%S')} {message}", flush=True)


async def _asyncgate_round(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    clients, views = systems.asyncgate_clients, systems.views
    pids = systems.asyncgate.pids()
    figures: dict[str, Any] = {"w0": await workloads.w0_sync(clients, pids, sizes)}
    figures["w1"] = await workloads.w1_asyncgate(systems.asyncgate, clients, views, sizes)
    for rate in sizes.rates:
        figures[f"open_{rate:g}"] = await workloads.open_loop_asyncgate(
            clients, systems.pool, views, rate, sizes
        )
    figures["w2"] = await workloads.w2_slow_reports(clients, views, sizes)
    return figures


async def _peer_round(systems: Systems, sizes: Sizes) -> dict[str, Any]:
    assert systems.peer is not None
    assert systems.results is not None
    clients, results = systems.peer_clients, systems.results
    figures: dict[str, Any] = {
        "w1": await workloads.w1_celery(systems.peer, clients, results, sizes)
    }
    for rate in sizes.rates:
        figures[f"open_{rate:g}"] = await workloads.open_loop_celery(clients, results, rate, sizes)
    return figures


async def _warm_up(systems: Systems) -> None:
    """A few operations through each system first: imports, caches and connections are made
    before anything is measured."""
    count = WARMUP_OPERATIONS
    load = await closed_loop(systems.asyncgate_clients, count, async_submit(LEDGER_QUERY))
    await systems.views.wait_for(set(load.sent_at), 60.0)
    if systems.peer is not None and systems.results is not None:
        load = await closed_loop(systems.peer_clients, count, celery_submit(LEDGER_QUERY))
        await systems.results.wait_for(set(load.sent_at), 60.0)


async def _rounds(systems: Systems, options: Options) -> list[dict[str, Any]]:
    rounds: list[dict[str, Any]] = []
    measures: list[tuple[str, Callable[[Systems, Sizes], Any]]] = [("asyncgate", _asyncgate_round)]
    if systems.peer is not None:
        measures.append(("celery", _peer_round))
    for number in range(options.rounds):
        # Alternate who goes first, so a slow drift of the machine favours neither.
        order = measures if number % 2 == 0 else measures[::-1]
        measured: dict[str, Any] = {"load_average": load_average()}
        for name, measure in order:
            _say(f"round {number + 1}/{options.rounds}: {name}")
            measured[name] = await measure(systems, options.sizes)
        rounds.append(measured)
    return rounds


async def run(options: Options) -> dict[str, Any]:
    """Start everything, measure, stop everything; the results as one document."""
    redis_binary = redis_server_binary() if options.peer else None
    skipped_peer = INSTALL_HINT if options.peer and redis_binary is None else None
    if skipped_peer:
        _say(f"the Celery + Redis peer is skipped: {skipped_peer}")
    sizes = options.sizes
    document: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine(nats_server_binary()),
        "load_average_before": load_average(),
        "rounds_requested": options.rounds,
        "sizes": sizes.__dict__,
        "sync_always": options.sync_always,
        "peer_skipped": skipped_peer or ("not requested" if not options.peer else None),
    }
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="asyncgate-bench-") as directory:
        async with contextlib.AsyncExitStack() as stack:
            _say("starting nats-server, edge, executor, projector and an idle edge")
            asyncgate = await stack.enter_async_context(
                asyncgate_stack(Path(directory) / "asyncgate", sync_always=options.sync_always)
            )
            peer: CeleryPeer | None = None
            results: DoneFeed | None = None
            peer_clients: list[LeanClient] = []
            if redis_binary is not None:
                _say("starting redis-server, the Celery worker and its endpoint")
                peer = await stack.enter_async_context(
                    celery_peer(Path(directory) / "celery", redis_binary)
                )
                results = await stack.enter_async_context(result_feed(peer.redis.url))
                peer_clients = await stack.enter_async_context(
                    http_clients(peer.base_url, sizes.clients)
                )
            systems = Systems(
                asyncgate=asyncgate,
                asyncgate_clients=await stack.enter_async_context(
                    http_clients(asyncgate.base_url, sizes.clients)
                ),
                views=await stack.enter_async_context(view_feed(asyncgate.server.url)),
                pool=await stack.enter_async_context(
                    SubscriptionPool(asyncgate.ws_url, SUBSCRIPTION_CONNECTIONS).open()
                ),
                peer=peer,
                peer_clients=peer_clients,
                results=results,
            )
            _say("raw JetStream publish ceiling")
            document["raw_publish"] = await workloads.raw_publish_ceiling(
                asyncgate.server.url, sizes
            )
            with scratch_server(Path(directory) / "scratch") as scratch:
                document["raw_publish_default_sync"] = await workloads.raw_publish_ceiling(
                    scratch.url, sizes
                )
            _say(f"asyncRequests with {sizes.history} retained operations")
            document["listing"] = await workloads.listing(
                asyncgate, systems.asyncgate_clients, sizes
            )
            _say("warming up")
            await _warm_up(systems)
            document["rounds"] = await _rounds(systems, options)
            _say(f"edge memory with {sizes.subscriptions} subscriptions")
            document["edge_memory"] = await workloads.edge_memory(
                asyncgate, systems.asyncgate_clients, systems.views, sizes
            )
            document["idle_edge_identified"] = asyncgate.idle_edge_cid is not None
            _say("stopping")
    document["load_average_after"] = load_average()
    document["seconds"] = time.perf_counter() - began
    return document
