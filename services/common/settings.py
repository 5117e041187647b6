"""Configuration from ASYNCGATE_* variables (README lists them all), parsed by pydantic-settings.

A variable comes from the environment or, below it, from the file ASYNCGATE_ENV_FILE names (an
``.env`` file; none unless named, so that a compose ``.env`` never changes a local stack or a
test run unasked); anything not set keeps its default. ``Settings(...)`` alone reads neither: it
is the defaults plus the values given, as tests and composition roots build it.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal, Self

from dotenv import dotenv_values
from pydantic import (
    AfterValidator,
    BeforeValidator,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from services.common.callback_urls import AllowedHosts

PREFIX: Final = "ASYNCGATE_"

Origin = Literal["default", "environment", ".env file"]


class ConfigurationError(ValueError):
    """An ASYNCGATE_* variable has a value that cannot be used."""


_TRUE: Final = frozenset({"1", "true", "yes", "on"})
_FALSE: Final = frozenset({"0", "false", "no", "off", ""})


def _flag(value: object) -> object:
    if not isinstance(value, str):
        return value
    word = value.strip().lower()
    if word not in _TRUE | _FALSE:
        raise ValueError("expected 1, true, yes or on; or 0, false, no or off")
    return word in _TRUE


def _server_list(value: str) -> str:
    servers = [server.strip() for server in value.split(",")]
    if not all(servers):
        raise ValueError("expected one NATS URL, or several separated by commas")
    return ",".join(servers)


def _host_list(value: str) -> str:
    AllowedHosts.parse(value)
    return value


def _seconds_list(value: str) -> str:
    try:
        delays = [float(item) for item in value.split(",")]
    except ValueError:
        raise ValueError("expected seconds separated by commas, like 5,300,1800") from None
    if not all(delay > 0 for delay in delays):
        raise ValueError("every delay must be a positive number of seconds")
    return value


def _empty_is_none(value: object) -> object:
    return None if value == "" else value


Flag = Annotated[bool, BeforeValidator(_flag)]
ServerList = Annotated[str, AfterValidator(_server_list)]
HostList = Annotated[str, AfterValidator(_host_list)]
SecondsList = Annotated[str, AfterValidator(_seconds_list)]
# An empty variable means "not set", as it did before a path was given.
OptionalPath = Annotated[Path | None, BeforeValidator(_empty_is_none)]


class Settings(BaseSettings):
    """Every knob of asyncgate. Build it with ``Settings.from_env()``.

    Each field ``name`` is read from the variable ``ASYNCGATE_<NAME>``.
    """

    model_config = SettingsConfigDict(frozen=True, extra="forbid", validate_default=True)

    # One server, or several separated by commas (the nodes of a cluster).
    nats_url: ServerList = "nats://127.0.0.1:4222"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    # A log line per request costs the edge about 5% of a submit's CPU; opt in where wanted.
    access_log: Flag = False
    target_schema: str = "examples.ledger.schema:schema"
    result_ttl_hours: NonNegativeFloat = 96.0
    # The stream must outlive the view so the view can always be rebuilt from it.
    stream_extra_hours: NonNegativeFloat = 24.0
    replicas: PositiveInt = 1
    executor_concurrency: PositiveInt = 256
    executor_ack_wait_s: NonNegativeFloat = 30.0
    executor_max_attempts: PositiveInt = 4
    # How often an asyncQuery operation that fails for a passing reason (its time-out) is tried
    # (1: once, as before retries existed), and the first pause between tries, doubling.
    retry_attempts: PositiveInt = 1
    retry_backoff_s: PositiveFloat = 1.0
    operation_timeout_s: NonNegativeFloat = 3600.0
    # An operation not started this long after it was queued ends EXPIRED (0: never).
    start_within_s: NonNegativeFloat = 0.0
    projector_concurrency: PositiveInt = 16
    projector_ack_wait_s: NonNegativeFloat = 10.0
    projector_max_deliver: PositiveInt = 10
    # A fresh request's QUEUED view waits this long for its operation's next event, so that a
    # quick operation's view is written once, final (0: written at once).
    projector_queued_view_delay_s: NonNegativeFloat = 0.5
    # How the view bucket is written on one server: "async" acknowledges a view write before
    # it reaches the disk (one fsync less per operation; the projector repairs what a crash
    # loses, see services/projector/view_repair.py), "default" syncs it like the stream.
    # Replicated buckets (ASYNCGATE_REPLICAS > 1) always use NATS's default.
    view_persist_mode: Literal["async", "default"] = "async"
    # At start and after each reconnect, the projector folds again the events stored this long
    # before the stream's newest one, rewriting views an async bucket lost (0: never).
    projector_view_repair_window_s: NonNegativeFloat = 30.0
    shutdown_grace_s: NonNegativeFloat = 10.0
    data_dir: Path = Path(".asyncgate")
    max_active_per_user: NonNegativeInt = 10
    min_start_interval_s: NonNegativeFloat = 5.0
    max_query_bytes: PositiveInt = 32 * 1024
    max_variables_bytes: PositiveInt = 64 * 1024
    max_depth: PositiveInt = 15
    max_aliases: PositiveInt = 30
    max_tokens: PositiveInt = 2000
    max_body_bytes: PositiveInt = 256 * 1024
    # A result whose JSON is larger than this is kept in the results bucket (an Object Store)
    # and its terminal event refers to it; at most max_result_bytes are kept (RESULT_TOO_LARGE
    # above), and asyncResult.data returns at most max_read_bytes (dataUrl has no limit).
    inline_result_bytes: PositiveInt = 256 * 1024
    max_result_bytes: PositiveInt = 1024 * 1024 * 1024
    max_read_bytes: PositiveInt = 64 * 1024 * 1024
    # Across all of an edge's requests: stored results it holds for asyncResult.data at once.
    max_reading_bytes: PositiveInt = 256 * 1024 * 1024
    max_header_bytes: PositiveInt = 32 * 1024
    jwt_secret: SecretStr = SecretStr("")
    jwt_public_key_file: OptionalPath = None
    jwt_jwks_file: OptionalPath = None
    jwt_jwks_url: str = ""
    # The JWKS at ASYNCGATE_JWT_JWKS_URL is fetched again this long after the last fetch...
    jwt_jwks_ttl_s: NonNegativeFloat = 600.0
    # ...or when a token names an unknown key, but not more often than this (a flood of made-up
    # key ids must not become a flood of fetches).
    jwt_jwks_min_refetch_s: NonNegativeFloat = 10.0
    jwt_algorithms: str = ""
    jwt_issuer: str = ""
    jwt_audience: str = ""
    jwt_user_claim: str = "sub"
    jwt_tenant_claim: str = "tenant"
    jwt_claims_namespace: str = "https://hasura.io/jwt/claims"
    api_keys_file: OptionalPath = None
    nats_user: str = ""
    nats_password: SecretStr = SecretStr("")
    nats_token: SecretStr = SecretStr("")
    nats_nkey_seed_file: OptionalPath = None
    nats_creds_file: OptionalPath = None
    nats_tls_ca_file: OptionalPath = None
    nats_tls_cert_file: OptionalPath = None
    nats_tls_key_file: OptionalPath = None
    actions_file: OptionalPath = None
    demo_handler_port: int = 8001
    # Upstream mode: an existing GraphQL HTTP endpoint instead of ASYNCGATE_TARGET_SCHEMA.
    upstream_url: str = ""
    # Its schema as SDL, for APIs that refuse introspection (none: introspected at start).
    upstream_schema_file: OptionalPath = None
    # The edge reads the upstream's schema again this often, and on SIGHUP (0: only on SIGHUP).
    upstream_schema_refresh_s: NonNegativeFloat = 300.0
    # A JSON object of headers every upstream call carries (the gateway's own credentials).
    upstream_headers: SecretStr = SecretStr("")
    # Opt in: the client's own Authorization header reaches the upstream too (sealed in events).
    upstream_forward_authorization: Flag = False
    # kid:base64key,... (AES-GCM keys, 16/24/32 bytes); the first seals, every one opens.
    upstream_forward_keys: SecretStr = SecretStr("")
    # Synchronous forwarding, introspection and connecting; background calls are bounded by
    # the operation's time-out instead.
    upstream_timeout_s: PositiveFloat = 30.0
    # Prometheus /metrics of the executor and projector (0: not served); the edge serves its own.
    executor_metrics_port: NonNegativeInt = 0
    projector_metrics_port: NonNegativeInt = 0
    # Callbacks (README: "Callbacks"): the hosts callback URLs may name (none: no callbacks), the
    # master key every tenant's signing secret is derived from, the pauses after each failed
    # attempt (the Standard Webhooks schedule: 8 attempts over about 27 hours), each attempt's
    # time limit, how many are made at once, and the callbacks service's /metrics port.
    callback_allowed_hosts: HostList = ""
    callback_signing_key: SecretStr = SecretStr("")
    # While the master key is rotated: the keys it replaces, still signed with (comma-separated).
    callback_previous_signing_keys: SecretStr = SecretStr("")
    callback_backoff_s: SecondsList = "5,300,1800,7200,18000,36000,36000"
    callback_timeout_s: PositiveFloat = 10.0
    callback_concurrency: PositiveInt = 64
    callbacks_metrics_port: NonNegativeInt = 0
    # Read from the environment only: the file of further variables.
    env_file: OptionalPath = None

    @model_validator(mode="after")
    def _upstream_settings_need_an_upstream(self) -> Self:
        if not self.upstream_url:
            given = [
                variable_name(name)
                for name in ("upstream_schema_file", "upstream_forward_authorization")
                if getattr(self, name)
            ]
            if given:
                raise ValueError(f"{', '.join(given)} needs ASYNCGATE_UPSTREAM_URL")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Only the values given: ``from_env`` reads the variables (tests give their own)."""
        return (init_settings,)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "Settings":
        """Read every setting from ``environ`` (default: the process environment)."""
        return load_settings(environ).settings

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied and checked (``dataclasses.replace`` for settings)."""
        given = {name: getattr(self, name) for name in self.model_fields_set}
        return type(self)(**(given | changes))

    @property
    def nats_servers(self) -> list[str]:
        """The NATS servers to connect to (any of them will do; the client fails over)."""
        return [server.strip() for server in self.nats_url.split(",") if server.strip()]

    @property
    def callback_hosts(self) -> AllowedHosts:
        """``ASYNCGATE_CALLBACK_ALLOWED_HOSTS``, parsed."""
        return AllowedHosts.parse(self.callback_allowed_hosts)

    @property
    def callback_backoff_schedule(self) -> tuple[float, ...]:
        """The pause after each failed callback attempt, in seconds (one more attempt than
        pauses)."""
        return tuple(float(item) for item in self.callback_backoff_s.split(","))

    @property
    def result_ttl_s(self) -> float:
        """How long a view is kept after its last change, in seconds."""
        return self.result_ttl_hours * 3600

    @property
    def stream_max_age_s(self) -> float:
        """How long events are kept in the stream, in seconds."""
        return (self.result_ttl_hours + self.stream_extra_hours) * 3600


def variable_name(field_name: str) -> str:
    """The ASYNCGATE_* variable a setting is read from."""
    return PREFIX + field_name.upper()


def is_secret(field_name: str) -> bool:
    """Whether a setting holds a secret, never to be shown."""
    return Settings.model_fields[field_name].annotation is SecretStr


class _VariablesSource(PydanticBaseSettingsSource):
    """The ASYNCGATE_* variables of one mapping: the environment, a test's, or an .env file's.

    Names match exactly, and variables that name no setting (compose's per-service passwords
    share the prefix) are left alone.
    """

    def __init__(self, settings_cls: type[BaseSettings], variables: Mapping[str, str | None]):
        super().__init__(settings_cls)
        self._variables = variables

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The raw value of one setting, or None when its variable is not set."""
        return self._variables.get(variable_name(field_name)), field_name, False

    def __call__(self) -> dict[str, Any]:
        values = {}
        for name, info in self.settings_cls.model_fields.items():
            value, _, _ = self.get_field_value(info, name)
            if value is not None:
                values[name] = value
        return values


