"""The two GraphQL WebSocket protocols, hardened: every frame is checked before strawberry's
handlers read it, so a frame that is not a protocol message closes the socket with 4400 (the
handlers crashed on some and dropped the connection without a close frame).

On the legacy graphql-ws protocol, as on graphql-transport-ws, a second ``connection_init``
closes the socket with 4429 (it switched the socket's principal), and queries and mutations
sent by ``start`` are answered like subscriptions with one result (strawberry refused them).
"""

from contextlib import suppress
from typing import Any, Final

from graphql import GraphQLError, OperationType, get_operation_ast, parse
from strawberry.http.exceptions import (
    NonJsonMessageReceived,
    NonTextMessageReceived,
    WebSocketDisconnected,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    Message as TransportMessage,
)
from strawberry.subscriptions.protocols.graphql_ws.handlers import BaseGraphQLWSHandler
from strawberry.subscriptions.protocols.graphql_ws.types import OperationMessage

from services.edge.context import EdgeContext

INVALID_MESSAGE: Final = 4400
TOO_MANY_INITIALISATIONS: Final = 4429


def _operation_problem(message: dict[str, Any], kind: str) -> str | None:
    if not isinstance(message.get("id"), str) or not message["id"]:
        return f"{kind} needs an id"
    payload = message.get("payload")
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        return f"{kind} needs a payload with a query"
    if not isinstance(payload.get("variables"), dict | None):
        return "variables must be an object"
    if not isinstance(payload.get("operationName"), str | None):
        return "operationName must be a string"
    return None


def message_problem(
    message: object, *, operation_type: str, id_types: tuple[str, ...]
) -> str | None:
    """Why ``message`` is not a well-formed protocol message, or None if it is.

    ``operation_type`` is the message that starts an operation (``subscribe`` or ``start``);
    ``id_types`` the other messages that must name one (``complete`` or ``stop``).
    """
    if not isinstance(message, dict) or not isinstance(message.get("type"), str):
        return "a message must be a JSON object with a type"
    if message["type"] == operation_type:
        return _operation_problem(message, operation_type)
    if message["type"] in id_types and not isinstance(message.get("id"), str):
        return f"{message['type']} needs an id"
    return None


class TransportWSHandler(BaseGraphQLTransportWSHandler[EdgeContext, None]):
    """graphql-transport-ws, checking every message first."""

    async def handle_message(self, message: TransportMessage) -> None:
        """Close with 4400 on a malformed message; otherwise strawberry's handling."""
        problem = message_problem(message, operation_type="subscribe", id_types=("complete",))
        if problem is not None:
            await self.handle_invalid_message(problem)
            return
        await super().handle_message(message)


class LegacyWSHandler(BaseGraphQLWSHandler[EdgeContext, None]):
    """graphql-ws (subscriptions-transport-ws), checking every message first."""

    async def handle(self) -> None:
        """strawberry's loop, but a frame that is not JSON closes the socket (4400) instead of
        being ignored."""
        try:
            try:
                async for message in self.websocket.iter_json():
                    await self.handle_message(message)  # type: ignore[arg-type]  # checked there
            except NonJsonMessageReceived:
                await self.websocket.close(INVALID_MESSAGE, "a message must be a JSON object")
            except NonTextMessageReceived:
                await self.websocket.close(1002, "WebSocket message type must be text")
        except WebSocketDisconnected:
            pass
        finally:
            if self.keep_alive_task:
                self.keep_alive_task.cancel()
                with suppress(BaseException):
                    await self.keep_alive_task
            await self.cleanup()

    async def handle_message(self, message: OperationMessage) -> None:
        """Close with 4400 on a malformed message, 4429 on a second connection_init."""
        problem = message_problem(message, operation_type="start", id_types=("stop",))
        if problem is not None:
            await self.websocket.close(INVALID_MESSAGE, problem)
            return
        if message["type"] == "connection_init" and self.connection_acknowledged:
            await self.websocket.close(TOO_MANY_INITIALISATIONS, "Too many initialisation requests")
            return
        await super().handle_message(message)

    async def handle_async_results(
        self,
        operation_id: str,
        query: str,
        operation_name: str | None,
        variables: dict[str, object] | None,
    ) -> None:
        """A query or a mutation: one data message, then complete; a subscription: strawberry's."""
        if _operation_type(query, operation_name) not in (
            OperationType.QUERY,
            OperationType.MUTATION,
        ):
            await super().handle_async_results(operation_id, query, operation_name, variables)
            return
        try:
            result = await self.schema.execute(
                query,
                variable_values=variables,
                context_value=self.context,
                root_value=self.root_value,
                operation_name=operation_name,
            )
            await self.send_data_message(result, operation_id)
            await self.send_message({"type": "complete", "id": operation_id})
        finally:
            self.tasks.pop(operation_id, None)


def _operation_type(query: str, operation_name: str | None) -> OperationType | None:
    # Only to route the message; parse and validation errors are reported by the execution.
    try:
        operation = get_operation_ast(parse(query), operation_name)
    except GraphQLError:
        return None
    return None if operation is None else operation.operation
