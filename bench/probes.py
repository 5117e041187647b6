"""What the bench reads from the machine: CPU seconds and memory per process from /proc, the
load average, the machine's description, a nats-server's connection counters, percentiles."""

import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx

_CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
# A process tree deeper than this is not one the bench started (celery: worker, pool children).
MAX_TREE_DEPTH: Final = 4


def percentile(samples: list[float], q: float) -> float:
    """The nearest-rank ``q``-th percentile of ``samples`` (NaN when there are none)."""
    if not samples:
        return math.nan
    ordered = sorted(samples)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def median(values: list[float]) -> float:
    """The median of ``values`` ignoring NaNs (NaN when none is left)."""
    kept = sorted(value for value in values if not math.isnan(value))
    if not kept:
        return math.nan
    middle = len(kept) // 2
    return kept[middle] if len(kept) % 2 else (kept[middle - 1] + kept[middle]) / 2


def process_cpu_s(pid: int) -> float:
    """User plus system CPU seconds used so far by process ``pid`` (0.0 once it is gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    except OSError:
        return 0.0
    # Fields after the parenthesised command name start at field 3; utime and stime are 14, 15.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS


def process_rss_bytes(pid: int) -> int:
    """Resident memory of process ``pid`` now, from /proc (0 once it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def descendants(pid: int) -> list[int]:
    """``pid`` and its children, grandchildren... (a celery worker's pool processes)."""
    found, frontier = [pid], [pid]
    for _ in range(MAX_TREE_DEPTH):
        children: list[int] = []
        for parent in frontier:
            path = Path(f"/proc/{parent}/task/{parent}/children")
            try:
                children += [int(child) for child in path.read_text().split()]
            except OSError:
                continue
        if not children:
            break
        found += children
        frontier = children
    return found


@dataclass(frozen=True)
class CpuSnapshot:
    """CPU seconds used so far by each named group of processes, at one wall-clock moment."""

    wall: float
    cpu_s: dict[str, float]

    @classmethod
    def take(cls, groups: Mapping[str, list[int]]) -> "CpuSnapshot":
        """Now, for each group name and its pids."""
        cpu = {name: sum(process_cpu_s(pid) for pid in pids) for name, pids in groups.items()}
        return cls(time.perf_counter(), cpu)

    def since(self, start: "CpuSnapshot") -> dict[str, float]:
        """CPU seconds each group used between ``start`` and this snapshot."""
        return {name: used - start.cpu_s.get(name, 0.0) for name, used in self.cpu_s.items()}


def load_average() -> tuple[float, float, float]:
    """The 1, 5 and 15 minute load averages."""
    return os.getloadavg()


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (the platform's word for it elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine(nats_server: str) -> dict[str, Any]:
    """What the figures were measured on: CPU, cores, memory, OS, Python, nats-server."""
    version = subprocess.run(  # noqa: S603 (the environment's own nats-server binary)
        [nats_server, "--version"], capture_output=True, text=True, check=False, timeout=10
    ).stdout.strip()
    meminfo = Path("/proc/meminfo")
    total_kb = 0
    if meminfo.exists():
        first = meminfo.read_text().splitlines()[0].split()
        total_kb = int(first[1])
    return {
        "cpu": cpu_model(),
        "cores": os.cpu_count() or 0,
        "memory_gb": round(total_kb / 1024 / 1024, 1),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "nats_server": version,
    }


def connections_by_cid(monitor_url: str) -> dict[int, dict[str, Any]]:
    """nats-server's open client connections (its /connz monitoring endpoint), by cid."""
    response = httpx.get(f"{monitor_url}/connz", params={"limit": 4096}, timeout=5.0)
    response.raise_for_status()
    return {conn["cid"]: conn for conn in response.json().get("connections") or []}


def stream_last_sequences(monitor_url: str) -> dict[str, int]:
    """Each stream's last sequence (how many messages it has stored, ever) from nats-server's
    /jsz monitoring endpoint, by stream name; key-value buckets are the streams ``KV_<bucket>``."""
    response = httpx.get(
        f"{monitor_url}/jsz", params={"streams": "true", "limit": 1024}, timeout=5.0
    )
    response.raise_for_status()
    sequences: dict[str, int] = {}
    for account in response.json().get("account_details") or []:
        for stream in account.get("stream_detail") or []:
            sequences[stream["name"]] = int(stream["state"]["last_seq"])
    return sequences
