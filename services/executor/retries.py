"""Retries by error class, without I/O: which failures pass, and how long to wait before the
next attempt.

A passing failure (an action handler's or an upstream API's 5xx, refused connection or
time-out, an operation's own time-out) may not happen again, so it is tried again while
attempts are left; a failure that will not change (GraphQL errors, a handler's or an upstream's
4xx or bad output, a result too large) never is.
An executor lost mid-run is retried by the delivery decision (ASYNCGATE_EXECUTOR_MAX_ATTEMPTS).
"""

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from contracts.errors import ErrorCode
from contracts.events import (
    OperationAttemptFailed,
    OperationFailed,
    OperationRequested,
    TerminalEvent,
    correlation_of,
)
from services.actions.config import ActionsConfig, Retry

# An action's failure is stored with asyncgate's class of it (services/actions/handler.py), never
# a code its handler wrote, so a handler's 4xx cannot pass for one of these.
PASSING_FAILURES: Final = frozenset(
    {
        ErrorCode.ACTION_HANDLER_FAILED,
        ErrorCode.ACTION_UNREACHABLE,
        ErrorCode.ACTION_TIMEOUT,
        ErrorCode.TIMEOUT,
        ErrorCode.UPSTREAM_FAILED,
        ErrorCode.UPSTREAM_TIMEOUT,
        ErrorCode.UPSTREAM_UNREACHABLE,
    }
)
# No pause between attempts grows beyond this, however many attempts are allowed.
MAX_BACKOFF_S: Final = 300.0

NO_RETRY: Final = Retry()


def backoff_s(retry: Retry, attempt: int, *, rand: Callable[[], float] = random.random) -> float:
    """The pause after attempt ``attempt`` (1 is the first) failed: ``retry.backoff_s``
    doubling with each attempt, capped at MAX_BACKOFF_S, and jittered down to half of that so
    operations failing together do not all come back at once."""
    ceiling = min(MAX_BACKOFF_S, retry.backoff_s * 2.0 ** max(0, attempt - 1))
    return ceiling / 2 + ceiling / 2 * rand()


def retry_of(
    request: OperationRequested,
    outcome: TerminalEvent,
    *,
    attempt: int,
    retry: Retry,
    now: datetime,
    rand: Callable[[], float] = random.random,
) -> OperationAttemptFailed | None:
    """The fact saying attempt ``attempt`` will be tried again, or None when ``outcome`` is
    final: a success, a failure that will not change, or the last attempt ``retry`` allows."""
    if not isinstance(outcome, OperationFailed) or outcome.code not in PASSING_FAILURES:
        return None
    if attempt >= retry.attempts:
        return None
    pause = timedelta(seconds=backoff_s(retry, attempt, rand=rand))
    return OperationAttemptFailed(
        **correlation_of(request),
        attempt=attempt,
        code=outcome.code,
        error=outcome.error,
        retry_at=now + pause,
    )


@dataclass(frozen=True)
class RetryPolicies:
    """Which retry applies to a request: its action's own (actions.yaml ``retry``), or the
    default for asyncQuery operations (ASYNCGATE_RETRY_ATTEMPTS, ASYNCGATE_RETRY_BACKOFF_S)."""

    default: Retry = NO_RETRY
    actions: ActionsConfig | None = None

    def __call__(self, request: OperationRequested) -> Retry:
        """The retry for ``request``."""
        if request.action is None:
            return self.default
        if self.actions is None or request.action.name not in self.actions.actions:
            return NO_RETRY
        return self.actions.actions[request.action.name].retry
