"""The edge's GraphQL schema: the target schema's own fields plus asyncQuery, asyncResult and
asyncRequests, wire-compatible with Business NXT's async queries."""

import dataclasses
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, NewType

import strawberry
from graphql import GraphQLError, ObjectValueNode, ValueNode, value_from_ast_untyped
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig
from strawberry.tools import merge_types
from strawberry.types import ExecutionContext

from contracts.errors import ErrorCode
from contracts.view import CallbackState, OperationView, TaskStatus
from services.common.results import data_url
from services.common.target import document_caches, has_document_cache
from services.common.timestamps import iso_timestamp
from services.edge.async_query import queue_operation
from services.edge.cancel import CancelOutcome, cancel_operation
from services.edge.context import EdgeContext
from services.edge.delete import delete_operation
from services.edge.errors import (
    MaskUnexpectedErrors,
    coded_error,
    ensure_codes,
    unavailable_without_nats,
)
from services.edge.formats import operation_id_argument
from services.edge.reads import NotInListError, list_operations
from services.edge.shape_limits import ShapeLimits

Dictionary = NewType("Dictionary", dict[str, Any])

MAX_PAGE_SIZE = 1000
DEFAULT_PAGE_SIZE = 100
TRACE_ID_EXTENSION = "asyncgate-trace-id"


def _parse_dictionary(value: object) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise coded_error(
            "args must be a JSON object of variable names to values", ErrorCode.BAD_USER_INPUT
        )
    return value


def _parse_dictionary_literal(node: ValueNode, variables: dict[str, Any] | None = None) -> Any:
    if not isinstance(node, ObjectValueNode):
        raise coded_error(
            "args must be an object of variable names to values", ErrorCode.BAD_USER_INPUT
        )
    return value_from_ast_untyped(node, variables)


DICTIONARY_SCALAR = strawberry.scalar(
    name="Dictionary",
    description="A JSON object: the variables of an asynchronous query, by name.",
    serialize=lambda value: value,
    parse_value=_parse_dictionary,
    parse_literal=_parse_dictionary_literal,
)

strawberry.enum(TaskStatus, description="Where an asynchronous operation is in its life.")


@strawberry.type(description="How far a running operation has got, as its resolver last reported.")
class AsyncProgress:
    done: int = strawberry.field(description="Steps finished.")
    total: int = strawberry.field(description="Steps in all.")
    message: str | None = strawberry.field(description="What the resolver said about it.")


strawberry.enum(CallbackState, description="Where an operation's callback is.")


@strawberry.type(description="How delivering an operation's final state to its callback URL went.")
class AsyncCallback:
    state: CallbackState = strawberry.field(
        description="PENDING until its receiver takes it (DELIVERED) or it is given up (FAILED)."
    )
    attempts: int = strawberry.field(description="How many times it was POSTed.")
    last_error: str | None = strawberry.field(description="Why the newest failed attempt failed.")


@strawberry.type(description="An operation run in the background, and its result once it has one.")
class AsyncOperation:
    operation_id: str
    status: TaskStatus
    error: str | None = strawberry.field(description="Why the operation ended in ERROR.")
    error_code: str | None = strawberry.field(description="A stable code for the error.")

    @strawberry.field(
        description='The stringified JSON of the synchronous result; "null" until there is one. '
        "A result larger than the server reads whole (64 MiB by default) is an error with "
        "code RESULT_TOO_LARGE_TO_READ: download it from dataUrl instead."
    )
    async def data(self, info: strawberry.Info[EdgeContext, None]) -> str:
        return (await info.context.result_json(self.view)).decode()

    @strawberry.field(
        description="Where the result can be downloaded (GET, with the credentials this "
        "endpoint takes): the same JSON as data, of any size, gzipped if accepted. Null "
        "until there is a result."
    )
    def data_url(self) -> str | None:
        return data_url(self.view)

    created_at: str | None
    started_at: str | None
    completed_at: str | None
    attempts: int = strawberry.field(description="How many times an executor started it.")
    progress: AsyncProgress | None = strawberry.field(
        description="The newest progress it reported; null until it reports any."
    )
    callback: AsyncCallback | None = strawberry.field(
        description="How its callback went; null when it was queued without a callbackUrl."
    )
    view: strawberry.Private[OperationView]

    @classmethod
    def from_view(cls, view: OperationView) -> "AsyncOperation":
        """What a client sees of a stored view."""
        return cls(
            operation_id=view.operation_id,
            status=view.status,
            error=view.error,
            error_code=view.code,
            created_at=iso_timestamp(view.created_at),
            started_at=iso_timestamp(view.started_at),
            completed_at=iso_timestamp(view.completed_at),
            attempts=view.attempts,
            progress=None
            if view.progress is None
            else AsyncProgress(
                done=view.progress.done,
                total=view.progress.total,
                message=view.progress.message,
            ),
            callback=None
            if view.callback is None
            else AsyncCallback(
                state=view.callback.state,
                attempts=view.callback.attempts,
                last_error=view.callback.last_error,
            ),
            view=view,
        )


