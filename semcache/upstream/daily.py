"""Per-day limits (RPD, TPD) beside the per-minute ones: a day-long window in front of any ``Limiter``.

OpenAI's lower tiers cap requests per day (RPD) and every tier tokens per day (TPD: gpt-4o-mini
2,000,000 beside 200,000 TPM); Gemini's free tier counts requests per day. ``DailyLimiter`` wraps the
minute limiter (``RateLimiter``, or ``RedisRateLimiter`` for replicas) with a ``DayWindow``: a request
is admitted only if, with it, the last 24 hours stay within ``rpd`` requests and ``tpd`` tokens.

The window counts per minute slot (1,440 numbers, not one entry per request): an admission counts
until its whole minute is more than 24 hours old, so the window is at most a minute stricter than
an exact one, never looser. A wait for the day window is minutes to hours: past the caller's
``max_wait`` it raises ``DailyLimitReached`` at once (a fallback route or a stale answer answers
instead, and the caller is told when to come back), never a loop of short sleeps.

``DayWindow`` lives in this process (several processes on one directory each count their own, as
the minute limiter does; a restart forgets the day: the provider's own daily 429 still rests the
route, see ``routes``). ``RedisDayWindow`` is one window for every replica, in one Lua script per
admission with Redis ``TIME`` as the clock.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections import deque
from typing import Any, Awaitable, Callable

from ..errors import DailyLimitReached, RequestError
from .headers import RateLimitInfo
from .limiter import Limiter, Reservation

__all__ = ["DAY", "DailyLimiter", "DayWindow", "RedisDayWindow"]

DAY = 86_400.0
SLOT = 60.0  # seconds a slot of the day window counts


def _positive(name: str, value: Any) -> int | None:
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise RequestError(f"{name} must be a positive integer or None, got {value!r}", field=name)
    return value


class DayWindow:
    """At most ``rpd`` requests and ``tpd`` tokens in any 24 hours, counted per minute slot, in this process.

    ``timer`` is the clock in seconds. Thread-safe. ``admit`` returns the slot an admission counts
    in (for ``adjust``/``release``), or the seconds until it would fit.
    """

    def __init__(self, rpd: int | None = None, tpd: int | None = None, *, timer: Callable[[], float] = time.monotonic,
                 window: float = DAY, slot: float = SLOT) -> None:
        self.rpd, self.tpd = _positive("rpd", rpd), _positive("tpd", tpd)
        self.window, self.slot = window, slot
        self._timer = timer
        self._lock = threading.Lock()
        self._slots: deque[list[int]] = deque()  # [slot, requests, tokens], oldest first
        self._requests = self._tokens = 0

    def __repr__(self) -> str:
        return f"DayWindow(rpd={self.rpd!r}, tpd={self.tpd!r})"

    def _prune(self, now: float) -> None:
        while self._slots and (self._slots[0][0] + 1) * self.slot + self.window <= now:
            _, requests, tokens = self._slots.popleft()
            self._requests -= requests
            self._tokens -= tokens

    def _wait(self, tokens: int, now: float) -> float:
        wait = 0.0
        for limit, used, need, column in ((self.rpd, self._requests, 1, 1), (self.tpd, self._tokens, tokens, 2)):
            if limit is None or used + need <= limit:
                continue
            excess, freed = used + need - limit, 0
            for slot in self._slots:
                freed += slot[column]
                if freed >= excess:
                    wait = max(wait, (slot[0] + 1) * self.slot + self.window - now)
                    break
        return wait

    def admit(self, tokens: int) -> tuple[int | None, float]:
        """Count one request of ``tokens`` now and return (its slot, 0.0), or (None, seconds until it fits)."""
        if self.tpd is not None and tokens > self.tpd:
            raise RequestError(f"a request of {tokens} tokens can never fit a limit of {self.tpd} tokens per day; lower max_tokens",
                               field="max_tokens")
        with self._lock:
            now = self._timer()
            self._prune(now)
            wait = self._wait(tokens, now)
            if wait > 0:
                return None, wait
            slot = math.floor(now / self.slot)
            if not self._slots or self._slots[-1][0] != slot:
                self._slots.append([slot, 0, 0])
            self._slots[-1][1] += 1
            self._slots[-1][2] += tokens
            self._requests += 1
            self._tokens += tokens
            return slot, 0.0

    def correct(self, slot: int, requests: int, tokens: int) -> None:
        """Add ``requests`` and ``tokens`` (negative: give back) to a slot still in the window."""
        with self._lock:
            for entry in self._slots:
                if entry[0] == slot:
                    entry[1] += requests
                    entry[2] += tokens
                    self._requests += requests
                    self._tokens += tokens
                    return


_DAY_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local cost, rpd, tpd, slot_s, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local current = math.floor(now / slot_s)
local slots, req, tok, sum_req, sum_tok = {}, {}, {}, 0, 0
local raw = redis.call('HGETALL', KEYS[1])
for i = 1, #raw, 2 do
  local s = tonumber(raw[i])
  if (s + 1) * slot_s + window <= now then
    redis.call('HDEL', KEYS[1], raw[i])
    redis.call('HDEL', KEYS[2], raw[i])
  else
    slots[#slots + 1] = s
    req[s] = tonumber(raw[i + 1])
    tok[s] = tonumber(redis.call('HGET', KEYS[2], raw[i]) or '0')
    sum_req, sum_tok = sum_req + req[s], sum_tok + tok[s]
  end
end
table.sort(slots)
local wait = 0
local function free(used, need, limit, column)
  if limit <= 0 or used + need <= limit then return end
  local excess, freed = used + need - limit, 0
  for _, s in ipairs(slots) do
    freed = freed + column[s]
    if freed >= excess then
      wait = math.max(wait, (s + 1) * slot_s + window - now)
      return
    end
  end
end
free(sum_req, 1, rpd, req)
free(sum_tok, cost, tpd, tok)
if wait > 0 then return {0, tostring(wait)} end
redis.call('HINCRBY', KEYS[1], current, 1)
redis.call('HINCRBY', KEYS[2], current, cost)
local keep = math.ceil((window + 2 * slot_s) * 1000)
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
return {1, tostring(current)}
"""

