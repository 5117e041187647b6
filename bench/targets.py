"""Reading figures out of a run's document (medians over rounds) and issue 9's targets beside
them."""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from bench.probes import median

TIMES: Final = "\N{MULTIPLICATION SIGN}"

Rounds = list[dict[str, Any]]


def value_at(document: dict[str, Any], path: str) -> Any:
    value: Any = document
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return math.nan
        value = value[part]
    return value


def figure(rounds: Rounds, path: str) -> float:
    """The median over the rounds of the value at dotted ``path`` (NaN if none has it)."""
    values = [value_at(measured, path) for measured in rounds]
    return median([float(value) for value in values if isinstance(value, int | float)])


def per_round(rounds: Rounds, path: str) -> list[float]:
    """The value at ``path`` in each round."""
    values = [value_at(measured, path) for measured in rounds]
    return [float(value) if isinstance(value, int | float) else math.nan for value in values]


def fmt(value: float, digits: int = 1) -> str:
    """A number for a table ("—" when unknown)."""
    if math.isnan(value):
        return "—"
    return f"{value:,.{digits}f}"


def ratio(mine: float, theirs: float) -> str:
    """asyncgate's figure as a multiple of another's."""
    if math.isnan(mine) or math.isnan(theirs) or theirs == 0:
        return "—"
    return f"{mine / theirs:.2f}{TIMES}"


@dataclass(frozen=True)
class Target:
    """One of issue 9's "done when" lines and how it is checked."""

    text: str
    measured: str
    met: bool | None


def _check(value: float, test: Callable[[float], bool]) -> bool | None:
    return None if math.isnan(value) else test(value)


def targets(document: dict[str, Any]) -> list[Target]:
    """Issue 9's targets beside this run's figures."""
    rounds: Rounds = document.get("rounds", [])
    rate = figure(rounds, "asyncgate.w1.completed_per_s")
    peer = figure(rounds, "celery.w1.completed_per_s")
    sync = figure(rounds, "asyncgate.w0.per_s")
    cpu = figure(rounds, "asyncgate.w1.cpu_ms_per_op_total")
    p50 = figure(rounds, "asyncgate.open_50.p50_ms")
    p99 = figure(rounds, "asyncgate.open_50.p99_ms")
    running = figure(rounds, "asyncgate.open_50.running_visible_p99_ms")
    w2 = figure(rounds, "asyncgate.w2.last_done_after_last_submit_s")
    submit = figure(rounds, "asyncgate.w1.submit.p99_ms")
    rss = float(value_at(document, "edge_memory.edge_rss_mb"))
    listing = float(value_at(document, "listing.p50_ms"))
    idle = figure(rounds, "asyncgate.w1.idle_edge_msgs")
    operations = document["sizes"]["w1_operations"]
    return [
        Target(
            f"completed operations/s ≥ 2{TIMES} the Celery + Redis peer's",
            ratio(rate, peer),
            _check(rate / peer if peer else math.nan, lambda r: r >= 2),
        ),
        Target(
            f"completed operations/s ≥ 0.5{TIMES} the sync W0 rate",
            ratio(rate, sync),
            _check(rate / sync if sync else math.nan, lambda r: r >= 0.5),
        ),
        Target(
            "CPU per operation, all asyncgate processes ≤ 2 ms",
            f"{fmt(cpu, 2)} ms",
            _check(cpu, lambda v: v <= 2),
        ),
        Target(
            "at 50 ops/s: submit → final state p50 ≤ 10 ms, p99 ≤ 50 ms",
            f"{fmt(p50)} / {fmt(p99)} ms",
            _check(max(p50 / 10, p99 / 50), lambda v: v <= 1),
        ),
        Target(
            "at 50 ops/s: RUNNING visible ≤ 20 ms (p99) after the started event is stored",
            f"{fmt(running)} ms",
            _check(running, lambda v: v <= 20),
        ),
        Target(
            f"W2: last of {document['sizes']['w2_operations']:,} {TIMES} slowReport(0.2) done "
            "≤ 2 s "
            "after the last submit",
            f"{fmt(w2, 2)} s",
            _check(w2, lambda v: v <= 2),
        ),
        Target(
            f"submit p99 ≤ 30 ms at {document['sizes']['clients']} clients",
            f"{fmt(submit)} ms",
            _check(submit, lambda v: v <= 30),
        ),
        Target(
            f"edge memory with {value_at(document, 'edge_memory.subscriptions')} subscriptions "
            "< 150 MB",
            f"{fmt(rss)} MB",
            _check(rss, lambda v: v < 150),
        ),
        Target(
            f"asyncRequests(first: 100) p50 ≤ 20 ms with {value_at(document, 'listing.retained')} "
            "retained operations",
            f"{fmt(listing)} ms",
            _check(listing, lambda v: v <= 20),
        ),
        Target(
            f"an edge with no subscriptions receives no view changes while {operations:,} "
            "operations complete",
            f"{fmt(idle, 0)} messages",
            _check(idle, lambda v: v == 0),
        ),
    ]
