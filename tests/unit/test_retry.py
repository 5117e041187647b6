"""How NATS trouble is retried: back-off between deliveries, riding through a leader election."""

import asyncio
import time

import pytest
from nats.js.errors import NoStreamResponseError

from services.common.retry import riding_through
from services.common.runtime import MAX_RETRY_DELAY_S, retry_delay


def test_retries_back_off_exponentially_with_jitter_up_to_a_ceiling() -> None:
    first = [retry_delay(1) for _ in range(200)]
    third = [retry_delay(3) for _ in range(200)]
    late = [retry_delay(40) for _ in range(200)]

    assert all(0.25 <= delay <= 0.5 for delay in first)
    assert all(1.0 <= delay <= 2.0 for delay in third)
    assert all(MAX_RETRY_DELAY_S / 2 <= delay <= MAX_RETRY_DELAY_S for delay in late)
    assert len(set(late)) > 1


async def test_riding_through_retries_a_transient_error_and_keeps_to_its_budget() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise NoStreamResponseError
        return "stored"

    async def hangs() -> str:
        await asyncio.sleep(60)  # a request that waits for a leader that never answers
        return "never"

    assert await riding_through(flaky, what="a test", budget_s=5) == "stored"
    assert calls == 3
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        await riding_through(hangs, what="a test", budget_s=1.5)
    assert time.monotonic() - started < 10  # not the minute the step would have waited
