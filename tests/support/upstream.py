"""A separate GraphQL server for upstream-mode tests: the example ledger schema served by
strawberry on uvicorn, as any existing GraphQL API would be.

Run as ``python -m tests.support.upstream --port N [--no-introspection]``. Besides ``/graphql``
it has control endpoints for the test: ``GET /seen`` (every GraphQL request it received: its
headers and body), ``POST /fail`` (``{"status": 503, "times": 2}``: answer the next GraphQL
requests with that status), ``POST /schema`` (``{"extra": true}``: serve the ledger schema with
one more field, ``upstreamVersion``), ``POST /reset``. ``UpstreamServer`` runs it for a test.
"""

import argparse
import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import strawberry
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from strawberry.asgi import GraphQL
from strawberry.extensions import DisableIntrospection

from examples.ledger.schema import Mutation, Query
from services.common.identity import ANONYMOUS, OperationContext, Principal
from services.common.nats_server import free_port
from tests.support.processes import REPO_ROOT, ChildProcess


@strawberry.type
class VersionedQuery(Query):
    """The ledger's queries, and one field a newer version of the API added."""

    @strawberry.field
    def upstream_version(self) -> int:
        """Which schema the upstream serves."""
        return 2


class LedgerGraphQL(GraphQL[OperationContext, None]):
    """The ledger, its resolvers told who asks by the identity headers asyncgate sends."""

    async def get_context(self, request: Any, response: Any) -> OperationContext:
        """The caller named by X-Asyncgate-Tenant and X-Asyncgate-User."""
        tenant, user = (request.headers.get(h) for h in ("x-asyncgate-tenant", "x-asyncgate-user"))
        principal = Principal.of(tenant, user) if tenant and user else ANONYMOUS
        return OperationContext(principal=principal)


@dataclass
class Recorder:
    """What the server has seen and is told to do."""

    seen: list[dict[str, Any]] = field(default_factory=list)
    fail_status: int = 503
    fail_times: int = 0
    extra: bool = False


def create_app(*, introspection: bool) -> Starlette:
    """The upstream app (``introspection=False``: it refuses introspection queries)."""
    extensions = [] if introspection else [DisableIntrospection]
    apps = {
        extra: LedgerGraphQL(
            strawberry.Schema(
                query=VersionedQuery if extra else Query,
                mutation=Mutation,
                extensions=extensions,
            )
        )
        for extra in (False, True)
    }
    state = Recorder()

    async def graphql(request: Request) -> Response:
        body = await request.body()
        state.seen.append({"headers": dict(request.headers), "body": body.decode()})
        if state.fail_times > 0:
            state.fail_times -= 1
            return JSONResponse({"message": "told to fail"}, state.fail_status)
        # The same Request: Starlette keeps the body it read, so strawberry reads it again.
        return await apps[state.extra].run(request)

    async def seen(_: Request) -> Response:
        return JSONResponse(state.seen)

    async def fail(request: Request) -> Response:
        order = await request.json()
        state.fail_status, state.fail_times = int(order["status"]), int(order["times"])
        return JSONResponse({})

    async def schema(request: Request) -> Response:
        state.extra = bool((await request.json())["extra"])
        return JSONResponse({})

    async def reset(_: Request) -> Response:
        state.seen.clear()
        state.fail_times, state.extra = 0, False
        return JSONResponse({})

    return Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/seen", seen),
            Route("/fail", fail, methods=["POST"]),
            Route("/schema", schema, methods=["POST"]),
            Route("/reset", reset, methods=["POST"]),
        ]
    )


class UpstreamServer(ChildProcess):
    """The upstream as a process of its own, on a free port."""

    def __init__(self, log_dir: Path, *, introspection: bool = True) -> None:
        super().__init__(log_dir / "upstream.log")
        self.port = free_port()
        self.introspection = introspection

    @property
    def url(self) -> str:
        """Its GraphQL endpoint."""
        return f"http://127.0.0.1:{self.port}/graphql"

    @property
    def base_url(self) -> str:
        """Where its control endpoints are."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start it and wait until it answers."""
        command = [sys.executable, "-m", "tests.support.upstream", "--port", str(self.port)]
        if not self.introspection:
            command.append("--no-introspection")
        self._spawn(command, cwd=REPO_ROOT)
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(f"{self.base_url}/seen", timeout=1).raise_for_status()
                return
            except httpx.HTTPError:
                if not self.running or time.monotonic() > deadline:
                    raise RuntimeError(f"the upstream did not start:\n{self.log_tail()}") from None
                time.sleep(0.05)

    async def control(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """Call one of its control endpoints; the decoded answer."""
        async with httpx.AsyncClient(base_url=self.base_url) as http:
            response = await (http.get(path) if body is None else http.post(path, json=body))
            response.raise_for_status()
            return response.json()

    async def seen(self) -> list[dict[str, Any]]:
        """Every GraphQL request it received: {"headers": {...}, "body": "..."}."""
        seen: list[dict[str, Any]] = await self.control("/seen")
        return seen


def main() -> None:
    """Serve the upstream on the port given."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--no-introspection", action="store_true")
    arguments = parser.parse_args()
    app = create_app(introspection=not arguments.no_introspection)
    config = uvicorn.Config(app, host="127.0.0.1", port=arguments.port, log_level="warning")
    asyncio.run(uvicorn.Server(config).serve())


if __name__ == "__main__":
    main()
