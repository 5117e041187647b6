"""Metrics and traces of a real stack: nats-server, the edge behind uvicorn, an executor and a
projector, all in this test's process.

Traces go out through the real OTLP exporter (what OTEL_EXPORTER_OTLP_ENDPOINT turns on) to a
small OTLP/HTTP receiver served here, which decodes the protobuf the way a collector does; an
in-memory exporter would skip the part a user configures.
"""

import contextlib
import dataclasses
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from contracts.names import (
    ALL_EVENTS,
    EVENT_STREAMS,
    EXECUTOR_DURABLE,
    PROJECTOR_DURABLE,
    REQUESTS_STREAM,
)
from services.common.event_log import EventLog
from services.common.metrics import ConsumerBacklog, new_registry
from services.common.nats_server import free_port
from services.common.settings import Settings
from services.common.tracing import TRACEPARENT
from services.executor.app import create_app as create_executor
from services.projector.app import create_app as create_projector
from tests.integration.test_projector import lifecycle
from tests.stack import environment, eventually, running, serving, serving_edge
from tests.support.processes import REPO_ROOT

pytestmark = [pytest.mark.nats, pytest.mark.e2e]

SUBMIT = 'mutation { asyncQuery(query: "%s") { operationId } }'
SUCCEEDS = "{ slowReport(seconds: 0) }"
# Runs past the executor's first progress event (after 1 s), so it stores four events.
REPORTS_PROGRESS = "{ slowReport(seconds: 1.5) }"
FAILS = "{ useCompany(no: 0) { __typename } }"
STATUS = "query($id: String!) { asyncResult(id: $id) { status errorCode } }"
CLIENT_TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_TRACEPARENT = f"00-{CLIENT_TRACE_ID}-00f067aa0ba902b7-01"


@dataclasses.dataclass(frozen=True)
class Span:
    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    operation_id: str


@contextlib.asynccontextmanager
async def otlp_receiver() -> AsyncIterator[tuple[str, list[Span]]]:
    """An OTLP/HTTP traces endpoint on a free port; yields its base URL and the spans it got."""
    spans: list[Span] = []

    async def traces(request: Request) -> Response:
        export = ExportTraceServiceRequest.FromString(await request.body())
        for resource_spans in export.resource_spans:
            resource = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attributes = {a.key: a.value.string_value for a in span.attributes}
                    spans.append(
                        Span(
                            service=resource["service.name"],
                            name=span.name,
                            trace_id=span.trace_id.hex(),
                            span_id=span.span_id.hex(),
                            parent_id=span.parent_span_id.hex(),
                            operation_id=attributes.get("asyncgate.operation_id", ""),
                        )
                    )
        return Response(b"", media_type="application/x-protobuf")

    app = Starlette(routes=[Route("/v1/traces", traces, methods=["POST"])])
    async with serving(app, free_port()) as base_url:
        yield base_url, spans


