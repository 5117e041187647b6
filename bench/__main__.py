"""``python -m bench`` (``./dev bench``): asyncgate against a Celery + Redis peer and the same
query answered synchronously, every service a process of its own; writes docs/performance.md.

``--smoke`` runs a few hundred operations in one round and writes nothing unless
``--output-dir`` is given: the test suite runs it so the bench cannot rot.
"""

import argparse
import signal
import sys
from pathlib import Path
from types import FrameType

import uvloop

from bench import report
from bench.rounds import Options, run
from bench.workloads import Sizes
from tests.support.processes import REPO_ROOT

FULL = Sizes(
    clients=32,
    # Sized so that five rounds take about 10 minutes on the loaded 2-core development machine
    # (a first run with 3,000 W0 requests, 6 s per rate, a 100 ops/s rate and 30,000 raw
    # publishes took 17). W1, W2, the subscriptions and the history are issue 9's sizes.
    w0_requests=2000,
    w1_operations=1000,
    open_loop_s=4.0,
    rates=(50.0, 200.0),
    w2_operations=2000,
    subscriptions=1000,
    history=10_000,
    list_calls=20,
    raw_publishes=10_000,
    drain_timeout_s=120.0,
)
SMOKE = Sizes(
    clients=8,
    w0_requests=100,
    w1_operations=100,
    open_loop_s=1.0,
    rates=(50.0, 200.0),
    w2_operations=64,
    subscriptions=100,
    history=300,
    list_calls=3,
    raw_publishes=1000,
    drain_timeout_s=30.0,
)


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def parse(argv: list[str] | None) -> tuple[Options, Path | None]:
    """Options and where to write the report (None: nowhere)."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--smoke", action="store_true", help="a short run; writes no docs")
    parser.add_argument("--rounds", type=_positive, help="interleaved rounds (default 5, smoke 1)")
    parser.add_argument("--clients", type=_positive, help="closed-loop clients (default 32)")
    parser.add_argument("--operations", type=_positive, help="W1 operations per round")
    parser.add_argument("--slow-reports", type=_positive, help="W2 operations per round")
    parser.add_argument("--open-loop-seconds", type=float, help="open-loop seconds per rate")
    parser.add_argument("--subscriptions", type=_positive, help="for the edge's memory")
    parser.add_argument("--history", type=_positive, help="retained operations for listing")
    parser.add_argument("--no-peer", action="store_true", help="skip the Celery + Redis peer")
    parser.add_argument(
        "--no-sync-always",
        action="store_true",
        help="run nats-server with its default sync_interval instead of `always`",
    )
    parser.add_argument("--output-dir", type=Path, help="where to write (default docs/)")
    arguments = parser.parse_args(argv)
    base = SMOKE if arguments.smoke else FULL
    overrides = {
        "clients": arguments.clients,
        "w1_operations": arguments.operations,
        "w2_operations": arguments.slow_reports,
        "open_loop_s": arguments.open_loop_seconds,
        "subscriptions": arguments.subscriptions,
        "history": arguments.history,
    }
    sizes = Sizes(**base.__dict__ | {k: v for k, v in overrides.items() if v is not None})
    rounds = arguments.rounds or (1 if arguments.smoke else 5)
    options = Options(
        rounds=rounds,
        sizes=sizes,
        peer=not arguments.no_peer,
        sync_always=not arguments.no_sync_always,
    )
    output = arguments.output_dir or (None if arguments.smoke else REPO_ROOT / "docs")
    return options, output


def _stop_on_sigterm(signum: int, _: FrameType | None) -> None:
    # As Ctrl-C: unwinds the run, so every process it started is stopped.
    raise KeyboardInterrupt(signum)


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 0 when it ran to its end."""
    options, output = parse(argv)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        # uvloop, as the services run: the load generator shares the cores it measures.
        document = uvloop.run(run(options))
    except KeyboardInterrupt:
        print("bench: interrupted; every process it started is stopped", file=sys.stderr)
        return 130
    if output is not None:
        path = report.write(document, output)
        print(f"bench: wrote {path}")
    print(report.markdown(document, None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
