"""Read what a provider says about its rate limits from response headers.

OpenAI sends ``x-ratelimit-{limit,remaining,reset}-{requests,tokens}`` on every answer, where a
reset is a Go-style duration (``1s``, ``6m0s``, ``12ms``, ``1h2m3.5s``), and ``retry-after-ms`` /
``retry-after`` (seconds or an HTTP date) and ``x-should-retry`` on errors. Everything here is
pure: a value that cannot be read is ``None``, never an exception, because a malformed header
from a proxy must not turn a good answer into an error.

Anthropic sends ``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-{limit,remaining,reset}``
instead, where a reset is an RFC 3339 time (``2026-12-07T12:00:05Z``). Its separate input- and
output-token limits are folded into the one token limit semcache paces: the one with the least
left (``tokens-*``, when sent, is already "the most restrictive limit in effect").
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Mapping

__all__ = ["DAILY_DEFAULT_WAIT", "RateLimitInfo", "daily_limit_wait", "parse_duration", "parse_ratelimit_headers"]

_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_DURATION = re.compile(r"(?:\d+(?:\.\d+)?(?:h|ms|m|s|us|µs|ns))+")
_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """What one response said about the provider's limits; ``None`` where it said nothing.

    Durations (``reset_*``, ``retry_after``) are seconds from when the response was received.
    """

    limit_requests: int | None = None
    limit_tokens: int | None = None
    remaining_requests: int | None = None
    remaining_tokens: int | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None
    retry_after: float | None = None
    should_retry: bool | None = None

    def reset_for_exhausted(self) -> float | None:
        """Return the longest reset among the limits the provider says are used up, else None."""
        waits = [
            reset
            for remaining, reset in ((self.remaining_requests, self.reset_requests), (self.remaining_tokens, self.reset_tokens))
            if remaining is not None and remaining <= 0 and reset is not None
        ]
        return max(waits) if waits else None


def parse_duration(text: str | None) -> float | None:
    """Return seconds for ``1s``, ``6m0s``, ``12ms``, ``1h2m3.5s`` or a bare number; None if unreadable."""
    if text is None:
        return None
    value = text.strip()
    if not value:
        return None
    if _DURATION.fullmatch(value):
        return sum(float(number) * _UNIT_SECONDS[unit] for number, unit in _PART.findall(value))
    return _non_negative_float(value)


def _non_negative_float(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) and value >= 0 else None


def _non_negative_int(text: str | None) -> int | None:
    if text is None:
        return None
    value = _non_negative_float(text.strip())
    return int(value) if value is not None else None


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    ms = headers.get("retry-after-ms")
    if ms is not None:
        value = _non_negative_float(ms.strip())
        if value is not None:
            return value / 1000.0
    raw = headers.get("retry-after")
    if raw is None:
        return None
    seconds = _non_negative_float(raw.strip())
    if seconds is not None:
        return seconds
    try:
        when = parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when is None or when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def _should_retry(text: str | None) -> bool | None:
    value = (text or "").strip().lower()
    return True if value == "true" else False if value == "false" else None


def _reset_at(text: str | None, now: float) -> float | None:
    """Seconds from ``now`` until an RFC 3339 time (Anthropic's resets), or a duration; None if unreadable."""
    if text is None:
        return None
    duration = parse_duration(text)
    if duration is not None:
        return duration
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


_ANTHROPIC = "anthropic-ratelimit-"


def _anthropic(lower: Mapping[str, str], now: float) -> RateLimitInfo:
    """Anthropic's headers: requests as they are, the token limit with the least left of tokens/input/output."""
    def limit(name: str) -> tuple[int | None, int | None, float | None]:
        return (_non_negative_int(lower.get(f"{_ANTHROPIC}{name}-limit")),
                _non_negative_int(lower.get(f"{_ANTHROPIC}{name}-remaining")),
                _reset_at(lower.get(f"{_ANTHROPIC}{name}-reset"), now))

    requests = limit("requests")
    tokens = [t for t in map(limit, ("tokens", "input-tokens", "output-tokens")) if t[1] is not None]
    least = min(tokens, key=lambda t: t[1]) if tokens else (None, None, None)
    return RateLimitInfo(
        limit_requests=requests[0], limit_tokens=least[0], remaining_requests=requests[1],
        remaining_tokens=least[1], reset_requests=requests[2], reset_tokens=least[2],
        retry_after=_retry_after(lower, now), should_retry=_should_retry(lower.get("x-should-retry")),
    )


def parse_ratelimit_headers(headers: Mapping[str, str] | None, *, now: float | None = None) -> RateLimitInfo:
    """Return the rate-limit information in ``headers`` (any mapping; names are case-insensitive).

    ``now`` (Unix seconds, default ``time.time()``) converts an HTTP-date ``retry-after`` and
    Anthropic's RFC 3339 resets to seconds.
    """
    if not headers:
        return RateLimitInfo()
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    if "x-ratelimit-remaining-requests" not in lower and any(k.startswith(_ANTHROPIC) for k in lower):
        return _anthropic(lower, time.time() if now is None else now)
    return RateLimitInfo(
        limit_requests=_non_negative_int(lower.get("x-ratelimit-limit-requests")),
        limit_tokens=_non_negative_int(lower.get("x-ratelimit-limit-tokens")),
        remaining_requests=_non_negative_int(lower.get("x-ratelimit-remaining-requests")),
        remaining_tokens=_non_negative_int(lower.get("x-ratelimit-remaining-tokens")),
        reset_requests=parse_duration(lower.get("x-ratelimit-reset-requests")),
        reset_tokens=parse_duration(lower.get("x-ratelimit-reset-tokens")),
        retry_after=_retry_after(lower, time.time() if now is None else now),
        should_retry=_should_retry(lower.get("x-should-retry")),
    )


# A 429 that names a per-day limit: OpenAI's "... on tokens per day (TPD): Limit 2000000, Used ...
# Please try again in 7m12s", "requests per day (RPD)"; Gemini's quota ids "...PerDay...".
_DAILY = re.compile(r"\b(?:tokens|requests) per day\b|\((?:TPD|RPD)\)|PerDay", re.IGNORECASE)
_WAIT = re.compile(r"(?:try again|retry) in ((?:\d+(?:\.\d+)?(?:h|ms|m|s|us|µs|ns))+)", re.IGNORECASE)
DAILY_DEFAULT_WAIT = 60.0  # seconds, when a daily 429 names no wait and sends no header


def daily_limit_wait(message: str | None) -> float | None:
    """Return the wait a 429's message names when it is over a per-day limit (0.0: it names none); None if it is not daily."""
    if not message or not _DAILY.search(message):
        return None
    found = _WAIT.search(message)
    return parse_duration(found.group(1)) or 0.0 if found else 0.0
