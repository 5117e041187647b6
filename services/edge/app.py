"""The edge's composition root: a Starlette app whose lifespan holds the NATS connection.

Routes: /graphql (GraphiQL in a browser, GraphQL over HTTP), /results/<id> (an operation's
result, for its owner: asyncResult's dataUrl), /graphiql/static/... (GraphiQL's
scripts and stylesheets, so it needs no internet), /healthz (the process is alive), /readyz
(NATS is connected and the stream and view bucket exist), /metrics (Prometheus).
"""

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import cast

import msgspec
import strawberry
from cross_web import AsyncHTTPRequestAdapter, HTTPException, StarletteRequestAdapter
from starlette.applications import Starlette
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from contracts.errors import ErrorCode
from services.actions.config import load_actions
from services.common.documents import DocumentCache
from services.common.identity import ANONYMOUS, UNAUTHENTICATED
from services.common.jetstream import connected_within
from services.common.layout import NotProvisionedError, is_ready
from services.common.metrics import EdgeMetrics, exposition
from services.common.results import RESULTS_PATH
from services.common.runtime import exit_process, freeze_startup_objects
from services.common.settings import Settings
from services.common.target import InProcessTarget, Target, load_schema
from services.common.tracing import TRACEPARENT, Tracing, valid_traceparent
from services.edge.actions import add_actions
from services.edge.auth import AuthenticationError, Authenticator, check_exposure
from services.edge.compiled_submits import CompiledSubmits, submit_compiled
from services.edge.connection import EdgeConnection
from services.edge.context import EdgeContext
from services.edge.downloads import ResultDownloads
from services.edge.errors import error_body, http_error_code
from services.edge.forwarding import ForwardedResult, Forwarding, UpstreamForwarding
from services.edge.graphiql import STATIC_PREFIX as GRAPHIQL_STATIC
from services.edge.graphiql import offline_page
from services.edge.graphiql import serve_asset as serve_graphiql_asset
from services.edge.http_limits import RequestLimits
from services.edge.json_input import UnreadableJSONError, read_json
from services.edge.media_types import (
    GRAPHQL_RESPONSE_JSON,
    JSON,
    is_json_request,
    is_request_error,
    response_media_type,
)
from services.edge.result_memory import ReadBudget, ResultMemory
from services.edge.schema import TRACE_ID_EXTENSION, build_schema
from services.edge.shape_limits import ShapeLimits
from services.edge.upstream_mode import EdgeUpstream
from services.edge.websockets import LegacyWSHandler, TransportWSHandler

log = logging.getLogger("asyncgate.edge")

# strawberry's json.dumps took 6 us for a submit's answer, msgspec 0.3 us (characters outside
# ASCII are sent as UTF-8 instead of \u escapes: the same JSON).
_encode_json = msgspec.json.Encoder().encode

# A request arriving while the edge's NATS connection moves to another server waits this long
# for it; past it (NATS really away) the request is refused as SERVICE_UNAVAILABLE.
RECONNECT_GRACE_S = 2.0


class _RequestAdapter(StarletteRequestAdapter):
    """strawberry's view of a request, with the media type lower-cased: media type names are
    case-insensitive (RFC 9110), and strawberry compares them as written."""

    @property
    def content_type(self) -> str | None:
        """The Content-Type header, lower-cased."""
        content_type = super().content_type
        return None if content_type is None else content_type.lower()


