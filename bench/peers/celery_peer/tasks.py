"""The peer's Celery app: one task that runs a GraphQL document against the same example schema
asyncgate serves, with Redis as broker and result backend (BENCH_REDIS_URL)."""

import os
from typing import Any

from celery import Celery

from examples.ledger.schema import schema

app = Celery("celery_peer")
app.conf.update(
    broker_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    result_backend=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0"),
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    # Celery's defaults otherwise: prefetch 4 per process, acks on receipt. A team choosing the
    # queue would start here, so the peer is not tuned beyond what the docs suggest.
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="celery_peer.run_query")
def run_query(query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run ``query`` against the example schema; the GraphQL response as a dict."""
    result = schema.execute_sync(query, variable_values=variables)
    response: dict[str, Any] = {"data": result.data}
    if result.errors:
        response["errors"] = [error.formatted for error in result.errors]
    return response
