"""What tracing on sets up (services/common/tracing.py loads this only then): an OpenTelemetry
SDK tracer provider exporting over OTLP (HTTP, protobuf) in batches.

The exporter reads the standard OTEL_EXPORTER_OTLP_* variables (endpoint, headers, timeout,
compression) and the provider the standard sampler and resource variables.
"""

from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from services.common.tracing import root_trace_id


class OperationTraceIds(RandomIdGenerator):
    """Random ids, except that a span starting a trace takes the operation's trace id, which the
    edge chose before any span existed (it is in the events and the client's response)."""

    def generate_trace_id(self) -> int:
        """The operation's trace id if one is pending (``root_trace_id``), else a random one."""
        return root_trace_id.get() or super().generate_trace_id()


def otlp_provider(service_name: str) -> TracerProvider:
    """A tracer provider for ``service_name`` exporting every span it samples over OTLP."""
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: service_name}),
        id_generator=OperationTraceIds(),
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
