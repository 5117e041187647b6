"""Configuration from the environment."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from services.common.settings import (
    ConfigurationError,
    Settings,
    documented_variables,
    is_secret,
    load_settings,
)


def test_defaults_keep_results_96_hours_and_the_stream_longer() -> None:
    settings = Settings.from_env({})

    assert settings.result_ttl_s == 96 * 3600
    assert settings.stream_max_age_s > settings.result_ttl_s
    assert settings.http_port == 8000


def test_variables_override_defaults() -> None:
    settings = Settings.from_env(
        {"ASYNCGATE_HTTP_PORT": "9000", "ASYNCGATE_RESULT_TTL_HOURS": "1.5"}
    )

    assert settings.http_port == 9000
    assert settings.result_ttl_s == 5400


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ASYNCGATE_HTTP_PORT", "eighty"),
        ("ASYNCGATE_EXECUTOR_CONCURRENCY", "0"),
        ("ASYNCGATE_RESULT_TTL_HOURS", "-1"),
        ("ASYNCGATE_ACCESS_LOG", "maybe"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=name):
        Settings.from_env({name: value})


def test_every_setting_has_a_documented_variable() -> None:
    names = [name for name, _ in documented_variables()]

    assert all(name.startswith("ASYNCGATE_") for name in names)
    assert len(names) == len(set(names))


def test_a_cluster_is_given_as_comma_separated_servers() -> None:
    settings = Settings.from_env(
        {"ASYNCGATE_NATS_URL": "nats://a:4222, nats://b:4222 ,nats://c:4222"}
    )

    assert settings.nats_servers == ["nats://a:4222", "nats://b:4222", "nats://c:4222"]
    assert Settings.from_env({}).nats_servers == ["nats://127.0.0.1:4222"]


@pytest.mark.parametrize("value", ["", "nats://a:4222,,nats://b:4222", "nats://a:4222,"])
def test_an_empty_server_in_the_list_is_refused(value: str) -> None:
    with pytest.raises(ConfigurationError, match="ASYNCGATE_NATS_URL"):
        Settings.from_env({"ASYNCGATE_NATS_URL": value})


def test_the_readme_documents_every_variable() -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")

    missing = [name for name, _ in documented_variables() if name not in readme]

    assert missing == []


@pytest.mark.parametrize(("value", "expected"), [("1", True), ("On", True), ("false", False)])
def test_the_access_log_is_off_unless_asked_for(value: str, expected: bool) -> None:
    assert Settings.from_env({}).access_log is False
    assert Settings.from_env({"ASYNCGATE_ACCESS_LOG": value}).access_log is expected


def test_the_environment_wins_over_the_env_file_which_wins_over_defaults(tmp_path: Path) -> None:
    env_file = tmp_path / "local.env"
    env_file.write_text(
        "ASYNCGATE_HTTP_PORT=9100\n"
        "ASYNCGATE_MAX_DEPTH=20\n"
        "# compose's per-service passwords share the prefix and name no setting\n"
        "ASYNCGATE_EDGE_NATS_PASSWORD=compose-only\n"
    )

    loaded = load_settings({"ASYNCGATE_ENV_FILE": str(env_file), "ASYNCGATE_MAX_DEPTH": "25"})

    assert (loaded.settings.http_port, loaded.origins["http_port"]) == (9100, ".env file")
    assert (loaded.settings.max_depth, loaded.origins["max_depth"]) == (25, "environment")
    assert (loaded.settings.max_tokens, loaded.origins["max_tokens"]) == (2000, "default")


def test_a_missing_env_file_or_a_bad_value_in_it_names_the_variable(tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere.env")
    bad = tmp_path / "bad.env"
    bad.write_text("ASYNCGATE_REPLICAS=0\n")

    with pytest.raises(ConfigurationError, match=r"ASYNCGATE_ENV_FILE=.*no such file"):
        Settings.from_env({"ASYNCGATE_ENV_FILE": missing})
    with pytest.raises(ConfigurationError, match=r"ASYNCGATE_REPLICAS='0': .*greater than 0"):
        Settings.from_env({"ASYNCGATE_ENV_FILE": str(bad)})


def test_secrets_are_never_shown_even_in_errors() -> None:
    settings = Settings.from_env(
        {"ASYNCGATE_JWT_SECRET": "s3cret-jwt", "ASYNCGATE_NATS_PASSWORD": "s3cret-nats"}
    )

    assert settings.jwt_secret.get_secret_value() == "s3cret-jwt"
    assert "s3cret" not in repr(settings) + str(settings) + settings.model_dump_json()
    assert is_secret("nats_token")
    assert not is_secret("nats_user")
    # No string is a bad secret; a value of another type stands in for one that is refused.
    with pytest.raises(ConfigurationError, match="ASYNCGATE_NATS_TOKEN") as refused:
        Settings.from_env({"ASYNCGATE_NATS_TOKEN": ["s3cret-token"]})  # type: ignore[dict-item]
    assert "s3cret" not in str(refused.value)


def test_settings_built_in_code_read_no_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASYNCGATE_HTTP_PORT", "1234")

    assert Settings().http_port == 8000
    assert Settings.from_env().http_port == 1234
    assert Settings.from_env().replace(max_depth=3).http_port == 1234


def test_replace_checks_the_changes() -> None:
    changed = Settings().replace(jwt_secret="x" * 40, max_depth="7")

    assert changed.jwt_secret.get_secret_value() == "x" * 40
    assert changed.max_depth == 7
    with pytest.raises(ValidationError):
        Settings().replace(max_depth=0)
    with pytest.raises(ValidationError):
        Settings().replace(no_such_setting=1)


def test_an_empty_path_variable_means_unset() -> None:
    assert Settings.from_env({"ASYNCGATE_JWT_JWKS_FILE": ""}).jwt_jwks_file is None