@dataclass(frozen=True)
class LoadedSettings:
    """The settings in effect and where each came from."""

    settings: Settings
    origins: dict[str, Origin]


def load_settings(environ: Mapping[str, str] | None = None) -> LoadedSettings:
    """The settings from ``environ`` (default: the process environment) over the file
    ASYNCGATE_ENV_FILE names, over the defaults."""
    environ = os.environ if environ is None else environ
    environment = _VariablesSource(Settings, environ)()
    from_file: dict[str, Any] = {}
    if env_file := environ.get(variable_name("env_file")):
        if not Path(env_file).is_file():
            raise ConfigurationError(f"{variable_name('env_file')}={env_file!r}: no such file")
        from_file = _VariablesSource(Settings, dotenv_values(env_file))()
        from_file.pop("env_file", None)
    values = from_file | environment
    try:
        settings = Settings(**values)
    except ValidationError as error:
        raise ConfigurationError(_describe(error, values)) from None
    origins: dict[str, Origin] = {}
    for name in Settings.model_fields:
        origins[name] = (
            "environment"
            if name in environment
            else ".env file"
            if name in from_file
            else "default"
        )
    return LoadedSettings(settings, origins)


def _describe(error: ValidationError, values: Mapping[str, Any]) -> str:
    problems = []
    for item in error.errors():
        name = str(item["loc"][0]) if item["loc"] else ""
        reason = str(item["ctx"]["error"]) if item["type"] == "value_error" else item["msg"]
        if name not in Settings.model_fields:
            problems.append(reason)
        elif is_secret(name):
            problems.append(f"{variable_name(name)}: {reason}")
        else:
            problems.append(f"{variable_name(name)}={values.get(name)!r}: {reason}")
    return "; ".join(problems)


def documented_variables() -> list[tuple[str, str]]:
    """(variable, default) for every setting, for README and ``asyncgate config``."""
    return [
        (variable_name(name), str(info.default)) for name, info in Settings.model_fields.items()
    ]
