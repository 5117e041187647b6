"""Per-user limits from Business NXT: so many operations queued or running at once, and a
minimum time between starts. The state lives in a NATS KV bucket and changes only by
compare-and-set, so the limits hold across any number of edge replicas.

An admitted submit costs one read and one compare-and-set of the user's key, whatever the user
has running: the decision is ``services.common.active_operations.decide`` and the projector
keeps the count right as operations end.
"""

import asyncio
import time
from dataclasses import dataclass

from nats.js.errors import KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.errors import ErrorCode
from contracts.names import limits_key
from services.common.active_operations import (
    MAX_CAS_ATTEMPTS,
    LimitPolicy,
    Refused,
    decide,
    encode_limits,
    forget,
    has_ended,
    read_limits,
)
from services.common.event_log import EventLog
from services.common.identity import Principal
from services.edge.errors import coded_error


@dataclass(frozen=True)
class Limiter:
    """Reserves a place for a new operation, or refuses with a code and a retry-after."""

    state: KeyValue
    events: EventLog
    policy: LimitPolicy

    async def reserve(self, principal: Principal, operation_id: str) -> None:
        """Count ``operation_id`` as started now, or raise a coded GraphQLError."""
        if not self.policy.enabled:
            return
        key = limits_key(principal.tenant, principal.user)
        for _ in range(MAX_CAS_ATTEMPTS):
            limits, revision = await read_limits(self.state, key)
            decision = decide(self.policy, limits, operation_id, time.time())
            if isinstance(decision, Refused):
                if await self._forget_ended(principal, key, decision.recheck):
                    continue  # some had ended unseen: decide again without them
                raise coded_error(decision.message, decision.code, retryAfter=decision.retry_after)
            if decision.limits is None:
                return
            try:
                if revision is None:
                    await self.state.create(key, encode_limits(decision.limits))
                else:
                    await self.state.update(key, encode_limits(decision.limits), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another edge or the projector changed it: decide again
            return
        raise coded_error(
            "too many operations are being started at once; try again",
            ErrorCode.RATE_LIMITED,
            retryAfter=1,
        )

    async def release(self, principal: Principal, operation_id: str) -> None:
        """Best effort: stop counting an operation that was never queued."""
        await forget(self.state, limits_key(principal.tenant, principal.user), {operation_id})

    async def _forget_ended(
        self, principal: Principal, key: str, counted: tuple[tuple[str, float], ...]
    ) -> bool:
        """On the refusal path only: stop counting operations the stream shows have ended (or
        were never queued). True if any was dropped; one batched read per operation counted."""
        if not counted:
            return False
        facts = await asyncio.gather(
            *(self.events.facts(principal.tenant, operation_id) for operation_id, _ in counted)
        )
        now = time.time()
        ended = {
            operation_id
            for (operation_id, reserved_at), found in zip(counted, facts, strict=True)
            if has_ended(
                reserved_at,
                now,
                queued=found.requested is not None,
                ended=found.terminal is not None,
            )
        }
        if not ended:
            return False
        # Decide again even if another writer (the projector releasing the same operation) took
        # them off first: either way they no longer count.
        await forget(self.state, key, ended)
        return True
