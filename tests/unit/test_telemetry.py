"""Trace context parsing, when tracing turns on, and the bound on metric label values."""

import pytest
from prometheus_client.parser import text_string_to_metric_families

from contracts.events import OperationFailed
from services.common.metrics import MAX_FAILURE_CODES, OTHER_CODE, ExecutorMetrics, exposition
from services.common.tracing import Tracing, tracing_wanted, valid_traceparent

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (VALID, True),
        (VALID[:-2] + "00", True),  # not sampled: still carried on
        (VALID.upper(), False),  # the spec allows lowercase hex only
        ("01" + VALID[2:], False),  # a version this parser does not know
        ("00-" + "0" * 32 + VALID[35:], False),  # no trace
        (VALID[:36] + "0" * 16 + "-01", False),  # no parent
        (VALID + "-extra", False),
        (VALID[:-1], False),
        ("", False),
        (None, False),
    ],
)
def test_only_a_well_formed_traceparent_is_carried(value: str | None, kept: bool) -> None:
    assert valid_traceparent(value) == (value if kept else None)


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": ""}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}, False),
    ],
)
async def test_tracing_is_on_only_with_an_otlp_endpoint(
    environ: dict[str, str], wanted: bool
) -> None:
    tracing = Tracing.from_env("edge", environ)
    try:
        assert tracing_wanted(environ) is wanted
        assert tracing.enabled is wanted
    finally:
        await tracing.shutdown()


def test_failure_codes_beyond_the_bound_are_counted_as_other() -> None:
    metrics = ExecutorMetrics("executor", "executor", ("ASYNCGATE_REQUESTS",))
    failures = 2 * MAX_FAILURE_CODES
    for number in range(failures):
        metrics.count_outcome(
            OperationFailed(
                operation_id="o", tenant="t", principal="p", trace_id="0" * 32,
                code=f"CODE_{number}", error="failed",
            )
        )  # fmt: skip

    body, _ = exposition(metrics.registry)
    samples = {
        sample.labels["code"]: sample.value
        for family in text_string_to_metric_families(body.decode())
        if family.name == "asyncgate_operations_failed"
        for sample in family.samples
        if sample.name.endswith("_total")
    }
    assert len(samples) == MAX_FAILURE_CODES + 1
    assert samples[OTHER_CODE] == failures - MAX_FAILURE_CODES
    assert sum(samples.values()) == failures
