"""What an attempt at a callback comes to, decided without I/O.

2xx: delivered. A passing failure (no answer, a time-out, 5xx, 408 Request Timeout, 429 Too
Many Requests) is tried again after the next pause of ``ASYNCGATE_CALLBACK_BACKOFF_S`` until
the pauses are used up. A refusal that trying again is unlikely to change (any other 4xx, a
redirect, which is never followed, or an address that may not be called) is tried
``REFUSED_ATTEMPTS`` times in all, in case it was a receiver's deployment hiccup; 410 Gone ends
it at once (the receiver says the endpoint is gone for good).
"""

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

REFUSED_ATTEMPTS: Final = 3
GONE: Final = 410
PASSING_STATUSES: Final = frozenset({408, 429})
# Each pause is stretched or shrunk by up to this share, so that callbacks failing together (a
# receiver down for a while) do not all come back at the same instant.
JITTER: Final = 0.1


@dataclass(frozen=True)
class Answer:
    """How one attempt went: the receiver's ``status`` (None: no answer), or ``error``; a
    ``refused`` attempt never reached the receiver because its address may not be called."""

    status: int | None = None
    error: str | None = None
    refused: bool = False

    @property
    def delivered(self) -> bool:
        """The receiver took it."""
        return self.status is not None and 200 <= self.status < 300

    def describe(self) -> str:
        """Why the attempt failed, for people."""
        if self.error is not None:
            return self.error
        if self.status is not None and 300 <= self.status < 400:
            return f"the receiver answered {self.status}; redirects are not followed"
        return f"the receiver answered {self.status}"


@dataclass(frozen=True)
class Delivered:
    """Record the delivery; done."""


@dataclass(frozen=True)
class RetryAt:
    """Record the failed attempt; try again at ``when``."""

    when: datetime


@dataclass(frozen=True)
class GiveUp:
    """Record the failed attempt as the last one."""


Verdict = Delivered | RetryAt | GiveUp


def _passing(answer: Answer) -> bool:
    if answer.refused:
        return False
    status = answer.status
    return status is None or status >= 500 or status in PASSING_STATUSES


def judge(
    answer: Answer,
    *,
    attempt: int,
    backoff_s: tuple[float, ...],
    now: datetime,
    jitter: Callable[[float, float], float] = random.uniform,
) -> Verdict:
    """What follows attempt ``attempt`` (1 is the first) that came to ``answer``."""
    if answer.delivered:
        return Delivered()
    if answer.status == GONE:
        return GiveUp()
    last_attempt = len(backoff_s) + 1
    if not _passing(answer):
        last_attempt = min(last_attempt, REFUSED_ATTEMPTS)
    if attempt >= last_attempt:
        return GiveUp()
    pause = backoff_s[attempt - 1] * jitter(1 - JITTER, 1 + JITTER)
    return RetryAt(now + timedelta(seconds=pause))
