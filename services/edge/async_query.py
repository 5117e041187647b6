"""asyncQuery: from its arguments to a queued operation.

The resolver's work, kept apart from the resolver so that the compiled path for submits
(services/edge/compiled_submits.py) queues exactly as the resolver does.
"""

from datetime import UTC, datetime
from typing import Any

from contracts.events import OperationRequested
from contracts.view import OperationView
from services.edge.context import EdgeContext
from services.edge.deadlines import positive_seconds, start_deadline
from services.edge.idempotency import key_of, submit_once
from services.edge.validation import validate_inner


async def queue_operation(
    context: EdgeContext,
    *,
    query: str,
    args: dict[str, Any] | None = None,
    operation_name: str | None = None,
    idempotency_key: str | None = None,
    start_within: int | None = None,
    timeout_s: int | None = None,
    callback_url: str | None = None,
) -> OperationView:
    """Check the inner document and the options, queue the operation (once per idempotency
    key), and return its view as stored; a coded GraphQLError for anything refused."""
    callback = context.callback_url(callback_url)
    key = key_of(context, idempotency_key)
    positive_seconds(start_within, "startWithin")
    positive_seconds(timeout_s, "timeout")
    operation = await validate_inner(
        context.target_graphql_schema,
        query=query,
        args=args,
        operation_name=operation_name,
        limits=context.shape,
        cache=context.inner_documents,
    )
    operation_id = context.new_operation_id()
    requested = OperationRequested(
        # The request is stored once per operation (deduplicated by its id), so the operation's
        # id is a unique id for the event too: one random id, not two.
        event_id=operation_id,
        operation_id=operation_id,
        tenant=context.principal.tenant,
        principal=context.principal.user,
        trace_id=context.trace_id,
        query=operation.query,
        variables=operation.variables,
        operation_name=operation.operation_name,
        start_by=start_deadline(start_within, context.start_within_s, datetime.now(UTC)),
        timeout_s=timeout_s,
        forwarded=context.forwarded_identity(operation_id),
        callback_url=callback,
    )
    asked: dict[str, object] = {
        "query": query,
        "variables": args or {},
        "operation_name": operation_name,
    }
    # Only when given, so that keys used before callbacks existed still match.
    if callback is not None:
        asked["callback_url"] = callback
    submitted = await submit_once(context, requested, key=key, asked=asked)
    return submitted.view
