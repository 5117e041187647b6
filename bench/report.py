"""The results as docs/performance.md (figures, ratios, the issue's targets, the machine, raw
numbers per round), with the plot and the raw JSON beside it."""

import json
import math
from pathlib import Path
from typing import Any, Final

from bench.plot import plot
from bench.targets import TIMES, Rounds, figure, fmt, per_round, ratio, targets, value_at
from contracts.names import REQUESTS_STREAM, STREAM

MARKDOWN_NAME: Final = "performance.md"
PLOT_NAME: Final = "performance-latency.png"
JSON_NAME: Final = "performance.json"
ASYNCGATE_PROCESSES: Final = ("edge", "executor", "projector", "nats-server")


def _one(document: dict[str, Any], path: str, digits: int = 1) -> str:
    """A one-off (not per-round) figure of the document, formatted."""
    value = value_at(document, path)
    return fmt(float(value), digits) if isinstance(value, int | float) else "—"


def _verdict(met: bool | None) -> str:
    return {True: "met", False: "**not met**", None: "not measured"}[met]


def _main_table(document: dict[str, Any]) -> list[str]:
    rounds: Rounds = document.get("rounds", [])
    rates = document["sizes"]["rates"]
    rate = figure(rounds, "asyncgate.w1.completed_per_s")
    peer = figure(rounds, "celery.w1.completed_per_s")
    sync = figure(rounds, "asyncgate.w0.per_s")
    cpu, peer_cpu = (
        figure(rounds, "asyncgate.w1.cpu_ms_per_op_total"),
        figure(rounds, "celery.w1.cpu_ms_per_op_total"),
    )
    lines = [
        f"| figure (median of {len(rounds)} interleaved rounds) | asyncgate | Celery + Redis "
        "| sync GraphQL (W0) |",
        "|---|---|---|---|",
        f"| completed operations/s, {document['sizes']['clients']} clients "
        f"| {fmt(rate)} | {fmt(peer)} (asyncgate {ratio(rate, peer)}) "
        f"| {fmt(sync)} req/s (asyncgate {ratio(rate, sync)}) |",
        f"| CPU per operation, all processes | {fmt(cpu, 2)} ms | {fmt(peer_cpu, 2)} ms "
        f"| {fmt(figure(rounds, 'asyncgate.w0.cpu_ms_per_request_total'), 2)} ms |",
        f"| submit p50 / p99 at {document['sizes']['clients']} clients "
        f"| {fmt(figure(rounds, 'asyncgate.w1.submit.p50_ms'))} / "
        f"{fmt(figure(rounds, 'asyncgate.w1.submit.p99_ms'))} ms "
        f"| {fmt(figure(rounds, 'celery.w1.submit.p50_ms'))} / "
        f"{fmt(figure(rounds, 'celery.w1.submit.p99_ms'))} ms | — |",
    ]
    for offered in rates:
        key = f"open_{offered:g}"
        lines.append(
            f"| submit → final state p50 / p99 at {offered:g} ops/s (subscription / "
            f"result-backend feed) | {fmt(figure(rounds, f'asyncgate.{key}.p50_ms'))} / "
            f"{fmt(figure(rounds, f'asyncgate.{key}.p99_ms'))} ms "
            f"| {fmt(figure(rounds, f'celery.{key}.p50_ms'))} / "
            f"{fmt(figure(rounds, f'celery.{key}.p99_ms'))} ms | — |"
        )
    for offered in rates:
        key = f"open_{offered:g}"
        lines.append(
            f"| RUNNING visible after the started event was stored, p50 / p99 / max at "
            f"{offered:g} ops/s | {fmt(figure(rounds, f'asyncgate.{key}.running_visible_p50_ms'))}"
            f" / {fmt(figure(rounds, f'asyncgate.{key}.running_visible_p99_ms'))} / "
            f"{fmt(figure(rounds, f'asyncgate.{key}.running_visible_max_ms'))} ms | — | — |"
        )
    w2 = per_round(rounds, "asyncgate.w2.last_done_after_last_submit_s")
    known = [value for value in w2 if not math.isnan(value)]
    spread = f"{fmt(min(known), 2)}-{fmt(max(known), 2)} s" if known else "—"
    w2_median = fmt(figure(rounds, "asyncgate.w2.last_done_after_last_submit_s"), 2)
    lines += [
        f"| {document['sizes']['w2_operations']:,} {TIMES} `slowReport(0.2)`, default settings: "
        f"last done after last submit (median; range) | {w2_median} s; {spread} | — | — |",
        f"| edge memory (RSS) with {value_at(document, 'edge_memory.subscriptions')} open "
        f"subscriptions (before opening them) | {_one(document, 'edge_memory.edge_rss_mb')} MB "
        f"({_one(document, 'edge_memory.edge_rss_before_mb')} MB) | — | — |",
        f"| `asyncRequests(first: 100)` p50 / p99, {value_at(document, 'listing.retained')} "
        f"retained operations | {_one(document, 'listing.p50_ms')} / "
        f"{_one(document, 'listing.p99_ms')} ms | — | — |",
        f"| messages sent to an edge with no subscriptions while "
        f"{document['sizes']['w1_operations']:,} operations complete (bytes) "
        f"| {fmt(figure(rounds, 'asyncgate.w1.idle_edge_msgs'), 0)} "
        f"({fmt(figure(rounds, 'asyncgate.w1.idle_edge_bytes'), 0)}) | — | — |",
        f"| messages stored per completed operation in W1: the requests stream; the history "
        f"stream; every stream and bucket "
        f"| {fmt(figure(rounds, f'asyncgate.w1.stored_per_op.{REQUESTS_STREAM}'), 2)}; "
        f"{fmt(figure(rounds, f'asyncgate.w1.stored_per_op.{STREAM}'), 2)}; "
        f"{fmt(figure(rounds, 'asyncgate.w1.stored_per_op.all'), 2)} | — | — |",
        f"| the event streams' writes/s during W1: requests; history "
        f"| {fmt(figure(rounds, 'asyncgate.w1.requests_stream_writes_per_s'), 0)}; "
        f"{fmt(figure(rounds, 'asyncgate.w1.history_stream_writes_per_s'), 0)} | — | — |",
        f"| raw JetStream publishes/s from Python (nats-py `publish_async`): the same server; "
        f"a scratch server with the default sync_interval "
        f"| {fmt(float(value_at(document, 'raw_publish.per_s')), 0)}; "
        f"{fmt(float(value_at(document, 'raw_publish_default_sync.per_s')), 0)} | — | — |",
    ]
    return lines


