"""The asyncgate command as an operator meets it: bad configuration stops start-up, clearly."""

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from nats.js import JetStreamContext
from nats.js.api import SubjectTransform

from contracts.names import REQUESTS_STREAM
from services.common.nats_server import free_port
from services.common.settings import Settings, documented_variables
from services.edge.auth import Authenticator
from tests.conftest import NatsServer
from tests.support.processes import ServiceProcess


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


def test_config_shows_each_value_and_where_it_came_from_with_secrets_masked(
    tmp_path: Path,
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("ASYNCGATE_HTTP_PORT=9100\nASYNCGATE_NATS_PASSWORD=from-the-file\n")
    env = {
        "ASYNCGATE_ENV_FILE": str(env_file),
        "ASYNCGATE_MAX_DEPTH": "25",
        "ASYNCGATE_JWT_SECRET": "a-secret-that-must-never-be-printed",
    }

    as_json = run_cli("config", "--json", env=env)
    as_text = run_cli("config", env=env)

    assert as_json.returncode == as_text.returncode == 0, as_json.stderr + as_text.stderr
    shown = json.loads(as_json.stdout)
    assert shown["ASYNCGATE_HTTP_PORT"] == {"value": 9100, "source": ".env file"}
    assert shown["ASYNCGATE_MAX_DEPTH"] == {"value": 25, "source": "environment"}
    assert shown["ASYNCGATE_NATS_URL"] == {"value": "nats://127.0.0.1:4222", "source": "default"}
    assert shown["ASYNCGATE_JWT_SECRET"] == {"value": "********", "source": "environment"}
    assert shown["ASYNCGATE_NATS_PASSWORD"] == {"value": "********", "source": ".env file"}
    assert shown["ASYNCGATE_NATS_TOKEN"] == {"value": "", "source": "default"}
    assert sorted(shown) == sorted(name for name, _ in documented_variables())
    assert re.search(r"^ASYNCGATE_MAX_DEPTH +25 +environment$", as_text.stdout, re.MULTILINE)
    assert re.search(r"^ASYNCGATE_JWT_SECRET +\*{8} +environment$", as_text.stdout, re.MULTILINE)
    for output in (as_json.stdout, as_text.stdout):
        assert "must-never-be-printed" not in output
        assert "from-the-file" not in output


def test_a_bad_setting_names_the_variable() -> None:
    finished = run_cli("edge", env={"ASYNCGATE_HTTP_PORT": "eighty"})

    assert finished.returncode == 2
    assert "ASYNCGATE_HTTP_PORT='eighty'" in finished.stderr


def test_an_unknown_target_schema_is_refused() -> None:
    finished = run_cli("executor", env={"ASYNCGATE_TARGET_SCHEMA": "nowhere.module:schema"})

    assert finished.returncode == 2
    assert "cannot load target schema 'nowhere.module:schema'" in finished.stderr


async def test_token_prints_a_token_the_edge_accepts() -> None:
    secret = "cli-test-secret-long-enough-for-hs256!!"

    printed = run_cli(
        "token", "--tenant", "acme", "--user", "alice", env={"ASYNCGATE_JWT_SECRET": secret}
    )
    refused = run_cli("token", "--tenant", "acme", "--user", "alice", env={})

    assert printed.returncode == 0
    principal = await Authenticator(Settings(jwt_secret=secret)).from_headers(
        {"Authorization": f"Bearer {printed.stdout.strip()}"}
    )
    assert (principal.tenant_id, principal.user_id) == ("acme", "alice")
    assert refused.returncode == 2
    assert "ASYNCGATE_JWT_SECRET is not set" in refused.stderr


async def test_api_key_prints_a_key_and_an_entry_that_accepts_it(tmp_path: Path) -> None:
    printed = run_cli("api-key", "--tenant", "acme", "--user", "bot", env={})
    key = printed.stdout.splitlines()[0].rsplit(" ", 1)[1]
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text("keys:\n" + "\n".join(printed.stdout.splitlines()[2:]) + "\n")

    principal = await Authenticator(Settings(api_keys_file=keys_file)).from_headers(
        {"x-api-key": key}
    )

    assert (principal.tenant_id, principal.user_id) == ("acme", "bot")
    assert key not in keys_file.read_text()


def test_the_edge_refuses_to_serve_anonymous_callers_off_loopback() -> None:
    finished = run_cli("edge", env={"ASYNCGATE_HTTP_HOST": "0.0.0.0"})

    assert finished.returncode == 2
    assert "no authentication is configured" in finished.stderr


@pytest.mark.nats
def test_services_refuse_to_start_until_nats_is_provisioned_as_their_settings_say(
    nats_server: NatsServer,
) -> None:
    env = {"ASYNCGATE_NATS_URL": nats_server.url, "ASYNCGATE_HTTP_PORT": str(free_port())}

    refusals = [run_cli(service, env=env) for service in ("edge", "executor", "projector")]
    first = run_cli("provision", env=env)
    again = run_cli("provision", env=env)
    longer = env | {"ASYNCGATE_RESULT_TTL_HOURS": "200"}
    mismatched = run_cli("projector", env=longer)
    updated = run_cli("provision", env=longer)

    for unprovisioned in refusals:
        assert unprovisioned.returncode == 78, unprovisioned.stderr
        assert "ASYNCGATE_OPERATIONS does not exist" in unprovisioned.stderr
        assert "run `asyncgate provision`" in unprovisioned.stderr
    assert first.returncode == 0, first.stderr
    assert "stream ASYNCGATE_OPERATIONS: created" in first.stdout
    assert "stream ASYNCGATE_REQUESTS: created" in first.stdout
    assert "consumer asyncgate-executor on ASYNCGATE_REQUESTS: ready" in first.stdout
    assert "consumer asyncgate-projector on ASYNCGATE_OPERATIONS: ready" in first.stdout
    assert "stream ASYNCGATE_OPERATIONS: as configured" in again.stdout
    # The results bucket: an Object Store kept as long as the views, provisioned the same way.
    assert "stream OBJ_asyncgate_results: created" in first.stdout
    assert "stream OBJ_asyncgate_results: as configured" in again.stdout
    assert "stream OBJ_asyncgate_results: updated" in updated.stdout
    assert mismatched.returncode == 78
    assert "KV_asyncgate_operations has max_age 345600.0 s, not 720000.0 s" in mismatched.stderr
    assert "bucket asyncgate_operations: updated" in updated.stdout
    # Each refusal is its one line, without a traceback (the edge's through uvicorn too).
    assert all("Traceback" not in finished.stderr for finished in [*refusals, mismatched])


@pytest.mark.nats
async def test_a_stream_changed_behind_asyncgates_back_stops_the_services_until_provisioned(
    nats_server: NatsServer, js: JetStreamContext
) -> None:
    # An admin, or an attacker with the rights, adds a transform that rewrites requests into
    # completions: every subject permission would be bypassed.
    info = await js.stream_info(REQUESTS_STREAM)
    info.config.subject_transform = SubjectTransform(
        src="ops.events.*.*.requested", dest="ops.events.{{wildcard(1)}}.{{wildcard(2)}}.completed"
    )
    await js.update_stream(info.config)
    env = {"ASYNCGATE_NATS_URL": nats_server.url}

    refused = run_cli("executor", env=env)
    repaired = run_cli("provision", env=env)

    assert refused.returncode == 78
    assert "ASYNCGATE_REQUESTS has a subject_transform" in refused.stderr
    assert "stream ASYNCGATE_REQUESTS: updated" in repaired.stdout
    assert (await js.stream_info(REQUESTS_STREAM)).config.subject_transform is None


@pytest.mark.nats
@pytest.mark.parametrize("access_log", [None, "1"])
async def test_the_edge_logs_requests_only_when_asked_to(
    settings: Settings, tmp_path: Path, access_log: str | None
) -> None:
    env = {"ASYNCGATE_NATS_URL": settings.nats_url, "ASYNCGATE_HTTP_PORT": str(free_port())}
    if access_log is not None:
        env["ASYNCGATE_ACCESS_LOG"] = access_log
    with ServiceProcess("edge", env, tmp_path) as edge:
        await edge.wait_ready()
        async with httpx.AsyncClient(base_url=edge.base_url) as client:
            answer = await client.post("/graphql", json={"query": "{ __typename }"})
        edge.stop()
        log = edge.log_text()

    assert answer.status_code == 200
    assert ("POST /graphql" in log) == (access_log is not None), log


@pytest.mark.nats
@pytest.mark.parametrize("service", ["executor", "projector"])
def test_a_taken_metrics_port_stops_start_up_in_one_line(
    nats_server: NatsServer, js: JetStreamContext, service: str
) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        variable = f"ASYNCGATE_{service.upper()}_METRICS_PORT"
        env = {"ASYNCGATE_NATS_URL": nats_server.url, variable: str(port)}

        refused = run_cli(service, env=env)

    assert refused.returncode == 69, refused.stderr
    assert f"{service} will not start: cannot serve metrics on 127.0.0.1:{port}" in refused.stderr
    assert "Traceback" not in refused.stderr
