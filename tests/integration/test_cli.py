"""The asyncgate command as an operator meets it: bad configuration stops start-up, clearly."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from services.common.settings import Settings
from services.edge.auth import Authenticator


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


def test_token_prints_a_token_the_edge_accepts() -> None:
    secret = "cli-test-secret-long-enough-for-hs256!!"

    printed = run_cli(
        "token", "--tenant", "acme", "--user", "alice", env={"ASYNCGATE_JWT_SECRET": secret}
    )
    refused = run_cli("token", "--tenant", "acme", "--user", "alice", env={})

    assert printed.returncode == 0
    principal = Authenticator(Settings(jwt_secret=secret)).from_headers(
        {"Authorization": f"Bearer {printed.stdout.strip()}"}
    )
    assert (principal.tenant_id, principal.user_id) == ("acme", "alice")
    assert refused.returncode == 2
    assert "ASYNCGATE_JWT_SECRET is not set" in refused.stderr


def test_api_key_prints_a_key_and_an_entry_that_accepts_it(tmp_path: Path) -> None:
    printed = run_cli("api-key", "--tenant", "acme", "--user", "bot", env={})
    key = printed.stdout.splitlines()[0].rsplit(" ", 1)[1]
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("keys:\n" + "\n".join(printed.stdout.splitlines()[2:]) + "\n")

    principal = Authenticator(Settings(api_keys_file=keys_file)).from_headers({"x-api-key": key})

    assert (principal.tenant_id, principal.user_id) == ("acme", "bot")
    assert key not in keys_file.read_text()


def test_the_edge_refuses_to_serve_anonymous_callers_off_loopback() -> None:
    finished = run_cli("edge", env={"ASYNCGATE_HTTP_HOST": "0.0.0.0"})

    assert finished.returncode == 2
    assert "no authentication is configured" in finished.stderr