def _cpu_table(document: dict[str, Any]) -> list[str]:
    rounds: Rounds = document.get("rounds", [])
    lines = ["| process | CPU ms per completed operation (W1, median) |", "|---|---|"]
    for name in ASYNCGATE_PROCESSES:
        value = figure(rounds, f"asyncgate.w1.cpu_ms_per_op.{name}")
        lines.append(f"| asyncgate {name} | {fmt(value, 2)} |")
    for name in ("web", "celery worker", "redis-server"):
        value = figure(rounds, f"celery.w1.cpu_ms_per_op.{name}")
        lines.append(f"| peer {name} | {fmt(value, 2)} |")
    for system in ("asyncgate", "celery"):
        value = figure(rounds, f"{system}.w1.bench_cpu_ms_per_op")
        lines.append(
            f"| the bench's load generator and feed, for {system} (not counted above) "
            f"| {fmt(value, 2)} |"
        )
    return lines


RAW_COLUMNS: Final = (
    ("W0 req/s", "asyncgate.w0.per_s"),
    ("asyncgate W1 done/s", "asyncgate.w1.completed_per_s"),
    ("Celery W1 done/s", "celery.w1.completed_per_s"),
    ("asyncgate CPU ms/op", "asyncgate.w1.cpu_ms_per_op_total"),
    ("Celery CPU ms/op", "celery.w1.cpu_ms_per_op_total"),
    ("asyncgate submit p50/p99 ms", "asyncgate.w1.submit.p50_ms|asyncgate.w1.submit.p99_ms"),
    ("Celery submit p50/p99 ms", "celery.w1.submit.p50_ms|celery.w1.submit.p99_ms"),
    ("asyncgate @50 p50/p99 ms", "asyncgate.open_50.p50_ms|asyncgate.open_50.p99_ms"),
    ("Celery @50 p50/p99 ms", "celery.open_50.p50_ms|celery.open_50.p99_ms"),
    ("asyncgate @200 p50/p99 ms", "asyncgate.open_200.p50_ms|asyncgate.open_200.p99_ms"),
    ("Celery @200 p50/p99 ms", "celery.open_200.p50_ms|celery.open_200.p99_ms"),
    (
        "RUNNING p99 @50/@200 ms",
        "asyncgate.open_50.running_visible_p99_ms|asyncgate.open_200.running_visible_p99_ms",
    ),
    ("W2 s", "asyncgate.w2.last_done_after_last_submit_s"),
    ("asyncgate slowest op W1/W2 s", "asyncgate.w1.slowest_s|asyncgate.w2.slowest_s"),
    ("Celery slowest op W1 s", "celery.w1.slowest_s"),
    ("idle edge msgs", "asyncgate.w1.idle_edge_msgs"),
    (
        "requests/history stream writes/s",
        "asyncgate.w1.requests_stream_writes_per_s|asyncgate.w1.history_stream_writes_per_s",
    ),
    ("load avg (1 min)", "load_average"),
)


