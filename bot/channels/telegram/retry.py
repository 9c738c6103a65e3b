"""Retrying Bot API calls: what is worth another try, and how long to wait before it.

`AIORateLimiter` already pauses every request on a 429 and retries it; this layer adds
backoff for 5xx, timeouts and network errors, and honours a 429 itself when the limiter is
off or has given up. Errors that another try cannot fix (403, 400, bad token) pass through.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from telegram.error import BadRequest, NetworkError, RetryAfter

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
_JITTER = random.Random()  # one for all calls: seeding a Random per call cost ~40 us each


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 5
    backoff: float = 1.0  # first wait in seconds; doubles each time, with jitter
    max_backoff: float = 30.0

    def delay(self, attempt: int, rng: random.Random) -> float:
        return min(self.max_backoff, self.backoff * 2 ** attempt) * (0.5 + rng.random())


def retry_after_seconds(exc: RetryAfter) -> float:
    ra = exc._retry_after  # a timedelta; the public property warns about int/timedelta
    return ra.total_seconds() if isinstance(ra, timedelta) else float(ra)


def is_transient(exc: BaseException) -> bool:
    """5xx, timeouts and connection failures (PTB's NetworkError), but not 400 Bad Request."""
    return isinstance(exc, NetworkError) and not isinstance(exc, BadRequest)


async def with_retries(call: Callable[[], Awaitable[T]], policy: RetryPolicy, *,
                       sleep: Sleep = asyncio.sleep, rng: random.Random | None = None) -> T:
    rng = rng or _JITTER
    attempt = transient = 0  # all retries (bounded) / failures so far (the backoff exponent)
    while True:
        try:
            return await call()
        except RetryAfter as exc:
            if attempt >= policy.max_retries:
                raise
            await sleep(retry_after_seconds(exc) + 0.1)
        except NetworkError as exc:
            if not is_transient(exc) or attempt >= policy.max_retries:
                raise
            await sleep(policy.delay(transient, rng))
            transient += 1
        attempt += 1
