"""Upstream mode's settings, read and checked once by each composition root."""

from dataclasses import dataclass
from pathlib import Path

from services.common.settings import ConfigurationError, Settings
from services.common.upstream.headers import parse_headers
from services.common.upstream.schema import SchemaSource
from services.common.upstream.sealing import KeyRing


@dataclass(frozen=True)
class UpstreamConfig:
    """Where the upstream is, what every call to it carries, and how its schema is had."""

    url: str
    headers: dict[str, str]
    timeout_s: float
    forward_authorization: bool
    keys: KeyRing | None
    schema_file: Path | None
    refresh_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "UpstreamConfig":
        """The upstream settings, checked; ConfigurationError (naming the variable) if unusable."""
        if not settings.upstream_url.startswith(("http://", "https://")):
            raise ConfigurationError("ASYNCGATE_UPSTREAM_URL must be an http:// or https:// URL")
        keys_text = settings.upstream_forward_keys.get_secret_value()
        if settings.upstream_forward_authorization and not keys_text.strip():
            raise ConfigurationError(
                "ASYNCGATE_UPSTREAM_FORWARD_AUTHORIZATION needs ASYNCGATE_UPSTREAM_FORWARD_KEYS: "
                "the header is sealed with them while the operation waits in the stream"
            )
        return cls(
            url=settings.upstream_url,
            headers=parse_headers(settings.upstream_headers.get_secret_value()),
            timeout_s=settings.upstream_timeout_s,
            forward_authorization=settings.upstream_forward_authorization,
            keys=KeyRing.parse(keys_text) if keys_text.strip() else None,
            schema_file=settings.upstream_schema_file,
            refresh_s=settings.upstream_schema_refresh_s,
        )

    @property
    def schema_source(self) -> SchemaSource:
        """Where the schema comes from: the SDL file if set, else introspection."""
        return SchemaSource(
            url=self.url, headers=self.headers, timeout_s=self.timeout_s, file=self.schema_file
        )
