"""Configuration from ASYNCGATE_* environment variables (README lists them all)."""

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Final


class ConfigurationError(ValueError):
    """An ASYNCGATE_* variable has a value that cannot be used."""


def _positive_float(value: str) -> float:
    number = float(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _non_negative_int(value: str) -> int:
    number = int(value)
    if number < 0:
        raise ValueError("must not be negative")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError("must be at least 1")
    return number


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


def _flag(value: str) -> bool:
    word = value.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ValueError("expected 1, true, yes or on; or 0, false, no or off")
    return word in _TRUE


def _server_list(value: str) -> str:
    servers = [server.strip() for server in value.split(",")]
    if not all(servers):
        raise ValueError("expected one NATS URL, or several separated by commas")
    return ",".join(servers)


def _optional_path(value: str) -> Path | None:
    return Path(value) if value else None


def _setting(env: str, default: Any, parse: Callable[[str], Any] = str) -> Any:
    return field(default=default, metadata={"env": env, "parse": parse})


@dataclass(frozen=True)
class Settings:
    """Every knob of asyncgate. Build it with ``Settings.from_env()``."""

    # One server, or several separated by commas (the nodes of a cluster).
    nats_url: str = _setting("ASYNCGATE_NATS_URL", "nats://127.0.0.1:4222", _server_list)
    http_host: str = _setting("ASYNCGATE_HTTP_HOST", "127.0.0.1")
    http_port: int = _setting("ASYNCGATE_HTTP_PORT", 8000, int)
    # A log line per request costs the edge about 5% of a submit's CPU; opt in where wanted.
    access_log: bool = _setting("ASYNCGATE_ACCESS_LOG", False, _flag)
    target_schema: str = _setting("ASYNCGATE_TARGET_SCHEMA", "examples.ledger.schema:schema")
    result_ttl_hours: float = _setting("ASYNCGATE_RESULT_TTL_HOURS", 96.0, _positive_float)
    # The stream must outlive the view so the view can always be rebuilt from it.
    stream_extra_hours: float = _setting("ASYNCGATE_STREAM_EXTRA_HOURS", 24.0, _positive_float)
    replicas: int = _setting("ASYNCGATE_REPLICAS", 1, _positive_int)
    executor_concurrency: int = _setting("ASYNCGATE_EXECUTOR_CONCURRENCY", 256, _positive_int)
    executor_ack_wait_s: float = _setting("ASYNCGATE_EXECUTOR_ACK_WAIT_S", 30.0, _positive_float)
    executor_max_attempts: int = _setting("ASYNCGATE_EXECUTOR_MAX_ATTEMPTS", 4, _positive_int)
    operation_timeout_s: float = _setting("ASYNCGATE_OPERATION_TIMEOUT_S", 3600.0, _positive_float)
    projector_concurrency: int = _setting("ASYNCGATE_PROJECTOR_CONCURRENCY", 16, _positive_int)
    projector_ack_wait_s: float = _setting("ASYNCGATE_PROJECTOR_ACK_WAIT_S", 10.0, _positive_float)
    projector_max_deliver: int = _setting("ASYNCGATE_PROJECTOR_MAX_DELIVER", 10, _positive_int)
    shutdown_grace_s: float = _setting("ASYNCGATE_SHUTDOWN_GRACE_S", 10.0, _positive_float)
    data_dir: Path = _setting("ASYNCGATE_DATA_DIR", Path(".asyncgate"), Path)
    max_active_per_user: int = _setting("ASYNCGATE_MAX_ACTIVE_PER_USER", 10, _non_negative_int)
    min_start_interval_s: float = _setting("ASYNCGATE_MIN_START_INTERVAL_S", 5.0, _positive_float)
    max_query_bytes: int = _setting("ASYNCGATE_MAX_QUERY_BYTES", 32 * 1024, _positive_int)
    max_variables_bytes: int = _setting("ASYNCGATE_MAX_VARIABLES_BYTES", 64 * 1024, _positive_int)
    max_depth: int = _setting("ASYNCGATE_MAX_DEPTH", 15, _positive_int)
    max_aliases: int = _setting("ASYNCGATE_MAX_ALIASES", 30, _positive_int)
    max_tokens: int = _setting("ASYNCGATE_MAX_TOKENS", 2000, _positive_int)
    max_body_bytes: int = _setting("ASYNCGATE_MAX_BODY_BYTES", 256 * 1024, _positive_int)
    max_header_bytes: int = _setting("ASYNCGATE_MAX_HEADER_BYTES", 32 * 1024, _positive_int)
    jwt_secret: str = _setting("ASYNCGATE_JWT_SECRET", "")
    jwt_public_key_file: Path | None = _setting(
        "ASYNCGATE_JWT_PUBLIC_KEY_FILE", None, _optional_path
    )
    jwt_jwks_file: Path | None = _setting("ASYNCGATE_JWT_JWKS_FILE", None, _optional_path)
    jwt_algorithms: str = _setting("ASYNCGATE_JWT_ALGORITHMS", "")
    jwt_issuer: str = _setting("ASYNCGATE_JWT_ISSUER", "")
    jwt_audience: str = _setting("ASYNCGATE_JWT_AUDIENCE", "")
    jwt_user_claim: str = _setting("ASYNCGATE_JWT_USER_CLAIM", "sub")
    jwt_tenant_claim: str = _setting("ASYNCGATE_JWT_TENANT_CLAIM", "tenant")
    jwt_claims_namespace: str = _setting(
        "ASYNCGATE_JWT_CLAIMS_NAMESPACE", "https://hasura.io/jwt/claims"
    )
    api_keys_file: Path | None = _setting("ASYNCGATE_API_KEYS_FILE", None, _optional_path)
    nats_user: str = _setting("ASYNCGATE_NATS_USER", "")
    nats_password: str = _setting("ASYNCGATE_NATS_PASSWORD", "")
    nats_token: str = _setting("ASYNCGATE_NATS_TOKEN", "")
    nats_nkey_seed_file: Path | None = _setting(
        "ASYNCGATE_NATS_NKEY_SEED_FILE", None, _optional_path
    )
    nats_creds_file: Path | None = _setting("ASYNCGATE_NATS_CREDS_FILE", None, _optional_path)
    nats_tls_ca_file: Path | None = _setting("ASYNCGATE_NATS_TLS_CA_FILE", None, _optional_path)
    nats_tls_cert_file: Path | None = _setting("ASYNCGATE_NATS_TLS_CERT_FILE", None, _optional_path)
    nats_tls_key_file: Path | None = _setting("ASYNCGATE_NATS_TLS_KEY_FILE", None, _optional_path)
    actions_file: Path | None = _setting("ASYNCGATE_ACTIONS_FILE", None, _optional_path)
    demo_handler_port: int = _setting("ASYNCGATE_DEMO_HANDLER_PORT", 8001, int)
    # Prometheus /metrics of the services without HTTP of their own (the edge serves it on its
    # HTTP port); 0: not served. Replicas on one host need a port each.
    executor_metrics_port: int = _setting("ASYNCGATE_EXECUTOR_METRICS_PORT", 0, _non_negative_int)
    projector_metrics_port: int = _setting("ASYNCGATE_PROJECTOR_METRICS_PORT", 0, _non_negative_int)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting from ``environ`` (default: the process environment)."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for setting in fields(cls):
            name = setting.metadata["env"]
            if name not in environ:
                continue
            try:
                values[setting.name] = setting.metadata["parse"](environ[name])
            except ValueError as error:
                raise ConfigurationError(f"{name}={environ[name]!r}: {error}") from None
        return cls(**values)

    @property
    def nats_servers(self) -> list[str]:
        """The NATS servers to connect to (any of them will do; the client fails over)."""
        return [server.strip() for server in self.nats_url.split(",") if server.strip()]

    @property
    def result_ttl_s(self) -> float:
        """How long a view is kept after its last change, in seconds."""
        return self.result_ttl_hours * 3600

    @property
    def stream_max_age_s(self) -> float:
        """How long events are kept in the stream, in seconds."""
        return (self.result_ttl_hours + self.stream_extra_hours) * 3600


def documented_variables() -> list[tuple[str, str]]:
    """(variable, default) for every setting, for README and ``asyncgate config``."""
    return [(f.metadata["env"], str(f.default)) for f in fields(Settings)]