def _raw_table(document: dict[str, Any]) -> list[str]:
    rounds: Rounds = document.get("rounds", [])
    lines = [
        "| round | " + " | ".join(name for name, _ in RAW_COLUMNS) + " |",
        "|---" * (len(RAW_COLUMNS) + 1) + "|",
    ]
    for number, measured in enumerate(rounds, 1):
        cells = []
        for _, paths in RAW_COLUMNS:
            parts = []
            for path in paths.split("|"):
                value = value_at(measured, path)
                if isinstance(value, list | tuple):  # the load average: the 1-minute figure
                    value = value[0]
                parts.append(fmt(float(value)) if isinstance(value, int | float) else "—")
            cells.append(" / ".join(parts))
        lines.append(f"| {number} | " + " | ".join(cells) + " |")
    return lines


METHOD: Final = """\
## How it was measured

- **Processes.** nats-server (JetStream, `sync_interval: always` as `asyncgate up` runs it,
  unless the run says otherwise), the edge, one executor and the projector each run as a
  separate process (`python -m services.cli <service>`), started with the test helpers in
  `tests/support`; authentication and per-user limits are off. A second, idle edge runs
  beside them with no client at all. The peer: the system's `redis-server` (no persistence)
  as broker and result backend, `celery worker --pool prefork -c 2`, and a Starlette endpoint
  under uvicorn that enqueues the task; the task runs the same query on the same example
  schema (`examples/ledger`). The load generator is one more Python process on the same
  2 cores, shared by both systems, so the figures include its competition for the CPU. Its
  HTTP client is a plain keep-alive HTTP/1.1 client (`bench/http_client.py`): httpx, used
  until 2026-11-30, added about 3 ms to every request and cost about 2 ms of CPU per request,
  so earlier runs' latencies and rates are not comparable with these. Since 2026-12-01 the
  load generator runs on uvloop and handles JSON with msgspec (its share per asyncgate
  operation went from about 0.17 to 0.12 ms).
- **Rounds.** Each round measures asyncgate (W0, W1, open loop at each rate, W2) and the peer
  (W1, open loop), alternating which goes first; the table gives the median over rounds and
  the raw numbers per round follow.
- **W0** sends the seed's ledger query (`{ useCompany(no: 123456) { generalLedgerAccount(first:
  5) { totalCount } } }`) to the edge's `/graphql` synchronously, 32 clients closed-loop.
- **W1** submits the same query with `asyncQuery` (the peer: `POST /submit`), 32 clients
  closed-loop, each sending its next submit when the last is answered. Completed operations/s
  is the number completed over the time from the first submit until the last completion,
  seen by the bench's own ordered consumer on the view bucket (asyncgate) or its
  `PSUBSCRIBE celery-task-meta-*` on the result backend, which Celery's Redis backend
  publishes every result on (the peer). CPU per operation is the CPU seconds
  (`/proc/<pid>/stat` utime + stime) each process used over that time, divided by the
  completed operations; for asyncgate the edge, executor, projector and nats-server (the idle
  edge is not counted, but nats-server's work for it and for the bench's feed is); for the
  peer the endpoint, the worker with its pool processes, and redis-server. W0's CPU per
  request is the same sum over W0.
- **Open loop** offers operations at a fixed rate whatever the answers (each submit on its own
  task): latency from sending the submit until the final state arrives through a GraphQL
  subscription (`asyncResult`, graphql-transport-ws, opened when the submit is answered) or,
  for the peer, until the result backend announces it.
- **RUNNING visible**: the ledger query ends within moments of starting, so its start rides on
  its ending and it never shows RUNNING (an attempt stores a started event only once it has run
  50 ms). RUNNING is measured on a side stream offered alongside at a tenth of the rate, on a
  connection of its own: `slowReport(seconds: 0.2)`. The bench follows the started events on
  the stream and the view bucket with ordered consumers and takes both stored messages'
  timestamps, which nats-server sets when it stores them (one clock, no skew): the delay is
  from the started event's timestamp to the first stored view of that operation that shows it
  started (`attempts ≥ 1`: RUNNING, or already final if a projector folded several events into
  one write).
- **W2** submits the `slowReport(seconds: 0.2)` field of the example schema with default
  settings (executor concurrency as the services default) and measures from the last submit's
  answer until the last one is final in the view bucket.
- **Slowest operation** (raw numbers): in W1 and W2, the longest any one operation took from
  its submit being sent until the feed saw it done, so that one stalled operation shows however
  fast the others were.
- **Edge memory**: the executor is frozen (SIGSTOP), the operations are submitted, one
  subscription per operation is opened (100 per WebSocket, strawberry's limit), and once each
  has had its first answer the edge's VmRSS is read from `/proc/<pid>/status`; then the
  executor is thawed and the operations finish.
- **Listing**: the user's missing views are written straight into the view bucket as the
  projector writes them (the fold of requested, started, completed events), then
  `asyncRequests(first: 100)` is called one at a time.
- **Idle edge**: nats-server's monitoring endpoint (`/connz`) counts the messages it sent on
  the idle edge's connection (`out_msgs`, found as the edge connection that appeared when the
  idle edge started) during each W1.
- **Raw publish ceiling**: nats-py `publish_async` of 128-byte messages to a scratch file
  stream on the same server, every ack awaited.
- **Messages stored** per operation: each stream's last sequence (nats-server's `/jsz`) after
  W1 less before, over the completed operations; an event stream's writes/s is its share
  times the completion rate. With `sync_interval: always` nats-server syncs each message a
  stream stores to disk before it acknowledges it and stores the next, one at a time per
  stream (streams sync side by side), so no event stream's writes/s can pass the raw ceiling
  on the same server. That is why the requests and the rest of each operation's history are
  stored in two streams: in one, the submits waited in its queue behind the executor's
  endings.
"""


