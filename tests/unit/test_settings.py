"""Configuration from the environment."""

from pathlib import Path

import pytest

from services.common.settings import ConfigurationError, Settings, documented_variables


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