class EdgeGraphQL(GraphQL[EdgeContext, None]):
    """The GraphQL endpoint, building a typed EdgeContext for every request."""

    request_adapter_class = _RequestAdapter
    graphql_transport_ws_handler_class = TransportWSHandler
    graphql_ws_handler_class = LegacyWSHandler

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve GraphQL; a request refused before any GraphQL runs gets a coded JSON error."""
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)
            return
        request = Request(scope=scope, receive=receive)
        try:
            response = await self._answer(request)
            await response(scope, receive, send)
        finally:
            # The results this request read whole are sent (or never will be): give them back.
            budget = getattr(request.state, "read_budget", None)
            if isinstance(budget, ReadBudget):
                budget.release()

    async def _answer(self, request: Request) -> Response:
        try:
            response = None
            if self._compiled_submits is not None:
                response = await submit_compiled(
                    self, self._compiled_submits, request, trace_key=TRACE_ID_EXTENSION
                )
            if response is None:
                response = await self.run(request)
        except HTTPException as refused:
            response = JSONResponse(
                error_body(refused.reason, http_error_code(refused.status_code, refused.reason)),
                status_code=refused.status_code,
                media_type=response_media_type(request.headers.get("accept")),
                # RFC 9110: a 415 may say which media types the request could have been sent in.
                headers={"accept": JSON} if refused.status_code == 415 else None,
            )
        return response

    async def parse_http_body(
        self, request: AsyncHTTPRequestAdapter
    ) -> GraphQLRequestData | list[GraphQLRequestData]:
        """The GraphQL request in a GET's query or a POST's JSON body; any other POST body
        gets 415 (strawberry's own check answered 400, and took ``application/jsonx``)."""
        if request.method == "POST" and not is_json_request(request.content_type):
            raise HTTPException(415, f"Unsupported content type: a GraphQL POST is sent as {JSON}")
        return await super().parse_http_body(request)

    def encode_json(self, data: object) -> str:
        """Compact JSON, as strawberry writes it, by msgspec (for WebSocket messages and
        streamed parts; HTTP answers take the bytes directly)."""
        return _encode_json(data).decode()

    async def get_sub_response(self, request: Request | WebSocket) -> Response:
        """strawberry's sub-response, carrying the media type the client accepts."""
        sub_response = await super().get_sub_response(request)
        sub_response.media_type = response_media_type(request.headers.get("accept"))
        return sub_response

    def create_response(
        self,
        response_data: GraphQLHTTPResponse | list[GraphQLHTTPResponse],
        sub_response: Response,
    ) -> Response:
        """The GraphQL answer in the negotiated media type.

        In ``application/graphql-response+json`` a request that never ran (parse, validation,
        variable errors) has no ``data`` entry and status 400, as the GraphQL-over-HTTP spec
        asks; ``application/json`` keeps 200 and ``data: null`` for it.
        """
        media_type = sub_response.media_type or JSON
        status = sub_response.status_code or 200
        if (
            media_type == GRAPHQL_RESPONSE_JSON
            and isinstance(response_data, dict)
            and is_request_error(response_data)
        ):
            response_data = cast(
                GraphQLHTTPResponse, {k: v for k, v in response_data.items() if k != "data"}
            )
            status = sub_response.status_code or 400
        response = Response(_encode_json(response_data), status, media_type=media_type)
        response.headers.raw.extend(sub_response.headers.raw)
        response.background = sub_response.background
        return response

    def __init__(
        self,
        schema: strawberry.Schema,
        *,
        target: Target,
        forwarding: Forwarding | None = None,
        settings: Settings,
        connection: EdgeConnection,
        authenticator: Authenticator,
        shape: ShapeLimits,
        tracing: Tracing,
        metrics: EdgeMetrics,
        result_memory: ResultMemory,
        compile_submits: bool = False,
    ) -> None:
        super().__init__(schema)
        # Only where the schema carries nothing but the edge's own extensions: the compiled
        # path runs none (services/edge/compiled_submits.py).
        self._compiled_submits = CompiledSubmits(schema._schema, shape) if compile_submits else None
        self._tracing = tracing
        self._metrics = metrics
        self._authenticator = authenticator
        self._shape = shape
        self._target = target
        self._forwarding = forwarding
        self._retention = timedelta(seconds=settings.result_ttl_s)
        self._start_within_s = settings.start_within_s
        self._callback_hosts = settings.callback_hosts
        self._max_read_bytes = settings.max_read_bytes
        self._result_memory = result_memory
        self._connection = connection
        self._inner_documents = DocumentCache()
        self._graphiql_page = offline_page(super().graphql_ide_html)

    @property
    def graphql_ide_html(self) -> str:
        """strawberry's GraphiQL page, loading its scripts and styles from the edge."""
        return self._graphiql_page

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """The response body; an upstream's answer as it came, with the edge's extensions."""
        if not isinstance(result, ForwardedResult):
            return await super().process_result(request, result)
        body = cast(GraphQLHTTPResponse, dict(result.response))
        if result.extensions:
            body["extensions"] = {**(body.get("extensions") or {}), **result.extensions}
        return body

    async def on_ws_connect(self, context: EdgeContext) -> UnsetType | dict[str, object] | None:
        """Identify a WebSocket's caller from its connection_init payload; refuse if unknown."""
        try:
            context.principal = await self._authenticator.from_connection_params(
                context.connection_params
            )
        except AuthenticationError as error:
            raise ConnectionRejectionError(
                {"message": str(error), "code": ErrorCode.UNAUTHENTICATED}
            ) from None
        return UnsetType()

    def decode_json(self, data: str | bytes) -> object:
        """A JSON object from a body, a query parameter or a WebSocket frame.

        Anything else raises JSONDecodeError, the one error strawberry turns into a 400 (HTTP)
        or a 4400 close (WebSocket); strawberry's own reading answered 500 for bytes that are
        not text, for ``null``, for a lone surrogate and for deep nesting.
        """
        try:
            value = read_json(data)
        except UnreadableJSONError as error:
            raise json.JSONDecodeError(str(error), "", 0) from None
        if not isinstance(value, dict):
            raise json.JSONDecodeError("a JSON object was expected", "", 0)
        return value

    def parse_json(self, data: str | bytes) -> object:
        """``decode_json``, refusing with a 400 that says what was wrong."""
        try:
            return self.decode_json(data)
        except json.JSONDecodeError as error:
            raise HTTPException(400, f"Unable to read the request: {error.msg}") from None

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> EdgeContext:
        """Who is asking, and the NATS handles; an unidentified HTTP caller gets 401."""
        connection = self._connection
        nc, events, kv, http = connection.nc, connection.events, connection.kv, connection.http
        limits, listing = connection.limits, connection.listing
        idempotency, results = connection.idempotency, connection.results
        if (
            nc is None
            or results is None
            or events is None
            or kv is None
            or http is None
            or limits is None
            or listing is None
            or idempotency is None
        ):
            raise RuntimeError("the edge received a request before its lifespan started")
        read_budget: ReadBudget | None = ReadBudget(self._max_read_bytes, self._result_memory)
        if isinstance(request, WebSocket):
            # Identified from connection_init, in on_ws_connect, before any operation runs.
            principal = UNAUTHENTICATED if self._authenticator.enabled else ANONYMOUS
            read_budget = None  # the context lasts as long as the connection
        elif request.method == "GET" and self.should_render_graphql_ide(
            self.request_adapter_class(request)
        ):
            # The GraphiQL page runs nothing; its requests carry the credentials typed into it.
            principal = UNAUTHENTICATED
        else:
            try:
                principal = await self._authenticator.from_headers(request.headers)
            except AuthenticationError as error:
                raise HTTPException(401, str(error)) from None
        if read_budget is not None:
            # Given back once the response is sent (__call__).
            request.state.read_budget = read_budget
        return EdgeContext(
            principal=principal,
            events=events,
            kv=kv,
            views=connection.views,
            limits=limits,
            listing=listing,
            idempotency=idempotency,
            results=results,
            max_read_bytes=self._max_read_bytes,
            read_budget=read_budget,
            result_memory=self._result_memory,
            shape=self._shape,
            inner_documents=self._inner_documents,
            http=http,
            # Starlette's Headers: already a read-only, case-insensitive mapping; no copy.
            client_headers=request.headers,
            target=self._target,
            forwarding=self._forwarding,
            retention=self._retention,
            start_within_s=self._start_within_s,
            callback_hosts=self._callback_hosts,
            tracing=self._tracing,
            metrics=self._metrics,
            traceparent=valid_traceparent(request.headers.get(TRACEPARENT)),
            nats_connected=await connected_within(nc, RECONNECT_GRACE_S),
            response=response if isinstance(response, Response) else None,
        )


class _QuietKnownStartupFailure:
    """A start-up refused for a reason already logged in one line (JetStream not provisioned)
    is not logged again as a traceback: Starlette sends the whole traceback as the failure's
    message, and uvicorn logs it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def quiet_send(message: Message) -> None:
            known = getattr(scope.get("app"), "state", None)
            if message["type"] == "lifespan.startup.failed" and getattr(
                known, "not_provisioned", False
            ):
                message = {**message, "message": ""}
            await send(message)

        await self.app(scope, receive, quiet_send)


def _schema_and_target(
    settings: Settings, shape: ShapeLimits
) -> tuple[strawberry.Schema, Target, EdgeUpstream | None]:
    """The edge's schema and the target it serves: an upstream API (ASYNCGATE_UPSTREAM_URL,
    whose schema is loaded now) or ASYNCGATE_TARGET_SCHEMA in-process; actions added to both."""
    target_schema = None if settings.upstream_url else load_schema(settings.target_schema)
    schema = build_schema(
        target_schema, shape, extensions=() if target_schema else (UpstreamForwarding,)
    )
    if settings.actions_file is not None:
        add_actions(
            schema, load_actions(settings.actions_file, callback_hosts=settings.callback_hosts)
        )
    if target_schema is not None:
        return schema, InProcessTarget(target_schema), None
    upstream = EdgeUpstream(settings, schema)
    return schema, upstream.target, upstream


def create_app(
    settings: Settings, *, on_connection_lost: Callable[[], None] = exit_process
) -> Starlette:
    """Build the edge app; it connects to NATS when its lifespan starts, not before.

    ``on_connection_lost`` runs if nats-py gives up on the connection (default: exit).
    """
    authenticator = Authenticator(settings)
    check_exposure(settings, authenticator)
    if not authenticator.enabled:
        log.warning(
            "NO AUTHENTICATION IS CONFIGURED: every caller is the anonymous development "
            "principal. Fine on %s for development; set ASYNCGATE_JWT_SECRET (or a public key, "
            "JWKS or API keys file) before anyone else can reach this edge.",
            settings.http_host,
        )
    shape = ShapeLimits.from_settings(settings)
    schema, target, upstream = _schema_and_target(settings, shape)
    # A target schema's own extensions run on every request, submits included.
    target_extensions = target.schema.extensions if isinstance(target, InProcessTarget) else ()
    connection = EdgeConnection()
    tracing = Tracing.from_env("edge")
    metrics = EdgeMetrics()
    result_memory = ResultMemory(settings.max_reading_bytes)
    graphql_app = EdgeGraphQL(
        schema,
        target=target,
        forwarding=None if upstream is None else upstream.forwarding,
        settings=settings,
        connection=connection,
        authenticator=authenticator,
        shape=shape,
        tracing=tracing,
        metrics=metrics,
        result_memory=result_memory,
        compile_submits=upstream is None and not target_extensions,
    )

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            await connection.open(settings, on_connection_lost=on_connection_lost)
        except NotProvisionedError:
            app.state.not_provisioned = True  # the command's exit status says so
            raise
        freeze_startup_objects()
        if upstream is not None:
            upstream.start()
        try:
            yield
        finally:
            try:
                await connection.close()
                if upstream is not None:
                    await upstream.close()
            finally:
                await tracing.shutdown()

    downloads = ResultDownloads(connection, authenticator, timedelta(seconds=settings.result_ttl_s))

    async def healthz(_: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def readyz(_: Request) -> Response:
        nc, js = connection.nc, connection.js
        if nc is None or js is None or not nc.is_connected:
            return JSONResponse({"status": "not ready", "reason": "NATS not connected"}, 503)
        if not await is_ready(js):
            return JSONResponse({"status": "not ready", "reason": "stream or bucket missing"}, 503)
        return JSONResponse({"status": "ready"})

    async def prometheus(_: Request) -> Response:
        body, content_type = exposition(metrics.registry)
        return Response(body, headers={"Content-Type": content_type})

    async def home(_: Request) -> Response:
        return RedirectResponse("/graphql")

    async def refused(request: Request, error: Exception) -> Response:
        status = getattr(error, "status_code", 400)
        reason = str(getattr(error, "detail", "")) or "the request was refused"
        return JSONResponse(error_body(reason, http_error_code(status, reason)), status)

    app = Starlette(
        exception_handlers={StarletteHTTPException: refused},
        # Matched in order: the GraphQL endpoint, which takes nearly every request, first.
        routes=[
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql_app),
            Route("/", home),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", prometheus),
            Route(f"{RESULTS_PATH}/{{operation_id}}", downloads.serve, methods=["GET"]),
            Route(f"{GRAPHIQL_STATIC}{{path:path}}", serve_graphiql_asset, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.result_memory = result_memory
    app.add_middleware(_QuietKnownStartupFailure)
    app.add_middleware(
        RequestLimits,
        max_bytes=settings.max_body_bytes,
        max_header_bytes=settings.max_header_bytes,
    )
    return app
