"""Decide whether a failed upstream attempt is retried, and after how long.

Pure: the policy looks at the typed error, the provider's headers, the attempt number and the
time spent, and returns a delay or ``None`` (give up). The caller sleeps.

Retried: 408, 409, 429 rate limits, 5xx (Anthropic's 529 overloaded too), timeouts and connection
errors, and anything the provider marks ``x-should-retry: true``. Never retried, whatever a header
says: quota and billing errors (``QuotaExhausted``), a per-day limit (``DailyLimitReached``: its
wait is minutes to hours), our own budget stop, 401/403, 400, 404 and 422 — repeating them only
burns attempts (and, for quota, the operator's patience).
"""

from __future__ import annotations

import random
from typing import Protocol

from ..errors import (
    AuthenticationFailed,
    BudgetExceeded,
    DailyLimitReached,
    QuotaExhausted,
    RateLimited,
    RequestError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from .headers import RateLimitInfo

__all__ = ["RetryPolicy"]

_NEVER_STATUS = frozenset({400, 401, 403, 404, 422})
_RETRY_STATUS = frozenset({408, 409, 429})


class _Random(Protocol):
    def uniform(self, a: float, b: float) -> float: ...


class RetryPolicy:
    """Bounded retries with provider-given waits, else full-jitter exponential backoff.

    ``max_attempts`` counts the first try; ``deadline`` (seconds) bounds the whole call, waits
    included; backoff before retry ``n`` is uniform in ``[0, min(cap, base * 2**(n-1))]``
    (AWS "full jitter"). ``rng`` is anything with ``uniform(a, b)`` (default: a fresh
    ``random.Random()``), so tests can fix it.
    """

    def __init__(self, max_attempts: int = 5, deadline: float = 60.0, base: float = 0.5, cap: float = 20.0, rng: _Random | None = None) -> None:
        if max_attempts < 1:
            raise RequestError(f"max_attempts must be at least 1, got {max_attempts!r}", field="max_attempts")
        for name, value in (("deadline", deadline), ("base", base), ("cap", cap)):
            if value < 0:
                raise RequestError(f"{name} must be non-negative seconds, got {value!r}", field=name)
        self.max_attempts = max_attempts
        self.deadline = deadline
        self.base = base
        self.cap = cap
        self._rng = rng if rng is not None else random.Random()

    def __repr__(self) -> str:
        return f"RetryPolicy(max_attempts={self.max_attempts}, deadline={self.deadline}, base={self.base}, cap={self.cap})"

    def is_retryable(self, error: UpstreamError, info: RateLimitInfo | None = None) -> bool:
        """Return whether an attempt that failed with ``error`` is worth repeating."""
        if isinstance(error, (QuotaExhausted, BudgetExceeded, AuthenticationFailed, DailyLimitReached)):
            return False
        status = error.status_code
        if status in _NEVER_STATUS:
            return False
        if info is not None and info.should_retry is not None:
            return info.should_retry
        if isinstance(error, (RateLimited, UpstreamTimeout, UpstreamConnectionError)):
            return True
        if isinstance(error, UpstreamStatusError) and status is not None:
            return status in _RETRY_STATUS or status >= 500
        return False

    def backoff(self, attempt: int) -> float:
        """Return a full-jitter wait before retry number ``attempt`` (1 = the first retry)."""
        ceiling = min(self.cap, self.base * 2 ** min(attempt - 1, 62))
        return self._rng.uniform(0.0, ceiling)

    def wait(self, error: UpstreamError, info: RateLimitInfo | None, attempt: int) -> float:
        """Return the wait before the next try: retry-after(-ms), else reset header, else backoff."""
        if info is not None and info.retry_after is not None:
            return info.retry_after
        if info is not None and error.status_code == 429:
            # The limit that is used up frees at its reset; unknown which: the soonest reset.
            resets = [r for r in (info.reset_requests, info.reset_tokens) if r is not None]
            reset = info.reset_for_exhausted()
            if reset is not None or resets:
                return reset if reset is not None else min(resets)
        if isinstance(error, RateLimited) and error.retry_after > 0:
            return error.retry_after
        return self.backoff(attempt)

    def next_delay(self, error: UpstreamError, info: RateLimitInfo | None, attempt: int, elapsed: float) -> float | None:
        """Return seconds to sleep before attempt ``attempt + 1``, or None to give up.

        ``attempt`` is the number of attempts made so far; ``elapsed`` the seconds since the
        call began. Gives up when the error is not retryable, the attempts are spent, or the
        wait would end past the deadline.
        """
        if attempt >= self.max_attempts or not self.is_retryable(error, info):
            return None
        delay = self.wait(error, info, attempt)
        if elapsed + delay > self.deadline:
            return None
        return delay
