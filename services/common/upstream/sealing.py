"""Sealing the client's Authorization header for the trip through the event stream.

When ``ASYNCGATE_UPSTREAM_FORWARD_AUTHORIZATION`` is on, the edge seals the header with AES-GCM
under the current key of ``ASYNCGATE_UPSTREAM_FORWARD_KEYS`` and the executor opens it just
before calling the upstream. The stream, dead letters and ``asyncgate ops`` only ever hold the
sealed form. Keys rotate by id: the first key seals, every listed key opens, so an operator adds
the new key first, and drops the old one once no queued request can still carry it.
"""

import base64
import binascii
import os
import re
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from contracts.events import SealedSecret
from services.common.settings import ConfigurationError

KEY_SIZES: Final = frozenset({16, 24, 32})
NONCE_BYTES: Final = 12
_KEY_ID: Final = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_VARIABLE: Final = "ASYNCGATE_UPSTREAM_FORWARD_KEYS"


class UnsealError(ValueError):
    """A sealed secret cannot be opened: its key is not configured, or it was tampered with."""


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    # Strict: a character outside the (URL-safe) alphabet is an error, not skipped.
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)


@dataclass(frozen=True)
class KeyRing:
    """AES-GCM keys by id; ``current`` is the id new secrets are sealed with."""

    keys: dict[str, bytes]
    current: str

    @classmethod
    def parse(cls, text: str) -> "KeyRing":
        """Keys written ``kid:base64key,kid:base64key``, the first the current one.

        A bad entry raises ConfigurationError naming the entry's key id, never a key.
        """
        keys: dict[str, bytes] = {}
        for entry in (part.strip() for part in text.split(",")):
            kid, colon, encoded = entry.partition(":")
            if not colon or not _KEY_ID.fullmatch(kid):
                raise ConfigurationError(
                    f"{_VARIABLE}: every entry is key-id:base64-key (key ids of letters, digits, "
                    "'_', '-' and '.')"
                )
            try:
                # Standard or URL-safe alphabet, padded or not.
                key = _b64decode(encoded.strip().replace("+", "-").replace("/", "_"))
            except (binascii.Error, ValueError):
                raise ConfigurationError(f"{_VARIABLE}: the key of {kid!r} is not base64") from None
            if len(key) not in KEY_SIZES:
                raise ConfigurationError(
                    f"{_VARIABLE}: the key of {kid!r} is {len(key)} bytes; AES-GCM takes 16, "
                    "24 or 32"
                )
            if kid in keys:
                raise ConfigurationError(f"{_VARIABLE}: key id {kid!r} is listed twice")
            keys[kid] = key
        return cls(keys=keys, current=next(iter(keys)))

    def seal(self, secret: str, *, bound_to: str) -> SealedSecret:
        """``secret`` sealed with the current key; opening it needs the same ``bound_to``."""
        nonce = os.urandom(NONCE_BYTES)
        ciphertext = AESGCM(self.keys[self.current]).encrypt(
            nonce, secret.encode(), bound_to.encode()
        )
        return SealedSecret(
            kid=self.current, nonce=_b64encode(nonce), ciphertext=_b64encode(ciphertext)
        )

    def open(self, sealed: SealedSecret, *, bound_to: str) -> str:
        """The secret ``sealed`` holds; UnsealError if no key opens it for ``bound_to``."""
        key = self.keys.get(sealed.kid)
        if key is None:
            raise UnsealError(f"key {sealed.kid!r} is not among the configured keys")
        try:
            plain = AESGCM(key).decrypt(
                _b64decode(sealed.nonce), _b64decode(sealed.ciphertext), bound_to.encode()
            )
        except (InvalidTag, binascii.Error, ValueError):
            raise UnsealError(f"the secret sealed with key {sealed.kid!r} does not open") from None
        return plain.decode()
