"""Signing callbacks as the Standard Webhooks specification says, with a secret per tenant.

Each tenant's secret is HMAC-SHA256(master key, tenant), the master key being
``ASYNCGATE_CALLBACK_SIGNING_KEY``: nothing per tenant is stored, every replica derives the same
secret, and ``asyncgate callback-secret --tenant T`` prints it (``whsec_`` and its base64) for
that tenant's receivers. A receiver checks ``webhook-signature`` = ``v1,`` +
base64(HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")).
"""

import base64
import hashlib
import hmac
from typing import Final

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 (the format's prefix, not a secret)
SIGNATURE_VERSION: Final = "v1"
ID_HEADER: Final = "webhook-id"
TIMESTAMP_HEADER: Final = "webhook-timestamp"
SIGNATURE_HEADER: Final = "webhook-signature"
# Shorter master keys are refused: the per-tenant secrets are only as strong as the key.
MIN_MASTER_KEY_BYTES: Final = 32


class SigningKeyError(ValueError):
    """The master signing key cannot be used."""


def master_key(text: str) -> bytes:
    """The master key's bytes; SigningKeyError if it is missing or too short."""
    key = text.encode()
    if len(key) < MIN_MASTER_KEY_BYTES:
        raise SigningKeyError(
            f"ASYNCGATE_CALLBACK_SIGNING_KEY must be at least {MIN_MASTER_KEY_BYTES} bytes "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return key


def tenant_secret(master: bytes, tenant: str) -> bytes:
    """The secret callbacks of ``tenant`` (its subject token) are signed with."""
    return hmac.new(master, tenant.encode(), hashlib.sha256).digest()


def secret_text(secret: bytes) -> str:
    """A secret as Standard Webhooks writes it: ``whsec_`` and its base64."""
    return SECRET_PREFIX + base64.b64encode(secret).decode()


def secret_from_text(text: str) -> bytes:
    """The bytes of a ``whsec_...`` secret."""
    return base64.b64decode(text.removeprefix(SECRET_PREFIX))


def signature(secret: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` of ``body`` sent as ``message_id`` at unix ``timestamp``."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, signed, hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode()}"


def signed_headers(secret: bytes, message_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt at sending ``body``."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature(secret, message_id, timestamp, body),
    }
