"""The per-user limit decision, from the stored state alone (no NATS, no views)."""

import pytest

from contracts.errors import ErrorCode
from services.common.active_operations import (
    UNSEEN_GRACE_S,
    Admitted,
    LimitPolicy,
    Refused,
    UserLimits,
    decide,
    has_ended,
)

NOW = 1_000_000.0
STALE = 3600.0
CAP_2 = LimitPolicy(max_active=2, min_interval_s=0, stale_after_s=STALE)
INTERVAL_5 = LimitPolicy(max_active=0, min_interval_s=5, stale_after_s=STALE)
BOTH = LimitPolicy(max_active=2, min_interval_s=5, stale_after_s=STALE)


def state(last_start: float = 0.0, **active: float) -> UserLimits:
    """A stored state with operations reserved ``seconds`` ago."""
    return UserLimits(active={op: NOW - ago for op, ago in active.items()}, last_start=last_start)


@pytest.mark.parametrize(
    ("policy", "stored", "expected"),
    [
        # Under the cap: counted from now on.
        (CAP_2, state(), Admitted(UserLimits(active={"new": NOW}, last_start=NOW))),
        (
            CAP_2,
            state(a=10),
            Admitted(UserLimits(active={"a": NOW - 10, "new": NOW}, last_start=NOW)),
        ),
        # At the cap: refused, once what it counts is rechecked against the stream.
        (
            CAP_2,
            state(a=10, b=20),
            Refused(
                ErrorCode.TOO_MANY_OPERATIONS,
                "",
                retry_after=1,
                recheck=(("a", NOW - 10), ("b", NOW - 20)),
            ),
        ),
        # A reservation past the stale bound no longer counts, with no read at all.
        (
            CAP_2,
            state(a=10, b=STALE + 1),
            Admitted(UserLimits(active={"a": NOW - 10, "new": NOW}, last_start=NOW)),
        ),
        # The same operation again (a retry whose answer was lost): admitted, nothing to write.
        (CAP_2, state(a=10, b=20, new=1), Admitted(None)),
        # The minimum interval, alone: only the last start is kept, no active set.
        (INTERVAL_5, state(last_start=NOW - 2), Refused(ErrorCode.RATE_LIMITED, "", retry_after=3)),
        (INTERVAL_5, state(last_start=NOW - 6), Admitted(UserLimits(active={}, last_start=NOW))),
        # Both: the interval is told first, and the cap's retry-after is the interval.
        (BOTH, state(NOW - 1, a=1, b=2), Refused(ErrorCode.RATE_LIMITED, "", retry_after=4)),
        (
            BOTH,
            state(NOW - 9, a=9, b=20),
            Refused(
                ErrorCode.TOO_MANY_OPERATIONS,
                "",
                retry_after=5,
                recheck=(("a", NOW - 9), ("b", NOW - 20)),
            ),
        ),
    ],
)
def test_decide(policy: LimitPolicy, stored: UserLimits, expected: Admitted | Refused) -> None:
    decision = decide(policy, stored, "new", NOW)

    if isinstance(expected, Refused):
        assert isinstance(decision, Refused)
        assert (decision.code, decision.retry_after, decision.recheck) == (
            expected.code,
            expected.retry_after,
            expected.recheck,
        )
        assert decision.message
    else:
        assert decision == expected


@pytest.mark.parametrize(
    ("age", "queued", "ended", "expected"),
    [
        (1, True, True, True),  # its terminal event is stored: ended, folded or not
        (UNSEEN_GRACE_S + 1, True, True, True),
        (1, True, False, False),  # queued or running
        (UNSEEN_GRACE_S + 1, True, False, False),  # still running, however long
        (1, False, False, False),  # its request may still be on its way
        (UNSEEN_GRACE_S + 1, False, False, True),  # never queued
    ],
)
def test_has_ended(age: float, queued: bool, ended: bool, expected: bool) -> None:
    assert has_ended(NOW - age, NOW, queued=queued, ended=ended) is expected


def test_a_refusal_leaves_the_stored_state_as_it_was() -> None:
    stored = state(a=10, b=20)

    decide(CAP_2, stored, "new", NOW)

    assert stored == state(a=10, b=20)
