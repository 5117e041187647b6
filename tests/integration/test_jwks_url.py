"""Token signing keys from ASYNCGATE_JWT_JWKS_URL, served by a real HTTP server: fetched,
cached, fetched again after a rotation, and an unreachable URL is a 401, never a 5xx."""

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from services.common.nats_server import free_port
from services.common.settings import Settings
from services.edge.auth import AuthenticationError, Authenticator
from tests.stack import serving, serving_edge

QUERY = {"query": "{ __typename }"}


@dataclass
class IdentityProvider:
    """Signing keys by key id, and the JWKS it serves (which may lag behind a rotation)."""

    keys: dict[str, ec.EllipticCurvePrivateKey] = field(default_factory=dict)
    served: list[str] = field(default_factory=list)
    fetches: int = 0
    status: int = 200

    def new_key(self, kid: str) -> None:
        """Make a signing key; it is not served until ``serve`` names it."""
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def serve(self, *kids: str) -> None:
        """Serve exactly these keys from now on."""
        self.served = list(kids)

    def token(self, kid: str, user: str = "alice") -> str:
        """A token for ``user`` in tenant acme, signed with key ``kid`` and naming it."""
        claims = {"sub": user, "tenant": "acme", "exp": int(time.time()) + 600}
        return jwt.encode(claims, self.keys[kid], algorithm="ES256", headers={"kid": kid})

    def jwks(self, _: Request) -> Response:
        """The JWKS endpoint."""
        self.fetches += 1
        if self.status != 200:
            return Response("unavailable", status_code=self.status)
        keys = [
            {
                **json.loads(jwt.algorithms.ECAlgorithm.to_jwk(self.keys[kid].public_key())),
                "kid": kid,
                "alg": "ES256",
                "use": "sig",
            }
            for kid in self.served
        ]
        return JSONResponse({"keys": keys})


@pytest.fixture
async def provider() -> AsyncIterator[tuple[IdentityProvider, str]]:
    """An identity provider serving its JWKS over real HTTP; yields it and the JWKS URL."""
    idp = IdentityProvider()
    app = Starlette(routes=[Route("/.well-known/jwks.json", idp.jwks)])
    async with serving(app, free_port()) as base_url:
        yield idp, f"{base_url}/.well-known/jwks.json"


def bearer(token: str) -> dict[str, str]:
    """The Authorization header carrying ``token``."""
    return {"Authorization": f"Bearer {token}"}


def serving_k1(
    idp: IdentityProvider, url: str, *, ttl_s: float, min_refetch_s: float
) -> Authenticator:
    """Serve one key, k1, and an authenticator reading the JWKS with these timings."""
    idp.new_key("k1")
    idp.serve("k1")
    return Authenticator(
        Settings(jwt_jwks_url=url, jwt_jwks_ttl_s=ttl_s, jwt_jwks_min_refetch_s=min_refetch_s)
    )


def code_of(response: httpx.Response) -> Any:
    """The code of the response's first error."""
    return response.json()["errors"][0]["extensions"]["code"]


@pytest.mark.nats
@pytest.mark.e2e
async def test_the_edge_accepts_served_keys_and_a_rotated_key_once_the_jwks_has_it(
    settings: Settings, provider: tuple[IdentityProvider, str]
) -> None:
    idp, url = provider
    idp.new_key("k1")
    idp.new_key("k2")
    idp.serve("k1")
    configured = settings.replace(jwt_jwks_url=url, jwt_jwks_min_refetch_s=0)

    async with serving_edge(configured) as client:
        first = await client.post("/graphql", json=QUERY, headers=bearer(idp.token("k1")))
        early = await client.post("/graphql", json=QUERY, headers=bearer(idp.token("k2")))
        idp.serve("k1", "k2")
        rotated = await client.post("/graphql", json=QUERY, headers=bearer(idp.token("k2")))
        again = await client.post("/graphql", json=QUERY, headers=bearer(idp.token("k1")))

    assert first.status_code == 200, first.text
    assert (early.status_code, code_of(early)) == (401, "UNAUTHENTICATED")
    assert "k2" in early.json()["errors"][0]["message"]
    assert rotated.status_code == 200, rotated.text
    assert again.status_code == 200
    # One fetch at the start, one for each sighting of the then unknown k2; k1 came from cache.
    assert idp.fetches == 3


@pytest.mark.nats
@pytest.mark.e2e
@pytest.mark.parametrize("reachable", [False, True])
async def test_a_jwks_url_that_cannot_be_fetched_is_401_unauthenticated(
    settings: Settings, provider: tuple[IdentityProvider, str], reachable: bool
) -> None:
    idp, url = provider
    idp.new_key("k1")
    idp.status = 503
    if not reachable:
        url = f"http://127.0.0.1:{free_port()}/jwks.json"
    configured = settings.replace(jwt_jwks_url=url)

    async with serving_edge(configured) as client:
        refused = await client.post("/graphql", json=QUERY, headers=bearer(idp.token("k1")))

    assert refused.status_code == 401, refused.text
    assert code_of(refused) == "UNAUTHENTICATED"
    assert "signing keys cannot be fetched" in refused.json()["errors"][0]["message"]


async def test_unknown_key_ids_fetch_at_most_once_per_interval_and_the_set_expires(
    provider: tuple[IdentityProvider, str],
) -> None:
    idp, url = provider
    authenticator = serving_k1(idp, url, ttl_s=1.0, min_refetch_s=0.5)

    assert (await authenticator.from_headers(bearer(idp.token("k1")))).user_id == "alice"
    for made_up in ("x1", "x2", "x3"):
        idp.new_key(made_up)
        with pytest.raises(AuthenticationError, match=made_up):
            await authenticator.from_headers(bearer(idp.token(made_up)))
    assert idp.fetches == 1

    await asyncio.sleep(1.1)
    await authenticator.from_headers(bearer(idp.token("k1")))
    assert idp.fetches == 2


async def test_a_failed_fetch_keeps_the_keys_already_held(
    provider: tuple[IdentityProvider, str],
) -> None:
    idp, url = provider
    authenticator = serving_k1(idp, url, ttl_s=0, min_refetch_s=0)
    await authenticator.from_headers(bearer(idp.token("k1")))

    idp.status = 500
    principal = await authenticator.from_headers(bearer(idp.token("k1")))

    assert principal.user_id == "alice"
    assert idp.fetches == 2
