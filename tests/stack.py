"""Running asyncgate's real services inside a test: FastStream apps and a uvicorn edge."""

import asyncio
import contextlib
import os
import subprocess
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import msgspec
import uvicorn
from faststream import FastStream
from nats.js import JetStreamContext
from starlette.types import ASGIApp

from contracts.events import OperationEvent, decode_event
from contracts.names import (
    ALL_EVENTS,
    DEAD_LETTER_STREAM,
    EVENT_STREAMS,
    PROJECTOR_DURABLE,
    REQUESTS_STREAM,
    STREAM,
    view_key,
)
from contracts.view import OperationView
from services.common.nats_server import free_port, nats_server_command, wait_for_port
from services.common.settings import Settings
from services.common.views import list_views
from services.edge.app import create_app as create_edge
from services.provision import provision_nats

T = TypeVar("T")


@contextlib.asynccontextmanager
async def running(app: FastStream) -> AsyncIterator[FastStream]:
    """Start a FastStream service app for the duration of the block."""
    await app.start()
    try:
        yield app
    finally:
        await app.stop()


@contextlib.asynccontextmanager
async def serving(app: ASGIApp, port: int) -> AsyncIterator[str]:
    """An ASGI app behind a real uvicorn server on ``port``; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def serving_edge(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The edge behind a real uvicorn server; yields an HTTP client pointed at it."""
    async with (
        serving(create_edge(settings), settings.http_port) as base_url,
        httpx.AsyncClient(base_url=base_url, timeout=10) as client,
    ):
        yield client


async def graphql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """POST one GraphQL request; return the decoded response (never a 5xx)."""
    body: dict[str, Any] = {"query": query}
    if variables is not None:
        body["variables"] = variables
    response = await client.post("/graphql", json=body)
    assert response.status_code < 500, response.text
    result: dict[str, Any] = response.json()
    return result


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float = 15.0, what: str = "condition"
) -> T:
    """Poll ``probe`` until it returns something other than None (bounded, never a timing test)."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = await probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout_s:g} s")
        await asyncio.sleep(0.05)


async def stored_events(js: JetStreamContext) -> list[tuple[int, OperationEvent]]:
    """Every readable event with its sequence in its stream: the requests stream's in its
    order, then the history stream's in its order."""
    events: list[tuple[int, OperationEvent]] = []
    for stream in (REQUESTS_STREAM, STREAM):
        info = await js.stream_info(stream)
        if info.state.messages == 0:
            continue
        subscription = await js.subscribe(ALL_EVENTS, stream=stream, ordered_consumer=True)
        try:
            for _ in range(info.state.messages):
                msg = await subscription.next_msg(timeout=5)
                with contextlib.suppress(msgspec.ValidationError, msgspec.DecodeError):
                    events.append((msg.metadata.sequence.stream, decode_event(msg.data)))
        finally:
            await subscription.unsubscribe()
    return events


@dataclass(frozen=True)
class ProjectorBacklog:
    """The projector's consumers, both event streams together."""

    pending: int
    ack_pending: int
    redelivered: int

    @property
    def idle(self) -> bool:
        """Nothing left to deliver and nothing delivered unacknowledged."""
        return self.pending == 0 and self.ack_pending == 0


async def projector_backlog(js: JetStreamContext) -> ProjectorBacklog:
    """What the projector's consumers have not delivered, not had acknowledged, redelivered."""
    infos = [await js.consumer_info(stream, PROJECTOR_DURABLE) for stream in EVENT_STREAMS]
    return ProjectorBacklog(
        pending=sum(info.num_pending or 0 for info in infos),
        ack_pending=sum(info.num_ack_pending or 0 for info in infos),
        redelivered=sum(info.num_redelivered or 0 for info in infos),
    )


async def stored_views(js: JetStreamContext) -> dict[str, OperationView]:
    """Every view in the bucket, by key."""
    views = await list_views(js, ">")
    return {view_key(view.tenant, view.principal, view.operation_id): view for view in views}


async def dead_letters(js: JetStreamContext) -> list[tuple[str, dict[str, str]]]:
    """(payload, headers) of every message set aside on the dead-letter stream."""
    info = await js.stream_info(DEAD_LETTER_STREAM)
    letters = []
    for sequence in range(info.state.first_seq, info.state.last_seq + 1):
        if info.state.messages == 0:
            break
        message = await js.get_msg(DEAD_LETTER_STREAM, sequence)
        letters.append(
            ((message.data or b"").decode(errors="replace"), dict(message.headers or {}))
        )
    return letters


@contextlib.contextmanager
def edge_in_background(store: Path, **configured: Any) -> Iterator[str]:
    """A nats-server and an edge on its own event loop in a thread; yields the edge's URL.

    For synchronous clients (hypothesis runs its cases synchronously); ``configured`` are
    Settings fields on top of the defaults.
    """
    nats_port, http_port = free_port(), free_port()
    nats = subprocess.Popen(
        nats_server_command(store_dir=store, port=nats_port),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(nats_port)
    stop = threading.Event()
    ready = threading.Event()

    async def serve() -> None:
        settings = Settings(
            nats_url=f"nats://127.0.0.1:{nats_port}", http_port=http_port, **configured
        )
        await provision_nats(settings)
        async with serving_edge(settings):
            ready.set()
            await asyncio.to_thread(stop.wait)

    thread = threading.Thread(target=asyncio.run, args=(serve(),), daemon=True)
    thread.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("the edge did not start")
        yield f"http://127.0.0.1:{http_port}"
    finally:
        stop.set()
        thread.join(30)
        nats.terminate()
        nats.wait(10)


# Words that give away Python's internals, which no answer to a client may carry.
PYTHON_DETAILS = (
    "Traceback",
    "codec",
    "RecursionError",
    "Error(",
    "surrogates not allowed",
    "object has no attribute",
)


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """Set environment variables for the block, then restore what was there before."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
