"""Running one requested operation, from OperationStarted to its terminal event."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import httpx
import strawberry
from nats.js import JetStreamContext

from contracts.events import (
    ActionInvocation,
    OperationCompleted,
    OperationFailed,
    OperationRequested,
    OperationStarted,
    TerminalEvent,
    correlation_of,
)
from services.actions.config import ActionsConfig
from services.actions.handler import ActionSucceeded, call_handler
from services.common.events import last_event, publish_event
from services.common.identity import OperationContext, Principal
from services.common.target import execute
from services.executor.outcome import (
    OPERATION_FAILED,
    TIMEOUT,
    failed,
    fit_to_message,
    outcome_of,
)

log = logging.getLogger(__name__)

ATTEMPTS_EXHAUSTED = "ATTEMPTS_EXHAUSTED"
TERMINAL_MSG_ID = "terminal"


class SupersededDeliveryError(Exception):
    """A newer delivery of this request is already running elsewhere; this one must stand back.

    It must not be acknowledged either: JetStream would take that ack for the newer delivery's,
    and nothing would be redelivered if the executor running the newer one died.
    """


async def ended_elsewhere(js: JetStreamContext, request: OperationRequested, attempt: int) -> bool:
    """True if the operation already ended; raise SupersededDeliveryError if a newer attempt runs.

    A request fetched while every worker was busy can outwait its ack timer and be redelivered
    to another executor; when it finally gets a worker here, the stream tells what happened.
    """
    started, completed, failed = [
        None if found is None else found[1]
        for found in await asyncio.gather(
            *(
                last_event(js, request.tenant, request.operation_id, kind)
                for kind in ("started", "completed", "failed")
            )
        )
    ]
    if completed is not None or failed is not None:
        return True
    if isinstance(started, OperationStarted) and started.attempt > attempt:
        raise SupersededDeliveryError(request.operation_id)
    return False


@contextlib.asynccontextmanager
async def keeping_alive(
    keep_alive: Callable[[], Awaitable[None]], every_s: float
) -> AsyncIterator[None]:
    """Tell JetStream the message is still in hand, so a long operation is not redelivered."""

    async def beat() -> None:
        while True:
            await asyncio.sleep(every_s)
            await keep_alive()

    task = asyncio.create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


ACTION_UNKNOWN = "ACTION_UNKNOWN"


@dataclass(frozen=True)
class OperationRunner:
    """Runs one request: a GraphQL document against the target schema, or an action's handler."""

    schema: strawberry.Schema
    timeout_s: float
    actions: ActionsConfig | None = None
    http: httpx.AsyncClient | None = None

    async def __call__(self, request: OperationRequested) -> TerminalEvent:
        """The terminal event the request ends in; the operation's own failures included."""
        try:
            async with asyncio.timeout(self.timeout_s):
                if request.action is not None:
                    return await self._call_action(request, request.action)
                return await self._execute(request)
        except TimeoutError:
            return failed(
                request, TIMEOUT, f"the operation did not finish within {self.timeout_s:g} s"
            )
        except Exception:
            # A schema that raises past graphql-core's own error handling: record it as the
            # operation's outcome (never a redelivery loop) and keep the details in the log only.
            log.exception("operation %s raised while executing", request.operation_id)
            return failed(request, OPERATION_FAILED, "the operation failed unexpectedly")

    async def _execute(self, request: OperationRequested) -> TerminalEvent:
        context = OperationContext(
            principal=Principal(tenant=request.tenant, user=request.principal),
            operation_id=request.operation_id,
        )
        response = await execute(
            self.schema,
            query=request.query,
            variables=request.variables,
            operation_name=request.operation_name,
            context=context,
        )
        return outcome_of(request, response)

    async def _call_action(
        self, request: OperationRequested, invocation: ActionInvocation
    ) -> TerminalEvent:
        if self.actions is None or self.http is None or invocation.name not in self.actions.actions:
            return failed(
                request, ACTION_UNKNOWN, f"no action named {invocation.name} is configured"
            )
        result = await call_handler(
            self.http,
            self.actions.actions[invocation.name],
            self.actions.output_type(invocation.name),
            input=invocation.input,
            session_variables=invocation.session_variables,
            request_query=request.query,
            client_headers=invocation.client_headers,
        )
        if isinstance(result, ActionSucceeded):
            return OperationCompleted(**correlation_of(request), response={"data": result.output})
        return OperationFailed(
            **correlation_of(request),
            code=result.code,
            error=result.message,
            response={"data": None, "errors": result.errors},
        )


async def handle_requested(
    request: OperationRequested,
    *,
    attempt: int,
    max_attempts: int,
    js: JetStreamContext,
    run: Callable[[OperationRequested], Awaitable[TerminalEvent]],
    worker: str,
    max_payload: int,
    keep_alive: Callable[[], Awaitable[None]],
    keep_alive_every_s: float,
) -> TerminalEvent | None:
    """Run a delivered request once and store its terminal event; None if it had one already.

    Raises SupersededDeliveryError when a newer delivery of the request is running elsewhere.

    Returns only after the terminal event is stored, so the caller may then acknowledge.
    """
    if await ended_elsewhere(js, request, attempt):
        return None
    if attempt > 1 and attempt >= max_attempts:
        # Every earlier delivery was lost with its executor: end it rather than try forever.
        outcome: TerminalEvent = failed(
            request,
            ATTEMPTS_EXHAUSTED,
            f"the operation was started {attempt - 1} times and no attempt finished",
        )
    else:
        started = OperationStarted(**correlation_of(request), attempt=attempt, worker=worker)
        await publish_event(js, started, msg_id=f"{request.operation_id}.started.{attempt}")
        async with keeping_alive(keep_alive, keep_alive_every_s):
            outcome = await run(request)
    outcome, payload = fit_to_message(outcome, max_payload)
    await publish_event(
        js, outcome, msg_id=f"{request.operation_id}.{TERMINAL_MSG_ID}", payload=payload
    )
    return outcome