@contextlib.asynccontextmanager
async def stack(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The edge, an executor and a projector; yields a client of the edge."""
    async with (
        running(create_executor(settings)),
        running(create_projector(settings)),
        serving_edge(settings) as edge,
    ):
        yield edge


async def submit(
    edge: httpx.AsyncClient, query: str, headers: dict[str, str] | None = None
) -> tuple[str, str]:
    """Queue ``query``; its operation id and the trace id the response quotes."""
    response = await edge.post(
        "/graphql", json={"query": SUBMIT % query.replace('"', '\\"')}, headers=headers
    )
    answer = response.json()
    return answer["data"]["asyncQuery"]["operationId"], answer["extensions"]["asyncgate-trace-id"]


async def ended(edge: httpx.AsyncClient, operation_id: str) -> dict[str, Any]:
    """The operation's status and error code, once it has ended."""

    async def status() -> dict[str, Any] | None:
        response = await edge.post(
            "/graphql", json={"query": STATUS, "variables": {"id": operation_id}}
        )
        result: dict[str, Any] = response.json()["data"]["asyncResult"]
        return result if result["status"] in ("SUCCESS", "ERROR") else None

    return await eventually(status, what=f"{operation_id} ending")


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(url: str) -> Samples:
    """Every sample of a /metrics page, by name and labels."""
    async with httpx.AsyncClient() as client:
        response = await client.get(url)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """One sample's value (0 if it is not there)."""
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


async def counted(url: str, name: str, at_least: float = 1, **labels: str) -> Samples | None:
    """The samples of ``url`` once ``name`` has counted ``at_least`` (else None)."""
    samples = await scrape(url)
    return samples if value(samples, name, **labels) >= at_least else None


async def test_metrics_count_submitted_completed_failed_and_set_aside_operations(
    settings: Settings, js: JetStreamContext
) -> None:
    executor_port, projector_port = free_port(), free_port()
    settings = settings.replace(
        executor_metrics_port=executor_port, projector_metrics_port=projector_port
    )
    executor_url = f"http://127.0.0.1:{executor_port}/metrics"
    projector_url = f"http://127.0.0.1:{projector_port}/metrics"
    async with stack(settings) as edge:
        before = await scrape(f"{str(edge.base_url).rstrip('/')}/metrics")
        succeeded, _ = await submit(edge, SUCCEEDS)
        failed, _ = await submit(edge, FAILS)
        assert (await ended(edge, succeeded))["status"] == "SUCCESS"
        assert (await ended(edge, failed))["errorCode"] == "NOT_FOUND"
        await js.publish(f"ops.events.t1.{'p' * 8}.requested", b"\x00 not an event")

        edge_after = await scrape(f"{str(edge.base_url).rstrip('/')}/metrics")
        # Each service counts right after storing what it did, so a client may see the outcome
        # a moment before the count: wait for the counts rather than race them.
        executor = await eventually(
            lambda: counted(executor_url, "asyncgate_dead_letters_total", service="executor"),
            what="the executor's counts",
        )
        projector = await eventually(
            lambda: counted(projector_url, "asyncgate_operation_submit_to_final_seconds_count", 2),
            what="the projector's counts",
        )

    submitted = "asyncgate_operations_submitted_total"
    assert value(before, submitted, kind="query") == 0
    assert value(edge_after, submitted, kind="query") == 2
    assert value(executor, "asyncgate_operations_completed_total") == 1
    assert value(executor, "asyncgate_operations_failed_total", code="NOT_FOUND") == 1
    assert value(executor, "asyncgate_operation_queue_wait_seconds_count") == 2
    assert value(executor, "asyncgate_operation_run_seconds_count") == 2
    assert value(executor, "asyncgate_dead_letters_total", service="executor") == 1
    assert value(projector, "asyncgate_operation_submit_to_final_seconds_count") == 2
    # The consumers' backlogs, read at the scrape: everything was delivered and acknowledged.
    for samples, durable in ((executor, EXECUTOR_DURABLE), (projector, PROJECTOR_DURABLE)):
        labels = {"consumer": durable}
        assert ("asyncgate_consumer_pending_messages", tuple(labels.items())) in samples
        assert value(samples, "asyncgate_consumer_pending_messages", **labels) == 0
    assert value(executor, "process_resident_memory_bytes") > 0


async def test_a_consumers_backlog_is_summed_over_the_event_streams_it_reads(
    js: JetStreamContext, event_log: EventLog
) -> None:
    # Nothing consumes: the request waits for the executor, and the projector has the request
    # in one stream and the start in the other.
    requested, started, *_ = lifecycle("op-waiting")
    await event_log.append(requested, msg_id="r")
    await event_log.append(started, msg_id="s", after=0)
    # Each service has a registry of its own.
    projector, executor = new_registry(), new_registry()
    await ConsumerBacklog(projector, PROJECTOR_DURABLE, EVENT_STREAMS).refresh(js)
    await ConsumerBacklog(executor, EXECUTOR_DURABLE, (REQUESTS_STREAM,)).refresh(js)

    pending = "asyncgate_consumer_pending_messages"
    assert projector.get_sample_value(pending, {"consumer": PROJECTOR_DURABLE}) == 2
    assert executor.get_sample_value(pending, {"consumer": EXECUTOR_DURABLE}) == 1


async def test_one_trace_holds_the_edge_executor_and_projector_spans_of_an_operation(
    settings: Settings, js: JetStreamContext
) -> None:
    async with otlp_receiver() as (endpoint, spans):
        # Each service reads it as it is built, as from its environment in production; stopping
        # a service flushes its spans to the receiver.
        with environment(OTEL_EXPORTER_OTLP_ENDPOINT=endpoint):
            async with stack(settings) as edge:
                continued, continued_trace = await submit(
                    edge, REPORTS_PROGRESS, headers={TRACEPARENT: CLIENT_TRACEPARENT}
                )
                started, started_trace = await submit(edge, REPORTS_PROGRESS)
                for operation_id in (continued, started):
                    await ended(edge, operation_id)

    # A client's trace is continued; without one, the trace is the edge's, under the same id.
    assert continued_trace == CLIENT_TRACE_ID
    assert len(started_trace) == 32
    assert started_trace != CLIENT_TRACE_ID
    for operation_id, trace_id in ((continued, continued_trace), (started, started_trace)):
        mine = [span for span in spans if span.operation_id == operation_id]
        assert {span.trace_id for span in mine} == {trace_id}
        by_name = {span.name: span for span in mine}
        submit_span, run_span = by_name["asyncgate.submit"], by_name["asyncgate.run"]
        assert submit_span.service == "asyncgate-edge"
        assert run_span.service == "asyncgate-executor"
        folds = [span for span in mine if span.name == "asyncgate.fold"]
        assert folds
        assert {span.service for span in folds} == {"asyncgate-projector"}
        expected_root = "00f067aa0ba902b7" if operation_id == continued else ""
        assert submit_span.parent_id == expected_root
        assert run_span.parent_id == submit_span.span_id
        assert {span.parent_id for span in folds} <= {submit_span.span_id, run_span.span_id}

    # Every event names its trace: the request the edge's span, the others the executor's.
    headers = await event_headers(js)
    for operation_id in (continued, started):
        run_span_id = next(
            s.span_id for s in spans if s.operation_id == operation_id and s.name == "asyncgate.run"
        )
        kinds = {
            kind: traceparent for (op, kind), traceparent in headers.items() if op == operation_id
        }
        # slowReport reports its progress: those events are the run's too.
        assert set(kinds) == {"requested", "started", "progressed", "completed"}
        assert kinds["started"][36:52] == kinds["completed"][36:52] == run_span_id
        assert kinds["progressed"][36:52] == run_span_id


async def event_headers(js: JetStreamContext) -> dict[tuple[str, str], str]:
    """The traceparent header of every event ("" if none), by (operation id, event type)."""
    found: dict[tuple[str, str], str] = {}
    for stream in EVENT_STREAMS:
        info = await js.stream_info(stream)
        subscription = await js.subscribe(ALL_EVENTS, stream=stream, ordered_consumer=True)
        try:
            for _ in range(info.state.messages):
                msg = await subscription.next_msg(timeout=5)
                *_, operation_id, kind = msg.subject.split(".")
                found[(operation_id, kind)] = (msg.headers or {}).get(TRACEPARENT, "")
        finally:
            await subscription.unsubscribe()
    return found


async def test_with_tracing_off_a_client_traceparent_is_passed_on_and_nothing_else(
    settings: Settings, js: JetStreamContext
) -> None:
    async with stack(settings) as edge:
        continued, continued_trace = await submit(
            edge, REPORTS_PROGRESS, headers={TRACEPARENT: CLIENT_TRACEPARENT}
        )
        plain, plain_trace = await submit(edge, REPORTS_PROGRESS)
        malformed, malformed_trace = await submit(
            edge, REPORTS_PROGRESS, headers={TRACEPARENT: CLIENT_TRACEPARENT.upper()}
        )
        for operation_id in (continued, plain, malformed):
            await ended(edge, operation_id)

    headers = await event_headers(js)
    assert continued_trace == CLIENT_TRACE_ID
    assert {kind: headers[(continued, kind)] for kind in ("requested", "started", "completed")} == {
        "requested": CLIENT_TRACEPARENT,
        "started": CLIENT_TRACEPARENT,
        "completed": CLIENT_TRACEPARENT,
    }
    for operation_id, trace_id in ((plain, plain_trace), (malformed, malformed_trace)):
        assert trace_id not in (CLIENT_TRACE_ID, CLIENT_TRACE_ID.upper())
        # requested, started, progressed, completed: none names a trace.
        assert [value for (op, _), value in headers.items() if op == operation_id] == [""] * 4


def test_with_tracing_off_no_opentelemetry_sdk_is_loaded() -> None:
    environ = {name: value for name, value in os.environ.items() if not name.startswith("OTEL_")}
    script = (
        "import sys\n"
        "from services.common.settings import Settings\n"
        "from services.edge.app import create_app as edge\n"
        "from services.executor.app import create_app as executor\n"
        "from services.projector.app import create_app as projector\n"
        "settings = Settings()\n"
        "edge(settings), executor(settings), projector(settings)\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry.sdk')))\n"
    )
    finished = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO_ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert finished.stdout.strip() == "[]"
