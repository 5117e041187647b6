"""Who is calling: bearer JWTs (HS256, RS256, ES256) or static API keys, mapped to a principal.

Asymmetric keys come from a PEM file, a JWKS file or a JWKS URL; a token that names its key
(``kid``) is checked against that key only.

With neither configured, every caller is the anonymous development principal, which the edge
allows only on a loopback address.
"""

import hashlib
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
import yaml

from contracts.names import UnsafeTokenError
from services.common.identity import ANONYMOUS, Principal
from services.common.settings import ConfigurationError, Settings
from services.edge.json_input import UnreadableJSONError, read_json
from services.edge.jwks import KeysUnavailableError, RemoteKeySet, keys_with_id

API_KEY_HEADER: Final = "x-api-key"
HASURA_PREFIX: Final = "x-hasura-"
DEFAULT_TENANT: Final = "default"
# Clock skew tolerated between the token issuer and the edge.
LEEWAY_S: Final = 30
LOOPBACK_HOSTS: Final = frozenset({"127.0.0.1", "localhost", "::1"})


class AuthenticationError(Exception):
    """The caller could not be identified; the message says why, without secrets."""


@dataclass(frozen=True)
class _Verifier:
    keys: tuple[Any, ...]
    algorithms: tuple[str, ...]
    remote: RemoteKeySet | None = None

    async def keys_for(self, kid: str | None) -> tuple[Any, ...]:
        """The keys a token naming ``kid`` may be signed with."""
        if self.remote is not None:
            try:
                return await self.remote.keys_for(kid)
            except KeysUnavailableError as error:
                raise AuthenticationError(str(error)) from None
        jwks = tuple(key for key in self.keys if isinstance(key, jwt.PyJWK))
        return keys_with_id(jwks, kid) if jwks and kid is not None else self.keys


