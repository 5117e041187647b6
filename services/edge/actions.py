"""The action fields on the edge, generated as Hasura generates them.

Per asynchronous action ``a``: ``mutation { a(<its arguments>): uuid! }`` queues it and answers
the action id; ``query { a(id: uuid!): a }`` and ``subscription { a(id: uuid!): a }`` give
``id``, ``created_at``, ``output`` and ``errors``. A synchronous action is a field of its own
type that calls the handler inside the request.

The fields are graphql-core fields on new root types; every other type of the edge schema,
strawberry's included, is reused as it is.
"""

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import msgspec
import strawberry
from graphql import (
    GraphQLArgument,
    GraphQLField,
    GraphQLNamedType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLOutputType,
    GraphQLResolveInfo,
    GraphQLScalarType,
    GraphQLSchema,
    print_ast,
    validate_schema,
)

from contracts.events import ActionInvocation, OperationRequested
from contracts.view import OperationView, TaskStatus
from services.actions.config import HASURA_SCALARS, ActionDefinition, ActionsConfig
from services.actions.handler import ActionSucceeded, call_handler, forwardable
from services.actions.hasura import UNEXPECTED, async_errors, hasura_error
from services.common.identity import Principal
from services.common.identity import session_variables as hasura_session
from services.common.timestamps import iso_timestamp
from services.edge.context import EdgeContext
from services.edge.deadlines import start_deadline
from services.edge.errors import PassedOnError, unavailable_without_nats
from services.edge.formats import operation_id_argument
from services.edge.idempotency import key_of, submit_once

# The queueing mutation's own argument, beside the action's: see services/edge/idempotency.py.
IDEMPOTENCY_ARGUMENT = "idempotencyKey"


class ActionSchemaError(ValueError):
    """The actions cannot be added to the edge schema (a name is taken, say)."""


def session_variables(principal: Principal) -> dict[str, str]:
    """Hasura's session variables for a principal (from the caller's identity, never the body);
    an action handler is told role ``user`` when the token names none, as Hasura does."""
    return {"x-hasura-role": "user", **hasura_session(principal)}


def request_query(info: GraphQLResolveInfo[EdgeContext]) -> str:
    """The client's operation as text, sent to the handler as ``request_query``."""
    parts = [info.operation, *info.fragments.values()]
    return "\n".join(print_ast(part) for part in parts)


async def action_result(context: EdgeContext, view: OperationView) -> dict[str, Any]:
    """What Hasura's async action query answers for a stored operation: ``errors`` is Hasura's
    stored error object (``{"error", "path", "code"}``), for the handler's failure or, for one
    of asyncgate's own endings (CANCELLED, EXPIRED, ...), with asyncgate's code. An output large
    enough to be kept in the results bucket is read from there, within the request's read
    limit."""
    response = view.response
    if view.response_ref is not None:
        response = msgspec.json.decode(await context.result_json(view))
    output = errors = None
    if view.status is TaskStatus.SUCCESS and response is not None:
        output = response.get("data")
    elif view.status is TaskStatus.ERROR:
        stored = (response or {}).get("errors") or [
            hasura_error(view.error or "", code=view.code or UNEXPECTED)
        ]
        errors = async_errors(stored[0])
    return {
        "id": view.operation_id,
        "created_at": iso_timestamp(view.created_at),
        "output": output,
        "errors": errors,
    }


def _variables(info: GraphQLResolveInfo[EdgeContext]) -> dict[str, Any]:
    # graphql-core 3.3 declares VariableValues here, but strawberry's execution passes the
    # plain dict of coerced values; accept both.
    values: Any = info.variable_values
    return dict(getattr(values, "coerced", values))


def _queue(action: ActionDefinition) -> Callable[..., Any]:
    async def resolve(_: object, info: GraphQLResolveInfo[EdgeContext], **arguments: Any) -> str:
        context: EdgeContext = info.context
        key = key_of(context, arguments.pop(IDEMPOTENCY_ARGUMENT, None))
        headers = forwardable(context.client_headers) if action.forward_client_headers else {}
        operation_id = context.new_operation_id()
        requested = OperationRequested(
            event_id=operation_id,  # stored once per operation, as asyncQuery's request
            operation_id=operation_id,
            tenant=context.principal.tenant,
            principal=context.principal.user,
            trace_id=context.trace_id,
            query=request_query(info),
            variables=_variables(info),
            operation_name=info.operation.name.value if info.operation.name else None,
            action=ActionInvocation(
                name=action.name,
                input=arguments,
                session_variables=session_variables(context.principal),
                client_headers=headers,
            ),
            start_by=start_deadline(None, context.start_within_s, datetime.now(UTC)),
            callback_url=action.callback_url,
        )
        asked = {"action": action.name, "input": arguments}
        submitted = await submit_once(context, requested, key=key, asked=asked)
        return submitted.operation_id

    return resolve


def _read(action: ActionDefinition) -> Callable[..., Any]:
    async def resolve(
        _: object, info: GraphQLResolveInfo[EdgeContext], id: str
    ) -> dict[str, Any] | None:
        context: EdgeContext = info.context
        operation_id = operation_id_argument(id)
        with unavailable_without_nats("reading actions", connected=context.nats_connected):
            view = await context.find_operation(operation_id)
        if view is None or view.action != action.name:
            return None
        return await action_result(context, view)

    return resolve