@strawberry.type
class AsyncQueries:
    @strawberry.field(description="An operation you queued, or null if there is none by that id.")
    async def async_result(
        self, info: strawberry.Info[EdgeContext, None], id: str
    ) -> AsyncOperation | None:
        context = info.context
        operation_id = operation_id_argument(id)
        with unavailable_without_nats("reading results", connected=context.nats_connected):
            view = await context.find_operation(operation_id)
        return None if view is None else AsyncOperation.from_view(view)

    @strawberry.field(description="Your retained operations, newest first.")
    async def async_requests(
        self,
        info: strawberry.Info[EdgeContext, None],
        status: TaskStatus | None = None,
        first: Annotated[
            int | None,
            strawberry.argument(
                description=f"Page size, 1 to {MAX_PAGE_SIZE}; null means {DEFAULT_PAGE_SIZE}."
            ),
        ] = DEFAULT_PAGE_SIZE,
        after: str | None = None,
    ) -> list[AsyncOperation]:
        # Nullable so that clients passing an unset variable (null) get the default page.
        page_size = DEFAULT_PAGE_SIZE if first is None else first
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise coded_error(
                f"first must be between 1 and {MAX_PAGE_SIZE}", ErrorCode.BAD_USER_INPUT
            )
        context = info.context
        with unavailable_without_nats("listing operations", connected=context.nats_connected):
            try:
                views = await list_operations(
                    context.events,
                    context.kv,
                    context.listing,
                    context.principal,
                    status=status,
                    first=page_size,
                    after=after,
                    now=datetime.now(UTC),
                    retention=context.retention,
                )
            except NotInListError:
                raise coded_error(
                    f"'{after}' is not an operation in this list", ErrorCode.BAD_USER_INPUT
                ) from None
        return [AsyncOperation.from_view(view) for view in views]


@strawberry.type
class AsyncSubscriptions:
    @strawberry.subscription(
        description="An operation's state now, then every change; completes after the final one."
    )
    async def async_result(
        self, info: strawberry.Info[EdgeContext, None], id: str
    ) -> AsyncIterator[AsyncOperation | None]:
        context = info.context
        operation_id = operation_id_argument(id)
        with unavailable_without_nats("following results", connected=context.nats_connected):
            states = context.follow_operation(operation_id)
            async for view in states:
                yield None if view is None else AsyncOperation.from_view(view)


@strawberry.type
class AsyncMutations:
    @strawberry.mutation(description="Queue a query or mutation to run in the background.")
    async def async_query(
        self,
        info: strawberry.Info[EdgeContext, None],
        *,
        query: str,
        args: Dictionary | None = None,
        operation_name: str | None = None,
        idempotency_key: Annotated[
            str | None,
            strawberry.argument(
                description="Submitting again with this key (within the retention) returns the "
                "same operation and queues nothing; also taken from the Idempotency-Key header."
            ),
        ] = None,
        start_within: Annotated[
            int | None,
            strawberry.argument(
                description="Seconds: not started by then, the operation never runs and ends "
                "ERROR with errorCode EXPIRED. Null: the server's default (none unless set)."
            ),
        ] = None,
        timeout_s: Annotated[
            int | None,
            strawberry.argument(
                name="timeout",
                description="Seconds a run may take before it ends with errorCode TIMEOUT; "
                "the server's own limit applies if smaller.",
            ),
        ] = None,
        callback_url: Annotated[
            str | None,
            strawberry.argument(
                description="When the operation has ended, its final state is POSTed here, "
                "signed (Standard Webhooks). Only hosts the server allows; see callback."
            ),
        ] = None,
    ) -> AsyncOperation:
        context = info.context
        if context.submit_failure is not None:
            # The compiled path met it already (services/edge/compiled_submits.py); raised
            # here, it is answered as every other error is.
            raise context.submit_failure
        view = await queue_operation(
            context,
            query=query,
            args=args,
            operation_name=operation_name,
            idempotency_key=idempotency_key,
            start_within=start_within,
            timeout_s=timeout_s,
            callback_url=callback_url,
        )
        return AsyncOperation.from_view(view)


