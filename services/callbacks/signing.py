"""Signing callbacks as the Standard Webhooks specification says, with a secret per tenant.

Each tenant's secret is HMAC-SHA256(master key, tenant), the master key being
``ASYNCGATE_CALLBACK_SIGNING_KEY``: nothing per tenant is stored, every replica derives the same
secret, and ``asyncgate callback-secret --tenant T`` prints it (``whsec_`` and its base64) for
that tenant's receivers. A receiver checks ``webhook-signature`` = ``v1,`` +
base64(HMAC-SHA256(secret, "<webhook-id>.<webhook-timestamp>.<body>")).

While the master key is rotated, ``ASYNCGATE_CALLBACK_PREVIOUS_SIGNING_KEYS`` names the keys
being replaced: every callback is then signed with the current key and each previous one, so a
receiver holding either tenant secret accepts it until it has been given the new one.
"""

import base64
import hashlib
import hmac
from collections.abc import Sequence
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


def master_key(text: str, name: str = "ASYNCGATE_CALLBACK_SIGNING_KEY") -> bytes:
    """The master key's bytes; SigningKeyError if it is missing or too short."""
    key = text.encode()
    if len(key) < MIN_MASTER_KEY_BYTES:
        raise SigningKeyError(
            f"{name} must be at least {MIN_MASTER_KEY_BYTES} bytes "
            "(for example: python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return key


def master_keys(current: str, previous: str) -> tuple[bytes, ...]:
    """The master keys callbacks are signed with: the current one, then those still in use
    while it replaces them (``previous``, separated by commas)."""
    earlier = [text.strip() for text in previous.split(",") if text.strip()]
    return (
        master_key(current),
        *(
            master_key(text, "every ASYNCGATE_CALLBACK_PREVIOUS_SIGNING_KEYS key")
            for text in earlier
        ),
    )


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


def signed_headers(
    secrets: Sequence[bytes], message_id: str, timestamp: int, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers of one attempt at sending ``body``, signed with each
    of ``secrets`` (the current one first; more while the master key is being rotated: the
    specification lists signatures separated by spaces, and a receiver accepts any it can
    verify)."""
    return {
        ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: " ".join(
            signature(secret, message_id, timestamp, body) for secret in secrets
        ),
    }
