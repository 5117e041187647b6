"""The asyncgate command as an operator meets it: bad configuration stops start-up, clearly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest


def run_cli(*arguments: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run ``asyncgate`` with only the given ASYNCGATE_* variables."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCGATE_")}
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *arguments],
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("service", ["edge", "executor"])
def test_a_bad_actions_file_stops_start_up_naming_the_line(tmp_path: Path, service: str) -> None:
    (tmp_path / "actions.graphql").write_text("type Mutation {\n  go(n: Int!): Boolean\n}\n")
    actions = tmp_path / "actions.yaml"
    actions.write_text("actions:\n  - name: go\n    definition:\n      handler: ftp://nope\n")

    finished = run_cli(service, env={"ASYNCGATE_ACTIONS_FILE": str(actions)})

    assert finished.returncode == 2
    assert f"{actions}:4: handler of go must be an http(s) URL" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_a_bad_setting_names_the_variable() -> None:
    finished = run_cli("edge", env={"ASYNCGATE_HTTP_PORT": "eighty"})

    assert finished.returncode == 2
    assert "ASYNCGATE_HTTP_PORT='eighty'" in finished.stderr


def test_an_unknown_target_schema_is_refused() -> None:
    finished = run_cli("executor", env={"ASYNCGATE_TARGET_SCHEMA": "nowhere.module:schema"})

    assert finished.returncode == 2
    assert "cannot load target schema 'nowhere.module:schema'" in finished.stderr
