"""Per-user limits from Business NXT: so many operations queued or running at once, and a
minimum time between starts. The state lives in a NATS KV bucket and changes only by
compare-and-set, so the limits hold across any number of edge replicas.
"""

import asyncio
import math
import time
from dataclasses import dataclass
from typing import Final

import msgspec
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.names import view_key
from services.common.identity import Principal
from services.common.views import read_view
from services.edge.errors import coded_error

TOO_MANY_OPERATIONS: Final = "TOO_MANY_OPERATIONS"
RATE_LIMITED: Final = "RATE_LIMITED"
MAX_CAS_ATTEMPTS: Final = 20
# A reservation whose operation has no view this long after it was made was never queued (the
# publish failed) or has expired; it stops counting.
UNSEEN_GRACE_S: Final = 60.0


class UserLimits(msgspec.Struct, kw_only=True):
    """What the limiter remembers about one user: active operations and the last start."""

    active: dict[str, float] = msgspec.field(default_factory=dict)
    last_start: float = 0.0


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UserLimits)


@dataclass(frozen=True)
class Limiter:
    """Reserves a place for a new operation, or refuses with a code and a retry-after."""

    state: KeyValue
    views: KeyValue
    max_active: int
    min_interval_s: float
    stale_after_s: float

    @property
    def enabled(self) -> bool:
        """False when both limits are off (0)."""
        return self.max_active > 0 or self.min_interval_s > 0

    async def reserve(self, principal: Principal, operation_id: str) -> None:
        """Count ``operation_id`` as started now, or raise a coded GraphQLError."""
        if not self.enabled:
            return
        key = f"{principal.tenant}.{principal.user}"
        for _ in range(MAX_CAS_ATTEMPTS):
            limits, revision = await self._read(key)
            if operation_id in limits.active:
                return  # reserved already, by a try whose answer was lost
            now = time.time()
            limits.active = await self._still_active(principal, limits.active, now)
            self._check(limits, now)
            limits.active[operation_id] = now
            limits.last_start = now
            try:
                if revision is None:
                    await self.state.create(key, _encoder.encode(limits))
                else:
                    await self.state.update(key, _encoder.encode(limits), last=revision)
            except KeyWrongLastSequenceError:
                continue  # another edge changed it meanwhile: decide again on the new state
            return
        raise coded_error(
            "too many operations are being started at once; try again", RATE_LIMITED, retryAfter=1
        )

    async def release(self, principal: Principal, operation_id: str) -> None:
        """Best effort: stop counting an operation that was never queued."""
        key = f"{principal.tenant}.{principal.user}"
        for _ in range(MAX_CAS_ATTEMPTS):
            limits, revision = await self._read(key)
            if revision is None or limits.active.pop(operation_id, None) is None:
                return
            try:
                await self.state.update(key, _encoder.encode(limits), last=revision)
            except KeyWrongLastSequenceError:
                continue
            return

    def _check(self, limits: UserLimits, now: float) -> None:
        since_last = now - limits.last_start
        if self.min_interval_s > 0 and since_last < self.min_interval_s:
            wait = self.min_interval_s - since_last
            raise coded_error(
                f"a new operation can start {self.min_interval_s:g} s after the previous one; "
                f"try again in {math.ceil(wait)} s",
                RATE_LIMITED,
                retryAfter=math.ceil(wait),
            )
        if self.max_active > 0 and len(limits.active) >= self.max_active:
            raise coded_error(
                f"at most {self.max_active} operations can be queued or running at once; "
                "try again when one has finished",
                TOO_MANY_OPERATIONS,
                retryAfter=max(1, math.ceil(self.min_interval_s)),
            )

    async def _read(self, key: str) -> tuple[UserLimits, int | None]:
        try:
            entry = await self.state.get(key)
        except KeyNotFoundError:
            return UserLimits(), None
        if not entry.value:
            return UserLimits(), entry.revision
        return _decoder.decode(entry.value), entry.revision

    async def _still_active(
        self, principal: Principal, active: dict[str, float], now: float
    ) -> dict[str, float]:
        candidates = {op: at for op, at in active.items() if now - at < self.stale_after_s}
        views = await asyncio.gather(
            *(
                read_view(self.views, view_key(principal.tenant, principal.user, op))
                for op in candidates
            )
        )
        still = {}
        for (operation_id, reserved_at), (view, _) in zip(candidates.items(), views, strict=True):
            if view is None:
                if now - reserved_at < UNSEEN_GRACE_S:
                    still[operation_id] = reserved_at
            elif not view.status.is_terminal:
                still[operation_id] = reserved_at
        return still