def hash_api_key(key: str) -> str:
    """How an API key is stored: the hex SHA-256 of the key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_api_key() -> str:
    """A fresh random API key."""
    return "agk_" + secrets.token_urlsafe(32)


def _load_api_keys(path: Path) -> dict[str, Principal]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise ConfigurationError(f"{path}: cannot read API keys: {error}") from None
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ConfigurationError(f"{path}: expected a mapping with a 'keys' list")
    keys: dict[str, Principal] = {}
    for number, entry in enumerate(entries, 1):
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) for k in ("sha256", "tenant", "user")
        ):
            raise ConfigurationError(f"{path}: key {number} needs sha256, tenant and user")
        keys[entry["sha256"].lower()] = Principal.of(entry["tenant"], entry["user"])
    return keys


# RFC 7518 3.2: an HS256 key must be at least as long as the hash output.
MIN_SECRET_BYTES: Final = 32


def _check_secret(secret: str) -> None:
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigurationError(f"ASYNCGATE_JWT_SECRET must be at least {MIN_SECRET_BYTES} bytes")


def _verifier(settings: Settings) -> _Verifier | None:
    algorithms = tuple(a for a in settings.jwt_algorithms.split(",") if a)
    if secret := settings.jwt_secret.get_secret_value():
        _check_secret(secret)
        return _Verifier(keys=(secret,), algorithms=algorithms or ("HS256",))
    asymmetric = algorithms or ("RS256", "ES256")
    if settings.jwt_public_key_file is not None:
        try:
            key = settings.jwt_public_key_file.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigurationError(f"ASYNCGATE_JWT_PUBLIC_KEY_FILE: {error.strerror}") from None
        return _Verifier(keys=(key,), algorithms=asymmetric)
    if settings.jwt_jwks_file is not None:
        try:
            jwks = jwt.PyJWKSet.from_json(settings.jwt_jwks_file.read_text(encoding="utf-8"))
        except (OSError, jwt.PyJWKSetError, ValueError) as error:
            raise ConfigurationError(f"ASYNCGATE_JWT_JWKS_FILE: {error}") from None
        return _Verifier(keys=tuple(jwks.keys), algorithms=asymmetric)
    if settings.jwt_jwks_url:
        remote = RemoteKeySet(
            settings.jwt_jwks_url,
            ttl_s=settings.jwt_jwks_ttl_s,
            min_refetch_s=settings.jwt_jwks_min_refetch_s,
        )
        return _Verifier(keys=(), algorithms=asymmetric, remote=remote)
    return None


class Authenticator:
    """Turns request headers or a WebSocket's connection_init payload into a principal."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._verifier = _verifier(settings)
        self._api_keys = (
            {} if settings.api_keys_file is None else _load_api_keys(settings.api_keys_file)
        )

    @property
    def enabled(self) -> bool:
        """False when neither JWTs nor API keys are configured (development mode)."""
        return self._verifier is not None or bool(self._api_keys)

    async def from_headers(self, headers: Mapping[str, str]) -> Principal:
        """The principal of an HTTP request (header names in any case)."""
        if not self.enabled:
            return ANONYMOUS
        lowered = {name.lower(): value for name, value in headers.items()}
        if API_KEY_HEADER in lowered:
            return self._from_api_key(lowered[API_KEY_HEADER])
        authorization = lowered.get("authorization", "")
        scheme, _, credential = authorization.partition(" ")
        if scheme.lower() == "bearer" and credential.strip():
            return await self._from_token(credential.strip())
        raise AuthenticationError("send a bearer token (Authorization: Bearer ...) or an API key")

    async def from_connection_params(self, params: object) -> Principal:
        """The principal of a WebSocket, from its connection_init payload.

        Understands ``{"Authorization": "Bearer ..."}``, ``{"headers": {...}}`` (Apollo and
        Hasura clients) and ``{"x-api-key": ...}``.
        """
        if not isinstance(params, dict):
            params = {}
        headers: dict[Any, Any] = (
            params["headers"] if isinstance(params.get("headers"), dict) else params
        )
        return await self.from_headers({str(k): str(v) for k, v in headers.items()})

    def _from_api_key(self, key: str) -> Principal:
        principal = self._api_keys.get(hash_api_key(key.strip()))
        if principal is None:
            raise AuthenticationError("the API key is not valid")
        return principal

    async def _from_token(self, token: str) -> Principal:
        if self._verifier is None:
            raise AuthenticationError("bearer tokens are not accepted here; use an API key")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise AuthenticationError("the token is not valid") from None
        keys = await self._verifier.keys_for(kid if isinstance(kid, str) else None)
        if not keys:
            raise AuthenticationError(f"the token's signing key ({kid}) is not known")
        claims = self._verified_claims(token, keys, self._verifier.algorithms)
        namespace = _hasura_claims(claims.get(self._settings.jwt_claims_namespace))
        user = claims.get(self._settings.jwt_user_claim) or namespace.get(f"{HASURA_PREFIX}user-id")
        tenant = claims.get(self._settings.jwt_tenant_claim) or namespace.get(
            f"{HASURA_PREFIX}tenant-id", DEFAULT_TENANT
        )
        if not isinstance(user, str) or not isinstance(tenant, str):
            raise AuthenticationError("the token names no user")
        session = {k: v for k, v in namespace.items() if k.startswith(HASURA_PREFIX)}
        if f"{HASURA_PREFIX}default-role" in namespace:
            session.setdefault(f"{HASURA_PREFIX}role", namespace[f"{HASURA_PREFIX}default-role"])
        try:
            return Principal.of(tenant, user, session)
        except UnsafeTokenError as error:
            raise AuthenticationError(f"the token's {error}") from None

    def _verified_claims(
        self, token: str, keys: tuple[Any, ...], algorithms: tuple[str, ...]
    ) -> dict[str, Any]:
        settings = self._settings
        problem = "the token is not valid"
        for key in keys:
            try:
                claims: dict[str, Any] = jwt.decode(
                    token,
                    key=key,
                    algorithms=list(algorithms),
                    audience=settings.jwt_audience or None,
                    issuer=settings.jwt_issuer or None,
                    leeway=LEEWAY_S,
                    options={"require": ["exp"], "verify_aud": bool(settings.jwt_audience)},
                )
            except jwt.ExpiredSignatureError:
                raise AuthenticationError("the token has expired") from None
            except (jwt.InvalidAudienceError, jwt.InvalidIssuerError) as error:
                raise AuthenticationError(f"the token is not for this service: {error}") from None
            except jwt.MissingRequiredClaimError as error:
                raise AuthenticationError(f"the token is missing a claim: {error.claim}") from None
            except jwt.PyJWTError:
                continue
            except RecursionError:
                # PyJWT reads the claims with json.loads, which gives up on deep nesting.
                raise AuthenticationError("the token's claims are nested too deeply") from None
            return claims
        raise AuthenticationError(problem)


def _hasura_claims(value: object) -> dict[str, str]:
    # Hasura lets the namespace be an object or, with claims_format stringified_json, a string.
    if isinstance(value, str):
        try:
            value = read_json(value)
        except UnreadableJSONError:
            return {}
    if not isinstance(value, dict):
        return {}
    return {str(k).lower(): str(v) for k, v in value.items() if isinstance(v, str | int | bool)}


def issue_token(settings: Settings, *, tenant: str, user: str, ttl_s: int) -> str:
    """An HS256 token for ``tenant`` and ``user`` signed with ASYNCGATE_JWT_SECRET."""
    secret = settings.jwt_secret.get_secret_value()
    if not secret:
        raise ConfigurationError("ASYNCGATE_JWT_SECRET is not set: there is nothing to sign with")
    _check_secret(secret)
    now = int(time.time())
    claims: dict[str, Any] = {
        settings.jwt_user_claim: user,
        settings.jwt_tenant_claim: tenant,
        "iat": now,
        "exp": now + ttl_s,
    }
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    return jwt.encode(claims, secret, algorithm="HS256")


def check_exposure(settings: Settings, authenticator: Authenticator) -> None:
    """Refuse to serve anonymous callers on anything but a loopback address."""
    if not authenticator.enabled and settings.http_host not in LOOPBACK_HOSTS:
        raise ConfigurationError(
            f"no authentication is configured, so the edge will not listen on "
            f"{settings.http_host}: set ASYNCGATE_JWT_SECRET (or a public key, a JWKS file or "
            f"URL, or an API keys file), or listen on 127.0.0.1"
        )
