"""How every service proves itself to NATS: user/password, token, nkey seed or .creds file,
with or without TLS, all from ASYNCGATE_NATS_* settings.

One FastStream security object serves both the FastStream brokers (executor, projector) and the
edge's plain nats-py connection, so the services can never disagree on how they log in.
"""

import ssl
from typing import Any

from faststream.nats.security import (
    NatsCredentials,
    NatsNKey,
    NatsSecurity,
    NatsToken,
    NatsUserPassword,
    parse_security,
)

from services.common.settings import ConfigurationError, Settings


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    """A client TLS context when a CA or client certificate is configured."""
    if not (settings.nats_tls_ca_file or settings.nats_tls_cert_file):
        return None
    context = ssl.create_default_context(
        cafile=str(settings.nats_tls_ca_file) if settings.nats_tls_ca_file else None
    )
    if settings.nats_tls_cert_file:
        if not settings.nats_tls_key_file:
            raise ConfigurationError(
                "ASYNCGATE_NATS_TLS_CERT_FILE needs ASYNCGATE_NATS_TLS_KEY_FILE"
            )
        context.load_cert_chain(str(settings.nats_tls_cert_file), str(settings.nats_tls_key_file))
    return context


def nats_security(settings: Settings) -> NatsSecurity | None:
    """The configured way to log in to NATS (at most one kind), or None for none."""
    tls = tls_context(settings)
    kinds = [
        name
        for name, present in (
            ("user/password", bool(settings.nats_user)),
            ("token", bool(settings.nats_token.get_secret_value())),
            ("nkey seed", settings.nats_nkey_seed_file is not None),
            ("creds file", settings.nats_creds_file is not None),
        )
        if present
    ]
    if len(kinds) > 1:
        raise ConfigurationError(f"configure one NATS login, not {' and '.join(kinds)}")
    if settings.nats_user:
        return NatsUserPassword(
            settings.nats_user, settings.nats_password.get_secret_value(), ssl_context=tls
        )
    if token := settings.nats_token.get_secret_value():
        return NatsToken(token, ssl_context=tls)
    if settings.nats_nkey_seed_file is not None:
        return NatsNKey(settings.nats_nkey_seed_file, ssl_context=tls)
    if settings.nats_creds_file is not None:
        return NatsCredentials(str(settings.nats_creds_file), ssl_context=tls)
    return None if tls is None else NatsSecurity(ssl_context=tls)


def nats_connect_options(settings: Settings) -> dict[str, Any]:
    """The same login as keyword arguments of ``nats.connect``."""
    return parse_security(nats_security(settings))