@strawberry.type(description="What asyncCancel came to, and the operation's state after it.")
class AsyncCancellation:
    outcome: CancelOutcome
    operation: AsyncOperation


@strawberry.type
class AsyncCancelMutation:
    @strawberry.mutation(
        description=(
            "Cancel an operation you queued: a queued one ends at once and never runs, a running "
            "one is stopped and ends shortly; both end as ERROR with errorCode CANCELLED. A final "
            "one is left as it is. Null if you have no operation by that id."
        )
    )
    async def async_cancel(
        self, info: strawberry.Info[EdgeContext, None], id: str
    ) -> AsyncCancellation | None:
        context = info.context
        operation_id = operation_id_argument(id)
        with unavailable_without_nats("cancelling operations", connected=context.nats_connected):
            cancelled = await cancel_operation(context, operation_id)
        if cancelled is None:
            return None
        outcome, view = cancelled
        return AsyncCancellation(outcome=outcome, operation=AsyncOperation.from_view(view))


@strawberry.type(description="What asyncDelete came to.")
class AsyncDeletion:
    operation_id: str = strawberry.field(description="The operation deleted: it is gone.")
    cancelled: bool = strawberry.field(
        description="It had not ended, and was cancelled before it was deleted."
    )


@strawberry.type
class AsyncDeleteMutation:
    @strawberry.mutation(
        description=(
            "Delete an operation you queued and its result, for every reader and every replay; "
            "one that has not ended is cancelled first. Null if you have no operation by that "
            "id (one deleted already included)."
        )
    )
    async def async_delete(
        self, info: strawberry.Info[EdgeContext, None], id: str
    ) -> AsyncDeletion | None:
        context = info.context
        operation_id = operation_id_argument(id)
        with unavailable_without_nats("deleting operations", connected=context.nats_connected):
            cancelled = await delete_operation(context, operation_id)
        if cancelled is None:
            return None
        return AsyncDeletion(operation_id=operation_id, cancelled=cancelled)


class TraceIdExtension(SchemaExtension):
    """Adds the request's trace id to every response, as Business NXT does."""

    def get_results(self) -> dict[str, Any]:
        context = self.execution_context.context
        return {TRACE_ID_EXTENSION: context.trace_id} if isinstance(context, EdgeContext) else {}


class EdgeSchema(strawberry.Schema):
    """Logs only unexpected errors: a refused request is the client's news, not the operator's."""

    def process_errors(
        self, errors: list[GraphQLError], execution_context: ExecutionContext | None = None
    ) -> None:
        ensure_codes(errors)
        unexpected = [
            e for e in errors if (e.extensions or {}).get("code") == ErrorCode.INTERNAL_SERVER_ERROR
        ]
        super().process_errors(unexpected, execution_context)


def build_schema(
    target: strawberry.Schema | None,
    shape: ShapeLimits,
    *,
    extensions: Sequence[type[SchemaExtension] | Callable[[], SchemaExtension]] = (),
) -> strawberry.Schema:
    """The target schema with the async fields added to its Query and Mutation types (with
    no target: the async fields alone, as upstream mode starts from; ``extensions`` run last).
    """

    def root(target_type: type | None, own: tuple[type, ...], name: str) -> type:
        return merge_types(name, own if target_type is None else (target_type, *own))

    own_mutations = (AsyncMutations, AsyncCancelMutation, AsyncDeleteMutation)
    base_config = StrawberryConfig() if target is None else target.config
    config = dataclasses.replace(
        base_config, scalar_map={**base_config.scalar_map, Dictionary: DICTIONARY_SCALAR}
    )
    target_extensions = () if target is None else tuple(target.extensions)
    return EdgeSchema(
        query=root(None if target is None else target.query, (AsyncQueries,), "Query"),
        mutation=root(None if target is None else target.mutation, own_mutations, "Mutation"),
        subscription=root(
            None if target is None else target.subscription, (AsyncSubscriptions,), "Subscription"
        ),
        extensions=[
            *target_extensions,
            TraceIdExtension,
            MaskUnexpectedErrors,
            *shape.extensions(),
            # One cache: the target's, if an executor in this process gave it one.
            *(() if has_document_cache(target_extensions) else document_caches()),
            *extensions,
        ],
        config=config,
    )