def markdown(document: dict[str, Any], plot_name: str | None) -> str:
    """docs/performance.md's text."""
    info = document["machine"]
    lines = [
        "# Performance",
        "",
        f"Written by `./dev bench` (`python -m bench`) on {document['started']}, "
        f"in {document['seconds']:.0f} s. Do not edit: run the bench again.",
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gb']} GB; {info['os']}; "
        f"Python {info['python']}; {info['nats_server']}. Load average (1, 5, 15 min) before: "
        f"{', '.join(f'{v:.2f}' for v in document['load_average_before'])}; after: "
        f"{', '.join(f'{v:.2f}' for v in document['load_average_after'])}. nats-server "
        f"`sync_interval: always`: {'yes' if document['sync_always'] else 'no'}.",
        "",
    ]
    if document.get("peer_skipped"):
        lines += [f"The Celery + Redis peer did not run: {document['peer_skipped']}.", ""]
    lines += [*_main_table(document), "", "## Issue 9's targets", ""]
    lines += ["| target | measured | verdict |", "|---|---|---|"]
    lines += [f"| {t.text} | {t.measured} | {_verdict(t.met)} |" for t in targets(document)]
    lines += ["", "## CPU per operation by process", "", *_cpu_table(document), ""]
    if plot_name:
        lines += [
            "## Latency against offered load",
            "",
            f"![submit → final state, p50 and p99, against offered load]({plot_name})",
            "",
        ]
    lines += [METHOD, "## Raw numbers per round", "", *_raw_table(document), ""]
    lines += [
        f"Sizes: `{json.dumps(document['sizes'])}`. Every figure of every round is in "
        f"`{JSON_NAME}` beside this file.",
        "",
    ]
    return "\n".join(lines)


def _no_nan(value: Any) -> Any:
    """``value`` with NaN (unknown) as null, so the JSON is standard."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: _no_nan(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_no_nan(item) for item in value]
    return value


def write(document: dict[str, Any], directory: Path) -> Path:
    """Write performance.md, its plot and the raw JSON under ``directory``; the .md's path."""
    directory.mkdir(parents=True, exist_ok=True)
    plotted = plot(document, directory / PLOT_NAME)
    (directory / JSON_NAME).write_text(json.dumps(_no_nan(document), indent=1) + "\n")
    path = directory / MARKDOWN_NAME
    path.write_text(markdown(document, PLOT_NAME if plotted else None))
    return path
