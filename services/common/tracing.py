"""Traces through the whole flow: one trace per operation, across the edge, the executor and the
projector, linked by a W3C ``traceparent`` header on every event.

Off unless ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set.
Off, no OpenTelemetry SDK is loaded and no span is made: a ``traceparent`` the client sent is
carried on, unchanged, to the events of its operations, and that is all. On, the edge makes a
``submit`` span (child of the client's span, if it sent one), the executor a ``run`` span and
the projector a ``fold`` span, each a child of the span named by the event it handles, and the
events an executor stores name its ``run`` span.

Either way an operation's trace id is decided once, at the edge: the client's, or a fresh random
one. It is the ``trace_id`` of every event and the id in the GraphQL response's extensions, so a
span that starts a trace (no ``traceparent`` came with the event) takes that id too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import TYPE_CHECKING, Final

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

if TYPE_CHECKING:
    from nats.aio.msg import Msg
    from opentelemetry.sdk.trace import TracerProvider

TRACEPARENT: Final = "traceparent"
# Either turns tracing on (the second names the traces endpoint alone, as OpenTelemetry reads it).
ENDPOINT_VARIABLES: Final = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")

# Version 00 of https://www.w3.org/TR/trace-context/: version, trace id, parent id, flags.
_TRACEPARENT_FORM: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_NO_TRACE: Final = "0" * 32
_NO_SPAN: Final = "0" * 16

# The traceparent the events this task stores carry (the span in hand, or what came in).
_carried: ContextVar[str | None] = ContextVar("asyncgate_traceparent", default=None)
# The trace id a span starting a trace must take (read by the SDK's id generator, see
# services/common/trace_export.py); 0: any.
root_trace_id: ContextVar[int] = ContextVar("asyncgate_root_trace_id", default=0)

_NOTHING: Final = contextlib.nullcontext()


def valid_traceparent(value: str | None) -> str | None:
    """``value`` if it is a W3C traceparent (version 00, neither id all zeros), else None."""
    if value is None or len(value) != 55:
        return None
    match = _TRACEPARENT_FORM.fullmatch(value)
    if match is None or match[1] == _NO_TRACE or match[2] == _NO_SPAN:
        return None
    return value


def trace_id_of(traceparent: str) -> str:
    """The trace id (32 hex digits) of a valid traceparent."""
    return traceparent[3:35]


def traceparent_of(msg: Msg) -> str | None:
    """The traceparent header of a delivered event, if it has one."""
    headers = msg.headers
    return None if headers is None else headers.get(TRACEPARENT)


def add_traceparent(headers: dict[str, str]) -> None:
    """Put the traceparent of the work in hand, if there is one, on an event's headers."""
    carried = _carried.get()
    if carried is not None:
        headers[TRACEPARENT] = carried


def tracing_wanted(environ: Mapping[str, str] | None = None) -> bool:
    """True if the environment names an OTLP endpoint (and does not disable the SDK)."""
    environ = os.environ if environ is None else environ
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES)


class Tracing:
    """One service's spans; ``Tracing()`` makes none (tracing off)."""

    def __init__(self, provider: TracerProvider | None = None) -> None:
        self._provider = provider
        self._tracer = None if provider is None else provider.get_tracer("asyncgate")

    @classmethod
    def from_env(cls, service: str, environ: Mapping[str, str] | None = None) -> Tracing:
        """Exporting over OTLP if the environment asks for it (see ``tracing_wanted``)."""
        if not tracing_wanted(environ):
            return cls()
        # Loaded only when wanted: with tracing off the SDK is not even imported.
        from services.common.trace_export import otlp_provider  # noqa: PLC0415

        return cls(otlp_provider(f"asyncgate-{service}"))

    @property
    def enabled(self) -> bool:
        """True if spans are made and exported."""
        return self._tracer is not None

    def span(
        self,
        name: str,
        *,
        kind: SpanKind,
        parent: str | None,
        trace_id: str,
        operation_id: str,
    ) -> contextlib.AbstractContextManager[object]:
        """A span for one step of operation ``operation_id``, as a context manager.

        ``parent`` is the traceparent the step came with (None: the span starts the trace, with
        ``trace_id``). Events stored inside the block name this span. Tracing off: no span, and
        events stored from now on in this task carry ``parent`` on.
        """
        if self._tracer is None:
            _carried.set(parent)
            return _NOTHING
        return self._recording(name, kind, parent, trace_id, operation_id)

    @contextlib.contextmanager
    def _recording(
        self, name: str, kind: SpanKind, parent: str | None, trace_id: str, operation_id: str
    ) -> Iterator[object]:
        assert self._tracer is not None  # noqa: S101 (span() checked it)
        context = _remote_parent(parent)
        token = root_trace_id.set(_trace_id_number(trace_id) if context is None else 0)
        try:
            span = self._tracer.start_span(
                f"asyncgate.{name}",
                context=context,
                kind=kind,
                attributes={"asyncgate.operation_id": operation_id, "messaging.system": "nats"},
            )
        finally:
            root_trace_id.reset(token)
        span_context = span.get_span_context()
        carried = _carried.set(
            f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-"
            f"{int(span_context.trace_flags):02x}"
        )
        try:
            with trace.use_span(span, end_on_exit=True):
                yield span
        finally:
            _carried.reset(carried)

    async def shutdown(self) -> None:
        """Export what is still buffered and stop (in a thread: the export may be served by
        this very event loop, as in tests)."""
        if self._provider is not None:
            await asyncio.to_thread(self._provider.shutdown)


def _remote_parent(traceparent: str | None) -> Context | None:
    """The OpenTelemetry context of the span ``traceparent`` names (None if none is named)."""
    valid = valid_traceparent(traceparent)
    if valid is None:
        return None
    span_context = trace.SpanContext(
        trace_id=int(valid[3:35], 16),
        span_id=int(valid[36:52], 16),
        is_remote=True,
        trace_flags=trace.TraceFlags(int(valid[53:55], 16)),
    )
    return trace.set_span_in_context(trace.NonRecordingSpan(span_context))


def _trace_id_number(trace_id: str) -> int:
    """``trace_id`` as the SDK's number, or 0 (let it choose) if it is not 32 hex digits."""
    if len(trace_id) != 32:
        return 0
    try:
        return int(trace_id, 16)
    except ValueError:
        return 0
