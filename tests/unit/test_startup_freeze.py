"""Who freezes the garbage collector's view of start-up objects: a service in its own process,
never a program that starts one inside itself (as the tests do)."""

import subprocess
import sys
import textwrap

from tests.support.processes import REPO_ROOT

FREEZE_COUNT_AFTER_STARTUP = textwrap.dedent(
    """
    import gc
    import sys
    from services.common import runtime

    if sys.argv[1] == "own-process":
        runtime.freeze_at_startup()
    runtime.freeze_startup_objects()
    print(gc.get_freeze_count())
    """
)


def _frozen_after_startup(mode: str) -> int:
    finished = subprocess.run(
        [sys.executable, "-c", FREEZE_COUNT_AFTER_STARTUP, mode],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(finished.stdout)


def test_a_service_in_its_own_process_freezes_its_startup_objects() -> None:
    assert _frozen_after_startup("own-process") > 10_000


def test_a_service_started_inside_another_program_leaves_its_collector_alone() -> None:
    assert _frozen_after_startup("embedded") == 0
