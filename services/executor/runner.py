"""Running one attempt at an operation: a GraphQL document against the target schema, or an
action's HTTP handler. Whatever happens, the result is the terminal event the attempt ends in."""

import asyncio
import logging
from dataclasses import dataclass

import httpx
from msgspec.structs import replace

from contracts.errors import ErrorCode
from contracts.events import (
    ActionInvocation,
    ForwardedIdentity,
    OperationCompleted,
    OperationFailed,
    OperationRequested,
    TerminalEvent,
    correlation_of,
)
from contracts.names import view_key
from services.actions.config import ActionsConfig
from services.actions.handler import ActionSucceeded, call_handler
from services.common.identity import OperationContext, Principal
from services.common.progress import ProgressReporter
from services.common.target import Target, TargetCallError
from services.common.upstream.sealing import KeyRing, UnsealError
from services.executor.outcome import failed, outcome_of
from services.executor.progress import ProgressPublisher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class OperationRunner:
    """Runs one request: a GraphQL document against the target, or an action's handler."""

    target: Target
    timeout_s: float
    actions: ActionsConfig | None = None
    http: httpx.AsyncClient | None = None
    # Publishes what resolvers report through ``info.context.progress`` (None: discarded).
    progress: ProgressPublisher | None = None
    # Opens the client's Authorization an upstream-mode edge sealed into the request.
    forward_keys: KeyRing | None = None

    async def __call__(self, request: OperationRequested, attempt: int) -> TerminalEvent:
        """The terminal event attempt ``attempt`` ends in; the operation's own failures included."""
        timeout_s = self.timeout_s
        if request.timeout_s is not None:
            timeout_s = min(timeout_s, request.timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                if request.action is not None:
                    return await self._call_action(request, request.action, attempt)
                return await self._execute(request, attempt)
        except TimeoutError:
            return failed(
                request,
                ErrorCode.TIMEOUT,
                f"the operation did not finish within {timeout_s:g} s",
            )
        except Exception:
            # A schema that raises past graphql-core's own error handling: record it as the
            # operation's outcome (never a redelivery loop) and keep the details in the log only.
            log.exception("operation %s raised while executing", request.operation_id)
            return failed(request, ErrorCode.OPERATION_FAILED, "the operation failed unexpectedly")

    async def _execute(self, request: OperationRequested, attempt: int) -> TerminalEvent:
        if self.progress is None:
            return await self._execute_reporting_to(request, ProgressReporter())
        async with self.progress.attempt(request, attempt) as progress:
            ending = await self._execute_reporting_to(request, progress)
            last_report = await progress.finish()
        return ending if last_report is None else replace(ending, progress=last_report)

    async def _execute_reporting_to(
        self, request: OperationRequested, progress: ProgressReporter
    ) -> TerminalEvent:
        forwarded = request.forwarded or ForwardedIdentity()
        context = OperationContext(
            principal=Principal(
                tenant=request.tenant,
                user=request.principal,
                session_variables=forwarded.session_variables,
            ),
            operation_id=request.operation_id,
            progress=progress,
        )
        try:
            response = await self.target.execute(
                query=request.query,
                variables=request.variables,
                operation_name=request.operation_name,
                context=context,
                authorization=self._authorization(request, forwarded),
            )
        except TargetCallError as error:
            return OperationFailed(
                **correlation_of(request),
                code=error.code,
                error=error.message,
                response=error.response,
            )
        return outcome_of(request, response)

    def _authorization(
        self, request: OperationRequested, forwarded: ForwardedIdentity
    ) -> str | None:
        """The client's Authorization the edge sealed into ``request``, opened (None if none)."""
        sealed = forwarded.authorization
        if sealed is None:
            return None
        if self.forward_keys is None:
            raise TargetCallError(
                ErrorCode.UPSTREAM_AUTHORIZATION_UNREADABLE,
                "the request carries a sealed Authorization and no ASYNCGATE_UPSTREAM_FORWARD_KEYS"
                " are configured",
            )
        binding = view_key(request.tenant, request.principal, request.operation_id)
        try:
            return self.forward_keys.open(sealed, bound_to=binding)
        except UnsealError as error:
            raise TargetCallError(
                ErrorCode.UPSTREAM_AUTHORIZATION_UNREADABLE, f"the client's Authorization: {error}"
            ) from None

    async def _call_action(
        self, request: OperationRequested, invocation: ActionInvocation, attempt: int
    ) -> TerminalEvent:
        if self.actions is None or self.http is None or invocation.name not in self.actions.actions:
            return failed(
                request,
                ErrorCode.ACTION_UNKNOWN,
                f"no action named {invocation.name} is configured",
            )
        result = await call_handler(
            self.http,
            self.actions.actions[invocation.name],
            self.actions.output_type(invocation.name),
            input=invocation.input,
            session_variables=invocation.session_variables,
            request_query=request.query,
            client_headers=invocation.client_headers,
            idempotency=(request.operation_id, attempt),
        )
        if isinstance(result, ActionSucceeded):
            return OperationCompleted(**correlation_of(request), response={"data": result.output})
        return OperationFailed(
            **correlation_of(request),
            code=result.code,
            error=result.message,
            response={"data": None, "errors": result.errors},
        )