_DAY_CORRECT = """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[3])
return 1
"""


class RedisDayWindow:
    """``DayWindow`` shared by every replica on one Redis: keys ``<prefix>:rl:<name>:day:{req,tok}`` (slot -> count).

    Raises ``redis.exceptions.RedisError`` when Redis cannot be reached: ``DailyLimiter`` then leaves the day
    to the minute limiter's own outage rule (fail closed, or its local share) and to the provider's daily 429.
    """

    def __init__(self, client: Any, name: str, rpd: int | None = None, tpd: int | None = None, *, prefix: str = "semcache",
                 window: float = DAY, slot: float = SLOT) -> None:
        self.rpd, self.tpd = _positive("rpd", rpd), _positive("tpd", tpd)
        self.window, self.slot = window, slot
        base = f"{prefix}:rl:{name}:day:"
        self._keys = [base + "req", base + "tok"]
        self._admit = client.register_script(_DAY_ADMIT)
        self._correct = client.register_script(_DAY_CORRECT)

    def __repr__(self) -> str:
        return f"RedisDayWindow(rpd={self.rpd!r}, tpd={self.tpd!r})"

    def admit(self, tokens: int) -> tuple[int | None, float]:
        if self.tpd is not None and tokens > self.tpd:
            raise RequestError(f"a request of {tokens} tokens can never fit a limit of {self.tpd} tokens per day; lower max_tokens",
                               field="max_tokens")
        admitted, value = self._admit(keys=self._keys, args=[tokens, self.rpd or 0, self.tpd or 0, self.slot, self.window])
        return (int(value), 0.0) if int(admitted) else (None, float(value))

    def correct(self, slot: int, requests: int, tokens: int) -> None:
        self._correct(keys=self._keys, args=[slot, requests, tokens])