def _follow(action: ActionDefinition) -> Callable[..., AsyncIterator[dict[str, Any] | None]]:
    async def subscribe(
        _: object, info: GraphQLResolveInfo[EdgeContext], id: str
    ) -> AsyncIterator[dict[str, Any] | None]:
        context: EdgeContext = info.context
        operation_id = operation_id_argument(id)
        with unavailable_without_nats("following actions", connected=context.nats_connected):
            states = context.follow_operation(operation_id)
            async for view in states:
                if view is None or view.action != action.name:
                    yield None
                    return
                yield await action_result(context, view)

    return subscribe


def _call(action: ActionDefinition, output_type: GraphQLOutputType) -> Callable[..., Any]:
    async def resolve(_: object, info: GraphQLResolveInfo[EdgeContext], **arguments: Any) -> Any:
        context: EdgeContext = info.context
        result = await call_handler(
            context.http,
            action,
            output_type,
            input=arguments,
            session_variables=session_variables(context.principal),
            request_query=request_query(info),
            client_headers=forwardable(context.client_headers),
        )
        if isinstance(result, ActionSucceeded):
            if context.response is not None:
                for cookie in result.set_cookies:
                    context.response.headers.append("set-cookie", cookie)
            return result.output
        first = result.errors[0]
        raise PassedOnError(str(first.get("message")), extensions=first.get("extensions"))

    return resolve


def _pass_through(payload: object, _: GraphQLResolveInfo[EdgeContext], **__: Any) -> object:
    return payload


def _nullable(output_type: GraphQLOutputType) -> GraphQLOutputType:
    inner: GraphQLOutputType = (
        output_type.of_type if isinstance(output_type, GraphQLNonNull) else output_type
    )
    return inner


def _with_fields(
    root: GraphQLObjectType | None, name: str, fields: dict[str, GraphQLField]
) -> GraphQLObjectType | None:
    if root is None and not fields:
        return None
    if root is None:
        return GraphQLObjectType(name, fields)
    taken = set(root.fields) & set(fields)
    if taken:
        raise ActionSchemaError(f"{name} already has a field named {', '.join(sorted(taken))}")
    kwargs = root.to_kwargs()
    kwargs["fields"] = {**root.fields, **fields}
    return GraphQLObjectType(**kwargs)


def add_actions(schema: strawberry.Schema, config: ActionsConfig) -> None:
    """Add every action of ``config`` to ``schema`` (in place)."""
    base = schema._schema
    declared = {d.name.value for d in config.type_definitions}
    clashes = sorted(declared & set(base.type_map))
    if clashes:
        raise ActionSchemaError(f"actions.graphql redefines {', '.join(clashes)}")
    action_types: dict[str, GraphQLNamedType] = {
        name: named
        for name, named in config.schema.type_map.items()
        if name in declared or (name in HASURA_SCALARS and name not in base.type_map)
    }

    def scalar(name: str) -> GraphQLScalarType:
        found = base.type_map.get(name) or action_types.get(name) or config.schema.type_map[name]
        if not isinstance(found, GraphQLScalarType):
            raise ActionSchemaError(f"{name} must be a scalar")
        action_types.setdefault(name, found)
        return found

    roots: dict[str, dict[str, GraphQLField]] = {"Query": {}, "Mutation": {}, "Subscription": {}}
    for action in config.actions.values():
        field = config.field(action.name)
        output_type = field.type
        root = "Mutation" if action.operation == "mutation" else "Query"
        if not action.is_async:
            roots[root][action.name] = GraphQLField(
                output_type, args=field.args, resolve=_call(action, output_type)
            )
            continue
        result_type = GraphQLObjectType(
            action.name,
            {
                "id": GraphQLField(GraphQLNonNull(scalar("uuid"))),
                "created_at": GraphQLField(GraphQLNonNull(scalar("timestamptz"))),
                "output": GraphQLField(_nullable(output_type)),
                "errors": GraphQLField(scalar("json")),
            },
            description=f"The state of an asynchronous {action.name} action.",
        )
        by_id = {"id": GraphQLArgument(GraphQLNonNull(scalar("uuid")))}
        if IDEMPOTENCY_ARGUMENT in field.args:
            raise ActionSchemaError(
                f"{action.name} may not take an argument {IDEMPOTENCY_ARGUMENT}"
            )
        queue_args = {
            **field.args,
            IDEMPOTENCY_ARGUMENT: GraphQLArgument(
                scalar("String"),
                description="Queueing again with this key (within the retention) returns the "
                "same action id; also taken from the Idempotency-Key header.",
            ),
        }
        roots["Mutation"][action.name] = GraphQLField(
            GraphQLNonNull(scalar("uuid")), args=queue_args, resolve=_queue(action)
        )
        roots["Query"][action.name] = GraphQLField(result_type, args=by_id, resolve=_read(action))
        roots["Subscription"][action.name] = GraphQLField(
            result_type, args=by_id, subscribe=_follow(action), resolve=_pass_through
        )
    root_names = {"Query", "Mutation", "Subscription"}
    extended = GraphQLSchema(
        query=_with_fields(base.query_type, "Query", roots["Query"]),
        mutation=_with_fields(base.mutation_type, "Mutation", roots["Mutation"]),
        subscription=_with_fields(base.subscription_type, "Subscription", roots["Subscription"]),
        types=[
            named
            for name, named in {**base.type_map, **action_types}.items()
            if name not in root_names and not name.startswith("__")
        ],
        directives=base.directives,
    )
    problems = validate_schema(extended)
    if problems:
        raise ActionSchemaError("; ".join(problem.message for problem in problems))
    schema._schema = extended
