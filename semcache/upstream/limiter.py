"""Pace upstream calls under requests-per-minute and tokens-per-minute limits at once.

``RateLimiter`` keeps a sliding-window log: every admitted request is an entry (time, tokens),
and a request is admitted only if, with it, the entries of the last 60 seconds stay within both
limits. We chose the log over GCRA or a token bucket because those admit a full burst *plus*
the refill within one minute (up to twice the limit in some 60-second window), which a provider
counting by window answers with 429s; the log never exceeds the limit in any window (a property
test checks it) and still allows a full burst when idle. It costs one small entry per request
of the last minute (a few thousand at most), and maps onto a Redis sorted set for scale-out.

Token costs are estimates (prompt + max_tokens) corrected by ``adjust`` once the real usage is
known (the client never corrects below a *stated* max_tokens: providers count it at admission).
``observe`` tightens the limiter to what the provider says is left.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from typing import Awaitable, Callable, Protocol

from ..errors import RateLimited, RequestError
from .headers import RateLimitInfo

__all__ = ["Limiter", "RateLimiter", "Reservation"]

WINDOW = 60.0
# Waits are padded so that, after sleeping exactly the wait, float rounding cannot leave the
# blocking entry a hair inside the window (which would spin on ever-smaller waits).
_PAD = 1e-6


class Reservation:
    """One admitted request: when, for how many tokens, and how long ``acquire`` waited for it.

    ``counted`` is True while the reservation is in its limiter's window (its tokens are part of
    the limiter's sum); once it leaves the window, adjusting it changes only its own record.
    """

    __slots__ = ("at", "tokens", "waited", "seq", "counted")

    def __init__(self, at: float, tokens: int, waited: float = 0.0, seq: int = 0, counted: bool = False) -> None:
        self.at = at
        self.tokens = tokens
        self.waited = waited
        self.seq = seq
        self.counted = counted

    def __repr__(self) -> str:
        return f"Reservation(at={self.at!r}, tokens={self.tokens!r}, waited={self.waited!r})"


class Limiter(Protocol):
    """Admit requests under a rate: ``acquire`` before a call, ``adjust``/``observe`` after."""

    def acquire(self, tokens: int, *, max_wait: float | None = None, sleep: Callable[[float], None] = time.sleep) -> Reservation: ...

    async def aacquire(self, tokens: int, *, max_wait: float | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Reservation: ...

    def adjust(self, reservation: Reservation, actual_tokens: int) -> None: ...

    def observe(self, info: RateLimitInfo) -> None: ...


class _Ceiling:
    """The provider said only ``remaining`` units are left until ``until``."""

    __slots__ = ("since", "remaining", "until")

    def __init__(self, since: int, remaining: int, until: float) -> None:
        self.since = since
        self.remaining = remaining
        self.until = until


class RateLimiter:
    """Admit at most ``rpm`` requests and ``tpm`` tokens in any 60-second window.

    Either limit may be ``None`` (unlimited). ``timer`` is the clock (monotonic seconds).
    Thread-safe; ``acquire`` sleeps outside the lock.
    """

    def __init__(self, rpm: int | None = None, tpm: int | None = None, *, timer: Callable[[], float] = time.monotonic) -> None:
        for name, value in (("rpm", rpm), ("tpm", tpm)):
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
                raise RequestError(f"{name} must be a positive integer or None, got {value!r}", field=name)
        self.rpm = rpm
        self.tpm = tpm
        self._timer = timer
        self._lock = threading.Lock()
        self._log: deque[Reservation] = deque()
        self._tokens = 0  # sum of tokens in self._log
        self._ceilings: dict[str, _Ceiling] = {}
        self._seq = 0  # admissions so far; a ceiling counts those after its observation

    def __repr__(self) -> str:
        return f"RateLimiter(rpm={self.rpm!r}, tpm={self.tpm!r})"

    # -- pure bookkeeping, called under the lock -------------------------------------------
    def _prune(self, now: float) -> None:
        while self._log and self._log[0].at + WINDOW <= now:
            entry = self._log.popleft()
            self._tokens -= entry.tokens
            entry.counted = False
        for name in [n for n, c in self._ceilings.items() if c.until <= now]:
            del self._ceilings[name]

    def _wait_for(self, tokens: int, now: float) -> float:
        """Seconds until ``tokens`` (and one request) fit; 0.0 if they fit now."""
        wait = 0.0
        log = self._log
        if self.rpm is not None and len(log) + 1 > self.rpm:
            # The entry whose expiry leaves room for one more request.
            wait = max(wait, log[len(log) - self.rpm].at + WINDOW - now + _PAD)
        if self.tpm is not None and self._tokens + tokens > self.tpm:
            excess, freed = self._tokens + tokens - self.tpm, 0
            for entry in log:
                freed += entry.tokens
                if freed >= excess:
                    wait = max(wait, entry.at + WINDOW - now + _PAD)
                    break
        for name, ceiling in self._ceilings.items():
            used = sum(1 if name == "requests" else e.tokens for e in log if e.seq >= ceiling.since)
            if used + (1 if name == "requests" else tokens) > ceiling.remaining:
                wait = max(wait, ceiling.until - now + _PAD)
        return wait

    def _check_size(self, tokens: int) -> None:
        if not isinstance(tokens, int) or tokens < 0:
            raise RequestError(f"tokens must be a non-negative integer, got {tokens!r}", field="tokens")
        if self.tpm is not None and tokens > self.tpm:
            raise RequestError(f"a request of {tokens} tokens can never fit a limit of {self.tpm} tokens per minute; lower max_tokens", field="max_tokens")

    # -- public API ------------------------------------------------------------------------
    def wait_time(self, tokens: int) -> float:
        """Return the seconds until a request of ``tokens`` would be admitted; consume nothing."""
        self._check_size(tokens)
        with self._lock:
            now = self._timer()
            self._prune(now)
            return self._wait_for(tokens, now)

    def try_acquire(self, tokens: int) -> Reservation | None:
        """Admit a request of ``tokens`` now and return its reservation, or None (nothing consumed)."""
        self._check_size(tokens)
        with self._lock:
            now = self._timer()
            self._prune(now)
            if self._wait_for(tokens, now) > 0:
                return None
            return self._admit(now, tokens)

    def _admit(self, now: float, tokens: int) -> Reservation:
        reservation = Reservation(now, tokens, seq=self._seq, counted=True)
        self._seq += 1
        self._log.append(reservation)
        self._tokens += tokens
        return reservation

    def _step(self, tokens: int, max_wait: float | None, started: float) -> tuple[Reservation | None, float]:
        """Admit now, or return how long to sleep; raise RateLimited past ``max_wait``."""
        self._check_size(tokens)
        with self._lock:
            now = self._timer()
            self._prune(now)
            wait = self._wait_for(tokens, now)
            if wait <= 0:
                reservation = self._admit(now, tokens)
                reservation.waited = now - started
                return reservation, 0.0
        if max_wait is not None and (now - started) + wait > max_wait:
            raise RateLimited(f"rate limit: the request would wait {wait:.2f}s, more than allowed", retry_after=wait, status_code=None, code="local_rate_limit")
        return None, wait

    def acquire(self, tokens: int, *, max_wait: float | None = None, sleep: Callable[[float], None] = time.sleep) -> Reservation:
        """Wait until one request of ``tokens`` fits, admit it and return its reservation.

        Raises ``RateLimited(retry_after=...)`` at once, consuming nothing, when the wait would
        exceed ``max_wait`` seconds (None: wait as long as needed).
        """
        started = self._timer()
        while True:
            reservation, wait = self._step(tokens, max_wait, started)
            if reservation is not None:
                return reservation
            sleep(wait)

    async def aacquire(self, tokens: int, *, max_wait: float | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Reservation:
        """Async ``acquire``: the same rules, sleeping with ``await sleep(seconds)``."""
        started = self._timer()
        while True:
            reservation, wait = self._step(tokens, max_wait, started)
            if reservation is not None:
                return reservation
            await sleep(wait)

    def adjust(self, reservation: Reservation, actual_tokens: int) -> None:
        """Replace a reservation's estimated tokens by the real usage (a refund when lower).

        A reservation already out of the window (a call, a stream or a refund that came more
        than a minute after admission) no longer counts toward the sum, so adjusting it frees
        or charges nothing now: its minute is over, and the provider counted it then.
        """
        actual = max(0, int(actual_tokens))
        with self._lock:
            if reservation.counted:
                self._tokens += actual - reservation.tokens
            reservation.tokens = actual

    def observe(self, info: RateLimitInfo) -> None:
        """Admit no more than the provider says is left (``remaining``) until its ``reset``.

        A later observation replaces an earlier one for the same limit.
        """
        with self._lock:
            now = self._timer()
            for name, remaining, reset in (
                ("requests", info.remaining_requests, info.reset_requests),
                ("tokens", info.remaining_tokens, info.reset_tokens),
            ):
                if remaining is not None and reset is not None and reset > 0:
                    # Count only admissions from now on: the requests this answer belongs to
                    # are already counted in the provider's ``remaining``.
                    self._ceilings[name] = _Ceiling(self._seq, remaining, now + reset)