class _DayReservation(Reservation):
    """A reservation of the minute limiter (``inner``) and the day slot it also counts in."""

    __slots__ = ("inner", "slot")


class DailyLimiter:
    """A ``Limiter``: the day window first (past ``max_wait``: ``DailyLimitReached``), then ``inner`` (the minute limits)."""

    def __init__(self, inner: Limiter, day: DayWindow | RedisDayWindow, *, timer: Callable[[], float] = time.monotonic) -> None:
        self.inner, self.day = inner, day
        self._timer = timer

    def __repr__(self) -> str:
        return f"DailyLimiter({self.inner!r}, {self.day!r})"

    def _admit_day(self, tokens: int, max_wait: float | None, started: float) -> tuple[int | None, float]:
        try:
            slot, wait = self.day.admit(tokens)
        except RequestError:
            raise
        except Exception:  # Redis out of reach: the minute limiter's outage rule decides; the provider's 429 backs it
            return -1, 0.0
        if slot is None and max_wait is not None and (self._timer() - started) + wait > max_wait:
            raise DailyLimitReached(f"daily limit: {self._limits()} used up for the last 24 hours; the request would wait "
                                    f"{wait:.0f}s", retry_after=wait, status_code=None, code="daily_limit")
        return slot, wait

    def _limits(self) -> str:
        return " and ".join(f"{value} {name}" for name, value in (("requests per day", self.day.rpd), ("tokens per day", self.day.tpd))
                            if value is not None)

    def _wrap(self, inner: Reservation, slot: int, tokens: int) -> _DayReservation:
        out = _DayReservation(inner.at, tokens, inner.waited, inner.seq, inner.counted)
        out.inner, out.slot = inner, slot
        return out

    def _give_back(self, slot: int, tokens: int) -> None:
        if slot >= 0:
            try:
                self.day.correct(slot, -1, -tokens)
            except Exception:  # conservative: the day counts a request that was not sent
                pass

    def acquire(self, tokens: int, *, max_wait: float | None = None, sleep: Callable[[float], None] = time.sleep) -> Reservation:
        """Admit under the day window, then the minute limiter; raise ``DailyLimitReached`` or ``RateLimited`` past ``max_wait``."""
        started = self._timer()
        while True:
            slot, wait = self._admit_day(tokens, max_wait, started)
            if slot is not None:
                break
            sleep(wait)
        left = None if max_wait is None else max(0.0, max_wait - (self._timer() - started))
        try:
            inner = self.inner.acquire(tokens, max_wait=left, sleep=sleep)
        except BaseException:
            self._give_back(slot, tokens)
            raise
        return self._wrap(inner, slot, tokens)

    async def aacquire(self, tokens: int, *, max_wait: float | None = None,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Reservation:
        """Async ``acquire`` (the Redis round trip in a worker thread)."""
        started = self._timer()
        while True:
            slot, wait = await asyncio.to_thread(self._admit_day, tokens, max_wait, started)
            if slot is not None:
                break
            await sleep(wait)
        left = None if max_wait is None else max(0.0, max_wait - (self._timer() - started))
        try:
            inner = await self.inner.aacquire(tokens, max_wait=left, sleep=sleep)
        except BaseException:
            self._give_back(slot, tokens)
            raise
        return self._wrap(inner, slot, tokens)

    def adjust(self, reservation: Reservation, actual_tokens: int) -> None:
        """Correct the minute limiter and the day slot to the real usage."""
        if not isinstance(reservation, _DayReservation):
            self.inner.adjust(reservation, actual_tokens)
            return
        actual = max(0, int(actual_tokens))
        self.inner.adjust(reservation.inner, actual)
        if reservation.slot >= 0 and actual != reservation.tokens:
            try:
                self.day.correct(reservation.slot, 0, actual - reservation.tokens)
            except Exception:  # after an answer: never an error
                pass
        reservation.tokens = actual

    def observe(self, info: RateLimitInfo) -> None:
        self.inner.observe(info)
