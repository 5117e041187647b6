"""Each user's active operations and last start, as the per-user limits count them.

The state is one small value per user in the limits bucket (``<tenant>.<principal>``), changed
only by compare-and-set. The edge decides a submit from that value alone (``decide``, pure) and
writes it back: one read and one write. The projector removes an operation once it folds its
terminal event (``EndedOperations``), so the count stays right as operations end without the
edge reading any view on a submit.

A submit that would be refused for the cap first rechecks what it counts against the stream
(that refusal path, never an admitted submit, reads anything else): an operation whose terminal
event is stored already has ended even if the projector has not folded it yet (so a client that
read SUCCESS from ``asyncResult`` can start another at once), and one never queued this long
after its reservation (its publish failed, and so did the release) never will be. Past
``stale_after_s`` a reservation is dropped by time alone, whatever happened to it.
"""

import math
from dataclasses import dataclass
from typing import Final

import msgspec
from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.errors import ErrorCode
from contracts.events import OperationCompleted, OperationEvent, OperationFailed
from contracts.names import LIMITS_BUCKET, limits_key
from services.common.layout import Layout, bucket_stream, check_provisioned, limits_bucket_config
from services.common.settings import Settings

# Conflicts happen only while another edge or projector writes the same user's key.
MAX_CAS_ATTEMPTS: Final = 20
# A reservation this old whose request is not in the stream was never queued (the publish
# failed) and stops counting.
UNSEEN_GRACE_S: Final = 60.0
# Added to the longest an operation can run, for a reservation to be dropped by time alone.
STALE_MARGIN_S: Final = 300.0


class UserLimits(msgspec.Struct, kw_only=True):
    """What the limits bucket holds for one user: reserved operations (id: when) and last start."""

    active: dict[str, float] = msgspec.field(default_factory=dict)
    last_start: float = 0.0


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UserLimits)


def encode_limits(limits: UserLimits) -> bytes:
    """The stored form of a user's limit state."""
    return _encoder.encode(limits)


def decode_limits(payload: bytes) -> UserLimits:
    """A user's limit state from its stored form."""
    return _decoder.decode(payload)


@dataclass(frozen=True)
class LimitPolicy:
    """The limits in force; 0 turns a limit off."""

    max_active: int
    min_interval_s: float
    stale_after_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> "LimitPolicy":
        """The limits ASYNCGATE_MAX_ACTIVE_PER_USER and ASYNCGATE_MIN_START_INTERVAL_S set."""
        return cls(
            max_active=settings.max_active_per_user,
            min_interval_s=settings.min_start_interval_s,
            # Past this an operation cannot still be running, whatever its view says.
            stale_after_s=settings.operation_timeout_s * settings.executor_max_attempts
            + STALE_MARGIN_S,
        )

    @property
    def enabled(self) -> bool:
        """False when both limits are off."""
        return self.max_active > 0 or self.min_interval_s > 0


@dataclass(frozen=True)
class Admitted:
    """The submit may go ahead; ``limits`` is the state to store (None: nothing to store)."""

    limits: UserLimits | None


@dataclass(frozen=True)
class Refused:
    """The submit is over a limit. ``recheck``: what it counts (id: reserved at), to check
    against the stream before refusing (only for the cap: time alone lifts the interval)."""

    code: str
    message: str
    retry_after: int
    recheck: tuple[tuple[str, float], ...] = ()


def decide(
    policy: LimitPolicy, limits: UserLimits, operation_id: str, now: float
) -> Admitted | Refused:
    """Whether ``operation_id`` may start at ``now`` given the user's stored ``limits``."""
    if operation_id in limits.active:
        return Admitted(None)  # reserved already, by a try whose answer was lost
    active = {op: at for op, at in limits.active.items() if now - at < policy.stale_after_s}
    since_last = now - limits.last_start
    if policy.min_interval_s > 0 and since_last < policy.min_interval_s:
        wait = math.ceil(policy.min_interval_s - since_last)
        return Refused(
            ErrorCode.RATE_LIMITED,
            f"a new operation can start {policy.min_interval_s:g} s after the previous one; "
            f"try again in {wait} s",
            retry_after=wait,
        )
    if policy.max_active > 0 and len(active) >= policy.max_active:
        return Refused(
            ErrorCode.TOO_MANY_OPERATIONS,
            f"at most {policy.max_active} operations can be queued or running at once; "
            "try again when one has finished",
            retry_after=max(1, math.ceil(policy.min_interval_s)),
            recheck=tuple(active.items()),
        )
    # With no cap on active operations there is nothing to count, only the last start.
    counted = {**active, operation_id: now} if policy.max_active > 0 else {}
    return Admitted(UserLimits(active=counted, last_start=now))


def has_ended(reserved_at: float, now: float, *, queued: bool, ended: bool) -> bool:
    """Whether a counted operation no longer counts, given what the stream holds of it."""
    return ended or (not queued and now - reserved_at >= UNSEEN_GRACE_S)


async def read_limits(kv: KeyValue, key: str) -> tuple[UserLimits, int | None]:
    """A user's stored state and its revision ((empty, None) when there is none)."""
    try:
        entry = await kv.get(key)
    except KeyNotFoundError:
        return UserLimits(), None
    if not entry.value:
        return UserLimits(), entry.revision
    return decode_limits(entry.value), entry.revision


async def forget(kv: KeyValue, key: str, operation_ids: set[str]) -> bool:
    """Stop counting ``operation_ids`` for the user at ``key``; False if none was counted.

    Best effort past MAX_CAS_ATTEMPTS conflicts: the time-based safety net remains.
    """
    for _ in range(MAX_CAS_ATTEMPTS):
        limits, revision = await read_limits(kv, key)
        if revision is None or not operation_ids & limits.active.keys():
            return False  # no key, or not counted: nothing to do
        for operation_id in operation_ids:
            limits.active.pop(operation_id, None)
        try:
            await kv.update(key, encode_limits(limits), last=revision)
        except KeyWrongLastSequenceError:
            continue
        return True
    return False


@dataclass
class EndedOperations:
    """The projector's part of the limits: an operation stops counting once it has ended.

    Open it at start-up; then ``release(event)`` after each event is folded. With no cap on
    active operations (ASYNCGATE_MAX_ACTIVE_PER_USER=0) it does nothing and touches no bucket.
    """

    settings: Settings
    kv: KeyValue | None = None

    async def open(self, js: JetStreamContext) -> None:
        """Check the limits bucket is provisioned and bind it, when the cap is on."""
        if self.settings.max_active_per_user <= 0:
            return
        layout = Layout(streams=(bucket_stream(limits_bucket_config(self.settings)),))
        await check_provisioned(js, layout)
        self.kv = await js.key_value(LIMITS_BUCKET)

    async def release(self, event: OperationEvent) -> None:
        """After ``event`` is folded: if it ended its operation, stop counting the operation.

        Safe to repeat (a redelivery, a replay): an operation no longer counted is left alone.
        """
        if self.kv is None or not isinstance(event, OperationCompleted | OperationFailed):
            return
        await forget(self.kv, limits_key(event.tenant, event.principal), {event.operation_id})
