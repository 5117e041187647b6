"""Token signing keys from a JWKS URL (ASYNCGATE_JWT_JWKS_URL), as Hasura's ``jwk_url``.

The key set is fetched when first needed and kept. It is fetched again once it is older than
ASYNCGATE_JWT_JWKS_TTL_S, or when a token names a key id it does not hold (the issuer rotated
its keys), but never more often than every ASYNCGATE_JWT_JWKS_MIN_REFETCH_S: tokens with made-up
key ids cannot turn into a flood of fetches. When a fetch fails the keys already held stay in use.
"""

import asyncio
import logging
import time
from typing import Final

import httpx
import jwt

log = logging.getLogger(__name__)

FETCH_TIMEOUT_S: Final = 5.0


class KeysUnavailableError(Exception):
    """No key set could be fetched yet; the message says why, for the caller."""


def keys_with_id(keys: tuple[jwt.PyJWK, ...], kid: str | None) -> tuple[jwt.PyJWK, ...]:
    """The keys a token with key id ``kid`` may be signed with: all of them when it names none,
    else the one with that id (a key published without an id stays a candidate)."""
    if kid is None:
        return keys
    return tuple(key for key in keys if key.key_id in (kid, None))


class RemoteKeySet:
    """The key set at one URL, cached and refreshed as the module says."""

    def __init__(self, url: str, *, ttl_s: float, min_refetch_s: float) -> None:
        self._url = url
        self._ttl_s = ttl_s
        self._min_refetch_s = min_refetch_s
        self._keys: tuple[jwt.PyJWK, ...] | None = None
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self._problem = "the token signing keys have not been fetched yet"
        self._lock = asyncio.Lock()

    async def keys_for(self, kid: str | None) -> tuple[jwt.PyJWK, ...]:
        """The keys that may have signed a token naming ``kid``, fetching the set if due."""
        if self._fetch_due(kid):
            async with self._lock:
                # Another request may have fetched while this one waited for the lock.
                if self._fetch_due(kid):
                    await self._fetch()
        if self._keys is None:
            raise KeysUnavailableError(self._problem)
        return keys_with_id(self._keys, kid)

    def _fetch_due(self, kid: str | None) -> bool:
        now = time.monotonic()
        if self._attempted_at is not None and now - self._attempted_at < self._min_refetch_s:
            return False
        if self._keys is None or self._fetched_at is None:
            return True
        if now - self._fetched_at >= self._ttl_s:
            return True
        return kid is not None and not keys_with_id(self._keys, kid)

    async def _fetch(self) -> None:
        self._attempted_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=FETCH_TIMEOUT_S) as client:
                response = await client.get(self._url, headers={"accept": "application/json"})
            response.raise_for_status()
            keys = tuple(jwt.PyJWKSet.from_json(response.text).keys)
        except (httpx.HTTPError, jwt.PyJWTError, ValueError) as error:
            # The URL may hold credentials in its query: name only what went wrong.
            reason = (
                f"HTTP {error.response.status_code}"
                if isinstance(error, httpx.HTTPStatusError)
                else str(error) or type(error).__name__
            )
            log.warning("could not fetch the JWKS (ASYNCGATE_JWT_JWKS_URL): %s", reason)
            self._problem = "the token signing keys cannot be fetched right now"
            return
        self._keys = keys
        self._fetched_at = self._attempted_at
        log.info("fetched %d token signing keys from ASYNCGATE_JWT_JWKS_URL", len(keys))
