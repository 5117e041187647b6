"""Results for their owners: ``asyncResult.data``, ``dataUrl`` and the download behind it.

A result kept inline is in the view; a larger one is an object in the results bucket
(services/common/results.py) that the view refers to. ``data`` reads such an object whole, up
to ASYNCGATE_MAX_READ_BYTES per HTTP request (over it: RESULT_TOO_LARGE_TO_READ, naming
``dataUrl``). ``GET /results/<id>`` serves any result, inline or not, with the credentials
/graphql takes: streamed from the bucket a batch of chunks at a time (the edge never holds a
whole object), with Content-Length, or gzipped (chunked) when the client accepts gzip. Someone
else's operation, a missing one, one without a result yet and a malformed id all get the same
404.
"""

import gzip
import logging
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

import msgspec
import nats.errors
from graphql import GraphQLError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from contracts.errors import ErrorCode
from contracts.events import ResultReference
from contracts.view import OperationView
from services.common.identity import Principal
from services.common.jetstream import connected_within
from services.common.results import (
    ResultCorruptError,
    ResultStore,
    ResultUnavailableError,
    data_url,
)
from services.edge.auth import AuthenticationError, Authenticator
from services.edge.connection import EdgeConnection
from services.edge.errors import coded_error, error_body
from services.edge.formats import operation_id_argument
from services.edge.media_types import JSON, accepts_gzip
from services.edge.reads import find_operation
from services.edge.result_memory import ReadBudget

log = logging.getLogger("asyncgate.edge")

# zlib's level 6 took about three times as long as level 1 for a few percent less: a download
# is streamed as fast as the bucket gives it, so the fast end is the better trade.
GZIP_LEVEL: Final = 1
_GZIP_WBITS: Final = 31  # a gzip header and trailer around the deflate stream
# A request arriving while the connection moves to another server waits this long for it.
RECONNECT_GRACE_S: Final = 2.0
NO_RESULT: Final = "no result by that id"
_GZIPPED: Final = {"content-encoding": "gzip"}


async def result_json(
    view: OperationView, results: ResultStore, budget: ReadBudget, max_read_bytes: int
) -> bytes:
    """The result's JSON exactly as ``data`` returns it: from the view, or read from the
    results bucket within ``budget`` (a coded error, naming ``dataUrl``, past it)."""
    reference = view.response_ref
    if reference is None:
        return msgspec.json.encode(view.response)
    if reference.size > budget.left:
        raise coded_error(
            f"the result is {reference.size} bytes, more than asyncResult.data returns (at "
            f"most {max_read_bytes} bytes of results per request): download it from dataUrl",
            ErrorCode.RESULT_TOO_LARGE_TO_READ,
            dataUrl=data_url(view),
            size=reference.size,
        )
    if not await budget.hold(reference.size):
        raise coded_error(
            "the edge is reading as many stored results as it holds at once: try again, or "
            "download it from dataUrl",
            ErrorCode.RESULT_READS_BUSY,
            dataUrl=data_url(view),
            size=reference.size,
        )
    return await _read(results, reference)


async def _read(results: ResultStore, reference: ResultReference) -> bytes:
    try:
        return await results.read(reference)
    except ResultCorruptError:
        log.error("the stored result %s does not match its reference", reference.name)
        raise
    except ResultUnavailableError:
        raise coded_error(
            "the result is no longer stored (it expired or was deleted)", ErrorCode.NOT_FOUND
        ) from None


@dataclass(frozen=True)
class ResultDownloads:
    """``GET /results/<id>``: the caller's result, authenticated as /graphql is."""

    connection: EdgeConnection
    authenticator: Authenticator
    retention: timedelta

    async def serve(self, request: Request) -> Response:
        """The result, streamed; 401, 404 or 503 with a coded JSON error otherwise."""
        try:
            principal = await self.authenticator.from_headers(request.headers)
        except AuthenticationError as error:
            return JSONResponse(error_body(str(error), ErrorCode.UNAUTHENTICATED), 401)
        operation_id = request.path_params["operation_id"]
        gzipped = accepts_gzip(request.headers.get("accept-encoding"))
        try:
            return await self._result(
                principal, operation_id, gzipped=gzipped, head=request.method == "HEAD"
            )
        except ResultUnavailableError:
            return JSONResponse(error_body(NO_RESULT, ErrorCode.NOT_FOUND), 404)
        except (nats.errors.Error, TimeoutError) as error:
            log.warning("download of %s refused: %s", operation_id, type(error).__name__)
            return JSONResponse(
                error_body(
                    "downloading results is not possible right now; try again shortly",
                    ErrorCode.SERVICE_UNAVAILABLE,
                ),
                503,
                headers={"Retry-After": "1"},
            )

    async def _result(
        self, principal: Principal, operation_id: str, *, gzipped: bool, head: bool = False
    ) -> Response:
        """The principal's result; ResultUnavailableError for anything that is not one (the
        same 404 whatever the reason, so an id tells nobody whether it is someone else's).
        For ``head``, only the headers GET would send: a stored object is looked up, not read."""
        try:
            operation_id_argument(operation_id)
        except GraphQLError:
            raise ResultUnavailableError(operation_id) from None
        connection = self.connection
        nc, events, kv, results = (
            connection.nc,
            connection.events,
            connection.kv,
            connection.results,
        )
        if nc is None or events is None or kv is None or results is None:
            raise RuntimeError("the edge received a request before its lifespan started")
        if not await connected_within(nc, RECONNECT_GRACE_S):
            raise nats.errors.ConnectionClosedError
        view = await find_operation(
            events, kv, principal, operation_id, now=datetime.now(UTC), retention=self.retention
        )
        if view is None or data_url(view) is None:
            raise ResultUnavailableError(operation_id)
        reference = view.response_ref
        if reference is None:
            return _whole(msgspec.json.encode(view.response), gzipped=gzipped)
        if head:
            if not await results.exists(reference.name):
                raise ResultUnavailableError(operation_id)
            if gzipped:
                response = Response(media_type=JSON, headers=_headers(_GZIPPED))
                # GET streams it compressed, with no length known beforehand.
                del response.headers["content-length"]
                return response
            length = {"content-length": str(reference.size)}
            return Response(media_type=JSON, headers=_headers(length))
        chunks = await _opened(results, reference)
        if gzipped:
            return StreamingResponse(
                _gzip_stream(chunks), media_type=JSON, headers=_headers(_GZIPPED)
            )
        return StreamingResponse(
            chunks, media_type=JSON, headers=_headers({"content-length": str(reference.size)})
        )


def _headers(more: dict[str, str] | None = None) -> dict[str, str]:
    # The body is the caller's own: no shared cache may keep it.
    return {"cache-control": "private", "vary": "accept-encoding", **(more or {})}


def _whole(body: bytes, *, gzipped: bool) -> Response:
    if gzipped:
        compressed = gzip.compress(body, compresslevel=GZIP_LEVEL)
        return Response(compressed, media_type=JSON, headers=_headers(_GZIPPED))
    return Response(body, media_type=JSON, headers=_headers())


async def _opened(results: ResultStore, reference: ResultReference) -> AsyncIterator[bytes]:
    """The object's chunks, its first already read, so that an object that is not there is a
    404 rather than a response broken off after its headers."""
    chunks = results.chunks(reference)
    first = await anext(chunks, b"")

    async def everything() -> AsyncIterator[bytes]:
        yield first
        async for chunk in chunks:
            yield chunk

    return everything()


async def _gzip_stream(chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    compressor = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
    async for chunk in chunks:
        compressed = compressor.compress(chunk)
        if compressed:
            yield compressed
    yield compressor.flush()
