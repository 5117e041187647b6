"""The benchmark's smoke run (``python -m bench --smoke``): a few hundred operations through
asyncgate and the Celery + Redis peer, so the bench cannot rot. It checks that every workload
ran to its end, not how fast: the figures are the bench's to report, not a test's to assert."""

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.processes import REPO_ROOT, die_with_parent, service_env

pytestmark = [pytest.mark.e2e, pytest.mark.nats]

SMOKE_TIMEOUT_S = 100


@pytest.mark.timeout(SMOKE_TIMEOUT_S + 20)
def test_bench_smoke_run_measures_every_workload(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("the bench's peer needs redis-server: apt-get install redis-server")
    completed = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--output-dir", str(tmp_path)],
        cwd=REPO_ROOT,
        env=service_env({}),
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
        preexec_fn=die_with_parent,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    document = json.loads((tmp_path / "performance.json").read_text())
    (measured,) = document["rounds"]
    operations = document["sizes"]["w1_operations"]
    assert measured["asyncgate"]["w1"]["completed"] == operations
    assert measured["celery"]["w1"]["completed"] == operations
    assert measured["asyncgate"]["w0"]["failed"] == 0
    for rate in document["sizes"]["rates"]:
        for system in ("asyncgate", "celery"):
            assert measured[system][f"open_{rate:g}"]["failed"] == 0
        assert measured["asyncgate"][f"open_{rate:g}"]["running_visible_count"] > 0
    assert measured["asyncgate"]["w2"]["all_done"]
    # Every operation was seen done, so the slowest one's time is a real duration.
    for system, workload in (("asyncgate", "w1"), ("celery", "w1"), ("asyncgate", "w2")):
        assert 0 < measured[system][workload]["slowest_s"] < math.inf
    # Each operation stored its request in the requests stream and at least its ending in the
    # history stream.
    stored = measured["asyncgate"]["w1"]["stored_per_op"]
    assert stored["ASYNCGATE_REQUESTS"] >= 1
    assert stored["ASYNCGATE_OPERATIONS"] >= 1
    assert document["edge_memory"]["edge_rss_mb"] > 0
    assert document["listing"]["retained"] >= document["sizes"]["history"]
    assert document["idle_edge_identified"]
    report = (tmp_path / "performance.md").read_text()
    assert "## Issue 9's targets" in report
    assert "asyncgate slowest op W1/W2 s" in report
    assert (tmp_path / "performance-latency.png").stat().st_size > 0
