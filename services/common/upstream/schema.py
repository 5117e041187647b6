"""The upstream API's schema: introspected over HTTP, or read from an SDL file for APIs that
refuse introspection; loaded once at start, then again on SIGHUP and every
``ASYNCGATE_UPSTREAM_SCHEMA_REFRESH_S``.

Start-up needs a schema: an upstream that cannot be reached is asked again a few times with a
growing pause, then the service stops with one line saying why (never a stack trace). Later
refreshes that fail keep the schema in hand and log a warning: the upstream being briefly away
is no reason to stop serving.
"""

import asyncio
import contextlib
import json
import logging
import signal
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
from graphql import (
    GraphQLError,
    GraphQLSchema,
    build_ast_schema,
    build_client_schema,
    get_introspection_query,
    parse,
    print_schema,
)

log = logging.getLogger(__name__)

INTROSPECTION_QUERY: Final = get_introspection_query(descriptions=True, specified_by_url=True)
# Pauses between start-up attempts at an unreachable upstream (then the service stops).
START_PAUSES_S: Final = (0.5, 1.0, 2.0)


class UpstreamUnavailableError(RuntimeError):
    """The upstream's schema could not be had at start (one line, no secrets)."""


class UpstreamSchemaError(UpstreamUnavailableError):
    """What the upstream (or the SDL file) gave is no usable schema; asking again won't help."""


def introspection_request() -> dict[str, Any]:
    """The body of the introspection POST."""
    return {"query": INTROSPECTION_QUERY, "operationName": "IntrospectionQuery"}


def schema_from_introspection(url: str, status: int, body: bytes) -> GraphQLSchema:
    """The schema in an introspection answer; UpstreamUnavailableError for a passing failure
    (5xx), UpstreamSchemaError for one that will not pass by asking again."""
    if status >= 500:
        raise UpstreamUnavailableError(f"the upstream at {url} failed ({status})")
    try:
        answer = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise UpstreamSchemaError(
            f"the upstream at {url} answered {status} with no JSON to introspection"
        ) from None
    data = answer.get("data") if isinstance(answer, dict) else None
    if not isinstance(data, dict) or "__schema" not in data:
        errors = answer.get("errors") if isinstance(answer, dict) else None
        reason = (
            "; ".join(str(e.get("message")) for e in errors if isinstance(e, dict))
            if isinstance(errors, list)
            else f"status {status}"
        )
        raise UpstreamSchemaError(
            f"the upstream at {url} refused introspection ({reason}); "
            "set ASYNCGATE_UPSTREAM_SCHEMA_FILE to its schema in SDL"
        )
    try:
        return build_client_schema(data)  # type: ignore[arg-type]  # a checked JSON object
    except (GraphQLError, TypeError, KeyError, ValueError) as error:
        raise UpstreamSchemaError(
            f"the upstream at {url} answered introspection with no usable schema: {error}"
        ) from None


def schema_from_sdl(path: Path) -> GraphQLSchema:
    """The schema an SDL file describes; UpstreamSchemaError naming the problem otherwise."""
    try:
        return build_ast_schema(parse(path.read_text(encoding="utf-8")))
    except OSError as error:
        raise UpstreamSchemaError(
            f"ASYNCGATE_UPSTREAM_SCHEMA_FILE={str(path)!r}: {error.strerror}"
        ) from None
    except (GraphQLError, TypeError) as error:
        message = str(error).splitlines()[0]
        raise UpstreamSchemaError(
            f"ASYNCGATE_UPSTREAM_SCHEMA_FILE={str(path)!r} is no usable schema: {message}"
        ) from None


def _unreachable(url: str, error: httpx.HTTPError) -> UpstreamUnavailableError:
    kind = "did not answer in time" if isinstance(error, httpx.TimeoutException) else "unreachable"
    return UpstreamUnavailableError(f"the upstream at {url} is {kind} ({type(error).__name__})")


@dataclass(frozen=True)
class SchemaSource:
    """Where the upstream's schema comes from: ``file`` (SDL) if set, else introspection."""

    url: str
    headers: Mapping[str, str]
    timeout_s: float
    file: Path | None = None

    def load_at_start(self, *, sleep: Callable[[float], None] = time.sleep) -> GraphQLSchema:
        """The schema, asked for a few times with growing pauses while the upstream is
        unreachable or failing; UpstreamUnavailableError after the last try.

        Synchronous: composition roots call it while building the app, before any loop runs.
        """
        if self.file is not None:
            return schema_from_sdl(self.file)
        with httpx.Client(timeout=self.timeout_s) as http:
            for pause in (*START_PAUSES_S, None):
                try:
                    response = http.post(
                        self.url, json=introspection_request(), headers=dict(self.headers)
                    )
                    return schema_from_introspection(
                        self.url, response.status_code, response.content
                    )
                except UpstreamSchemaError:
                    raise
                except (UpstreamUnavailableError, httpx.HTTPError) as error:
                    failure = (
                        _unreachable(self.url, error)
                        if isinstance(error, httpx.HTTPError)
                        else error
                    )
                    if pause is None:
                        raise failure from None
                    log.warning("%s; asking again in %g s", failure, pause)
                    sleep(pause)
        raise AssertionError("unreachable")  # the loop returns or raises

    async def load(self, http: httpx.AsyncClient) -> GraphQLSchema:
        """The schema now (one try); UpstreamUnavailableError if it cannot be had."""
        if self.file is not None:
            return await asyncio.to_thread(schema_from_sdl, self.file)
        try:
            response = await http.post(
                self.url,
                json=introspection_request(),
                headers=dict(self.headers),
                timeout=self.timeout_s,
            )
        except httpx.HTTPError as error:
            raise _unreachable(self.url, error) from None
        return schema_from_introspection(self.url, response.status_code, response.content)


class SchemaRefresher:
    """Loads the schema again every ``interval_s`` (0: never by time) and on SIGHUP, and hands
    a changed one to ``on_change``; a failed load keeps the schema in hand."""

    def __init__(
        self,
        source: SchemaSource,
        http: httpx.AsyncClient,
        current: GraphQLSchema,
        *,
        interval_s: float,
        on_change: Callable[[GraphQLSchema], None],
    ) -> None:
        self._source = source
        self._http = http
        self._printed = print_schema(current)
        self._interval_s = interval_s
        self._on_change = on_change
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sighup = False

    async def refresh(self) -> bool:
        """Load the schema now; True if it changed (and was handed on)."""
        try:
            schema = await self._source.load(self._http)
            printed = print_schema(schema)
            if printed == self._printed:
                return False
            self._on_change(schema)
        except UpstreamUnavailableError as error:
            log.warning("upstream schema not refreshed, the one in hand stays: %s", error)
            return False
        self._printed = printed
        log.info("upstream schema refreshed: it changed")
        return True

    def start(self, *, on_sighup: bool = True) -> None:
        """Refresh in the background from now on (and on SIGHUP unless told not to listen)."""
        loop = asyncio.get_running_loop()
        if on_sighup:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                # Not on the main thread (a test's server thread): no signal, timer only.
                loop.add_signal_handler(signal.SIGHUP, self._wake.set)
                self._sighup = True
        self._task = asyncio.create_task(self._run(), name="upstream-schema-refresh")

    async def _run(self) -> None:
        timeout = self._interval_s or None
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            await self.refresh()

    async def stop(self) -> None:
        """Stop refreshing (and listening for SIGHUP)."""
        if self._sighup:
            asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
            self._sighup = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
