"""Running one requested operation, from OperationStarted to its terminal event."""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import strawberry
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.events import (
    OperationRequested,
    OperationStarted,
    TerminalEvent,
    correlation_of,
)
from contracts.names import STREAM, event_subject
from services.common.events import publish_event
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


async def terminal_already_stored(js: JetStreamContext, request: OperationRequested) -> bool:
    """True when the stream already holds how this operation ended (a redelivered request)."""
    for terminal_type in ("completed", "failed"):
        subject = event_subject(request.tenant, request.operation_id, terminal_type)
        try:
            await js.get_last_msg(STREAM, subject, direct=True)
        except NotFoundError:
            continue
        return True
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


async def run_operation(
    request: OperationRequested, *, schema: strawberry.Schema, timeout_s: float
) -> TerminalEvent:
    """Execute the request against the target schema and decide its terminal event."""
    context = OperationContext(
        principal=Principal(tenant=request.tenant, user=request.principal),
        operation_id=request.operation_id,
    )
    try:
        async with asyncio.timeout(timeout_s):
            response = await execute(
                schema,
                query=request.query,
                variables=request.variables,
                operation_name=request.operation_name,
                context=context,
            )
    except TimeoutError:
        return failed(request, TIMEOUT, f"the operation did not finish within {timeout_s:g} s")
    except Exception:
        # A schema that raises past graphql-core's own error handling: record it as the
        # operation's outcome (never a redelivery loop) and keep the details in the log only.
        log.exception("operation %s raised while executing", request.operation_id)
        return failed(request, OPERATION_FAILED, "the operation failed unexpectedly")
    return outcome_of(request, response)


async def handle_requested(
    request: OperationRequested,
    *,
    attempt: int,
    max_attempts: int,
    js: JetStreamContext,
    schema: strawberry.Schema,
    worker: str,
    timeout_s: float,
    max_payload: int,
    keep_alive: Callable[[], Awaitable[None]],
    keep_alive_every_s: float,
) -> TerminalEvent | None:
    """Run a delivered request once and store its terminal event; None if it had one already.

    Returns only after the terminal event is stored, so the caller may then acknowledge.
    """
    if attempt > 1 and await terminal_already_stored(js, request):
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
            outcome = await run_operation(request, schema=schema, timeout_s=timeout_s)
    outcome, payload = fit_to_message(outcome, max_payload)
    await publish_event(
        js, outcome, msg_id=f"{request.operation_id}.{TERMINAL_MSG_ID}", payload=payload
    )
    return outcome
