"""Identifying callers from tokens and API keys, without a server."""

import json
import re
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from services.common.identity import ANONYMOUS
from services.common.settings import ConfigurationError, Settings
from services.edge.auth import (
    AuthenticationError,
    Authenticator,
    check_exposure,
    hash_api_key,
    issue_token,
)

SECRET = "a-test-secret-that-is-long-enough-for-hs256"


def bearer(token: str) -> dict[str, str]:
    """The Authorization header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


def signed(
    claims: dict[str, Any], key: Any = SECRET, algorithm: str = "HS256", **headers: Any
) -> str:
    """A token with ``claims`` (and an expiry an hour away unless given)."""
    return jwt.encode(
        {"exp": int(time.time()) + 3600, **claims},
        key,
        algorithm=algorithm,
        headers=headers or None,
    )


async def test_without_configuration_everyone_is_the_anonymous_developer() -> None:
    authenticator = Authenticator(Settings())

    assert not authenticator.enabled
    assert await authenticator.from_headers({}) == ANONYMOUS


async def test_an_hs256_token_maps_sub_and_tenant() -> None:
    authenticator = Authenticator(Settings(jwt_secret=SECRET))

    principal = await authenticator.from_headers(
        bearer(signed({"sub": "alice@example.com", "tenant": "acme"}))
    )

    assert principal.user_id == "alice@example.com"
    assert principal.tenant_id == "acme"
    assert "." not in principal.user


@pytest.mark.parametrize(
    ("claims", "key", "says"),
    [
        ({"sub": "a", "exp": int(time.time()) - 3600}, SECRET, "expired"),
        ({"sub": "a"}, "another-secret-that-is-also-long-enough!", "not valid"),
        ({"sub": "a", "aud": "someone-else"}, SECRET, "not for this service"),
        ({"sub": "a", "iss": "https://evil"}, SECRET, "not for this service"),
        ({"tenant": "acme"}, SECRET, "names no user"),
    ],
)
async def test_bad_tokens_are_refused_with_a_reason(
    claims: dict[str, Any], key: str, says: str
) -> None:
    authenticator = Authenticator(
        Settings(jwt_secret=SECRET, jwt_audience="asyncgate", jwt_issuer="https://issuer")
    )
    claims = {"aud": "asyncgate", "iss": "https://issuer", **claims}

    with pytest.raises(AuthenticationError, match=says):
        await authenticator.from_headers(bearer(signed(claims, key)))


async def test_a_token_without_expiry_or_a_missing_header_is_refused() -> None:
    authenticator = Authenticator(Settings(jwt_secret=SECRET))
    no_expiry = jwt.encode({"sub": "a"}, SECRET, algorithm="HS256")

    with pytest.raises(AuthenticationError, match="exp"):
        await authenticator.from_headers(bearer(no_expiry))
    with pytest.raises(AuthenticationError, match="bearer token"):
        await authenticator.from_headers({})
    with pytest.raises(AuthenticationError):
        await authenticator.from_headers(bearer(jwt.encode({"sub": "a"}, "", algorithm="none")))


@pytest.mark.parametrize("stringified", [False, True])
async def test_hasura_tokens_work_and_their_claims_become_session_variables(
    stringified: bool,
) -> None:
    authenticator = Authenticator(Settings(jwt_secret=SECRET))
    namespace = {
        "x-hasura-user-id": "42",
        "x-hasura-tenant-id": "acme",
        "x-hasura-default-role": "manager",
        "x-hasura-allowed-roles": "[]",
        "x-hasura-org": "north",
    }
    claims = {"https://hasura.io/jwt/claims": json.dumps(namespace) if stringified else namespace}

    principal = await authenticator.from_headers(bearer(signed(claims)))

    assert (principal.tenant_id, principal.user_id) == ("acme", "42")
    assert principal.session_variables["x-hasura-role"] == "manager"
    assert principal.session_variables["x-hasura-org"] == "north"


async def test_claim_names_are_configurable() -> None:
    authenticator = Authenticator(
        Settings(jwt_secret=SECRET, jwt_user_claim="email", jwt_tenant_claim="org")
    )

    principal = await authenticator.from_headers(bearer(signed({"email": "e@x.io", "org": "o1"})))

    assert (principal.tenant_id, principal.user_id) == ("o1", "e@x.io")


async def test_rs256_with_a_public_key_file(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = tmp_path / "key.pem"
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    authenticator = Authenticator(Settings(jwt_public_key_file=public))

    principal = await authenticator.from_headers(bearer(signed({"sub": "r"}, private, "RS256")))

    assert principal.user_id == "r"
    with pytest.raises(AuthenticationError):
        await authenticator.from_headers(bearer(signed({"sub": "r"})))


async def test_es256_with_a_jwks_file(tmp_path: Path) -> None:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(private.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256", "use": "sig"}]}))
    authenticator = Authenticator(Settings(jwt_jwks_file=jwks))

    principal = await authenticator.from_headers(
        bearer(signed({"sub": "e", "tenant": "t"}, private, "ES256", kid="k1"))
    )

    assert (principal.tenant_id, principal.user_id) == ("t", "e")


async def test_api_keys_are_stored_hashed_and_map_to_their_principal(tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(
        f"keys:\n  - sha256: {hash_api_key('agk_valid')}\n    tenant: acme\n    user: bot\n"
    )
    authenticator = Authenticator(Settings(api_keys_file=keys))

    principal = await authenticator.from_headers({"X-Api-Key": "agk_valid"})

    assert (principal.tenant_id, principal.user_id) == ("acme", "bot")
    assert "agk_valid" not in keys.read_text()
    with pytest.raises(AuthenticationError, match="API key"):
        await authenticator.from_headers({"x-api-key": "agk_guess"})


async def test_websocket_connection_params_carry_the_credentials() -> None:
    authenticator = Authenticator(Settings(jwt_secret=SECRET))
    token = signed({"sub": "w"})

    for params in (
        {"Authorization": f"Bearer {token}"},
        {"headers": {"authorization": f"Bearer {token}"}},
    ):
        assert (await authenticator.from_connection_params(params)).user_id == "w"
    with pytest.raises(AuthenticationError):
        await authenticator.from_connection_params(None)


async def test_issued_tokens_verify_and_short_secrets_are_refused() -> None:
    settings = Settings(jwt_secret=SECRET, jwt_audience="asyncgate")

    token = issue_token(settings, tenant="acme", user="alice", ttl_s=60)

    assert (await Authenticator(settings).from_headers(bearer(token))).user_id == "alice"
    with pytest.raises(ConfigurationError, match="32 bytes"):
        Authenticator(Settings(jwt_secret="short"))


def test_without_authentication_only_loopback_is_allowed() -> None:
    check_exposure(Settings(http_host="127.0.0.1"), Authenticator(Settings()))

    with pytest.raises(ConfigurationError, match=re.escape("0.0.0.0")):
        check_exposure(Settings(http_host="0.0.0.0"), Authenticator(Settings()))
    check_exposure(
        Settings(http_host="0.0.0.0", jwt_secret=SECRET), Authenticator(Settings(jwt_secret=SECRET))
    )


async def test_a_token_naming_its_key_is_checked_with_that_key_only(tmp_path: Path) -> None:
    private = {kid: ec.generate_private_key(ec.SECP256R1()) for kid in ("k1", "k2")}
    jwks = tmp_path / "jwks.json"
    keys = [
        {**json.loads(jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())), "kid": kid}
        for kid, key in private.items()
    ]
    jwks.write_text(json.dumps({"keys": keys}))
    authenticator = Authenticator(Settings(jwt_jwks_file=jwks))

    accepted = await authenticator.from_headers(
        bearer(signed({"sub": "e"}, private["k2"], "ES256", kid="k2"))
    )
    unnamed = await authenticator.from_headers(bearer(signed({"sub": "e"}, private["k2"], "ES256")))

    assert accepted.user_id == unnamed.user_id == "e"
    with pytest.raises(AuthenticationError, match="not valid"):
        await authenticator.from_headers(
            bearer(signed({"sub": "e"}, private["k2"], "ES256", kid="k1"))
        )
    with pytest.raises(AuthenticationError, match=r"signing key \(k3\) is not known"):
        await authenticator.from_headers(
            bearer(signed({"sub": "e"}, private["k2"], "ES256", kid="k3"))
        )
