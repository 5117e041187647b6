"""The peer's HTTP endpoint: a Starlette app that enqueues the Celery task and answers its id at
once, as asyncQuery answers an operation id. Run under uvicorn like the edge."""

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from bench.peers.celery_peer.tasks import run_query


async def submit(request: Request) -> JSONResponse:
    """POST {"query": ..., "variables": ...}: enqueue the task; {"id": task id}."""
    body: dict[str, Any] = await request.json()
    query = body.get("query")
    if not isinstance(query, str):
        return JSONResponse({"error": "query must be a string"}, status_code=400)
    # .delay() is a blocking Redis round trip, done inline as a typical endpoint does it:
    # it is short, and a thread hop per request would cost more than it saves.
    task = run_query.delay(query, body.get("variables"))
    return JSONResponse({"id": task.id})


async def healthz(_: Request) -> Response:
    """200 once the app serves."""
    return Response("ok")


app = Starlette(routes=[Route("/submit", submit, methods=["POST"]), Route("/healthz", healthz)])
