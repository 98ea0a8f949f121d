"""Pace every replica under one RPM/TPM quota: the sliding-window log of ``RateLimiter``, in Redis.

The rule is ``RateLimiter``'s: a request is admitted only if, with it, the admissions of the last
``window`` seconds stay within ``rpm`` requests and ``tpm`` tokens, so no window ever holds more
(the reasons for a log over GCRA are in ``limiter.py``). The log lives in Redis, one set of keys
per upstream key, and one Lua script prunes, checks and admits atomically with Redis ``TIME`` as
the clock: replicas' clocks never meet, so their skew cannot let two of them admit into one slot.

Keys, under ``<prefix>:rl:<name>:`` (``name`` is a hash of the provider key, never the key)::

    log            sorted set  admission seq, scored by its Redis time in µs
    tok            hash        admission seq -> tokens (corrected by ``adjust``)
    state          hash        tokens (sum over ``log``), n (last admission seq)
    ceil:requests  hash        remaining, used, since: what the provider said is left,
    ceil:tokens    hash        expiring (PEXPIRE) when the provider said it resets

``log`` and ``tok`` expire after two idle windows; an empty window resets the sum, so they can.
A ceiling counts what every replica admitted since it was observed (``used``) against
``remaining``, which is stricter than ``RateLimiter`` (whose count forgets admissions that left
the window before the reset) and never looser.

When Redis cannot be reached the limiter does not fall back to a private limit that exceeds the
quota. By default it fails closed: ``acquire`` raises ``RateLimited(code="limiter_unavailable")``
with ``retry_after=unavailable_retry_after``. With ``local_share`` (this replica's part of the
quota, e.g. 0.5 for one of two replicas) it paces under a local ``RateLimiter(rpm * share, tpm *
share)`` (60-second windows) until Redis answers again. Either way it logs once per outage, and
tries Redis again at most every ``probe_interval`` seconds. ``adjust`` and ``observe`` never
raise for Redis: they run after an answer arrived, which must not become an error.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from typing import Awaitable, Callable

import redis

from ..errors import ConfigError, RateLimited, RequestError
from ..storage.redis import connect, redact_url, scrub, secrets_of
from .headers import RateLimitInfo
from .limiter import RateLimiter, Reservation

__all__ = ["RedisRateLimiter"]

log = logging.getLogger("semcache")

WINDOW = 60.0

_ACQUIRE = """
local function num(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local cost, rpm, tpm, window = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local pad = 1  -- µs: after sleeping the wait, the blocking admission is out of the window
-- prune the admissions that left the window (at + window <= now), a page at a time
while true do
  local old = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', num(now - window), 'LIMIT', 0, 500)
  if #old == 0 then break end
  local toks = redis.call('HMGET', KEYS[2], unpack(old))
  local freed = 0
  for i = 1, #toks do freed = freed + (tonumber(toks[i]) or 0) end
  redis.call('ZREM', KEYS[1], unpack(old))
  redis.call('HDEL', KEYS[2], unpack(old))
  redis.call('HINCRBY', KEYS[3], 'tokens', num(-freed))
end
local count = redis.call('ZCARD', KEYS[1])
local sum = tonumber(redis.call('HGET', KEYS[3], 'tokens') or '0')
if count == 0 or sum < 0 then  -- an empty window holds no tokens (its keys expired while idle)
  sum = 0
  redis.call('HSET', KEYS[3], 'tokens', '0')
end
local wait = 0
if rpm > 0 and count + 1 > rpm then  -- the admission whose expiry leaves room for one more
  local e = redis.call('ZRANGE', KEYS[1], count - rpm, count - rpm, 'WITHSCORES')
  wait = math.max(wait, tonumber(e[2]) + window - now + pad)
end
if tpm > 0 and sum + cost > tpm then  -- the admission whose expiry frees enough tokens
  local excess, freed, start, found = sum + cost - tpm, 0, 0, false
  while not found do
    local page = redis.call('ZRANGE', KEYS[1], start, start + 199, 'WITHSCORES')
    if #page == 0 then break end
    local members = {}
    for i = 1, #page, 2 do members[#members + 1] = page[i] end
    local toks = redis.call('HMGET', KEYS[2], unpack(members))
    for i = 1, #members do
      freed = freed + (tonumber(toks[i]) or 0)
      if freed >= excess then
        wait = math.max(wait, tonumber(page[2 * i]) + window - now + pad)
        found = true
        break
      end
    end
    start = start + 200
  end
  if not found then wait = math.max(wait, window) end
end
local needs = {1, cost}
for i = 4, 5 do  -- the provider's ceilings, while they last
  local c = redis.call('HMGET', KEYS[i], 'remaining', 'used')
  if c[1] and tonumber(c[2] or '0') + needs[i - 3] > tonumber(c[1]) then
    local left = redis.call('PTTL', KEYS[i])
    if left > 0 then wait = math.max(wait, left * 1000 + pad) end
  end
end
if wait > 0 or ARGV[5] == '0' then return {0, wait, now} end
local seq = redis.call('HINCRBY', KEYS[3], 'n', 1)
redis.call('ZADD', KEYS[1], num(now), seq)
redis.call('HSET', KEYS[2], seq, ARGV[1])
redis.call('HINCRBY', KEYS[3], 'tokens', ARGV[1])
for i = 4, 5 do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HINCRBY', KEYS[i], 'used', num(needs[i - 3])) end
end
local keep = num(math.max(1, 2 * window / 1000))
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
return {1, seq, now}
"""

_ADJUST = """
local function num(x) return string.format('%.0f', x) end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) + tonumber(ARGV[3]) <= now then return 0 end  -- left the window: left alone
local delta = tonumber(ARGV[2]) - tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0')
redis.call('HSET', KEYS[2], ARGV[1], ARGV[2])
if redis.call('HINCRBY', KEYS[3], 'tokens', num(delta)) < 0 then redis.call('HSET', KEYS[3], 'tokens', '0') end
local c = redis.call('HMGET', KEYS[4], 'since', 'used')
if c[1] and tonumber(ARGV[1]) >= tonumber(c[1]) then  -- admitted since the provider's count
  redis.call('HSET', KEYS[4], 'used', num(math.max(0, tonumber(c[2] or '0') + delta)))
end
return 1
"""

_OBSERVE = """
local n = tonumber(redis.call('HGET', KEYS[1], 'n') or '0')
for i = 0, 1 do
  local remaining, reset = ARGV[1 + 2 * i], ARGV[2 + 2 * i]
  if remaining ~= '' then
    redis.call('DEL', KEYS[2 + i])
    redis.call('HSET', KEYS[2 + i], 'remaining', remaining, 'used', '0', 'since', string.format('%d', n + 1))
    redis.call('PEXPIRE', KEYS[2 + i], reset)
  end
end
return 0
"""


class _SharedReservation(Reservation):
    """An admission by Redis (``seq`` names it there); any other came from the local share."""

    __slots__ = ()


def _positive(name: str, value):
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value <= 0):
        raise RequestError(f"{name} must be a positive integer or None, got {value!r}", field=name)
    return value


class RedisRateLimiter:
    """Admit at most ``rpm`` requests and ``tpm`` tokens in any ``window`` seconds, across every
    replica that shares the Redis behind ``client`` and the same ``name``.

    ``name`` identifies the quota (pass a hash of the provider key, never the key). ``timer`` is
    the local clock used only to measure this replica's own waits. See the module docstring for
    ``local_share``, ``unavailable_retry_after`` and ``probe_interval``. Thread-safe.
    """

    def __init__(self, client: "redis.Redis", name: str, rpm: int | None = None, tpm: int | None = None, *,
                 window: float = WINDOW, prefix: str = "semcache", local_share: float | None = None,
                 unavailable_retry_after: float = 1.0, probe_interval: float = 1.0,
                 timer: Callable[[], float] = time.monotonic, url: str = "redis://") -> None:
        self.rpm, self.tpm = _positive("rpm", rpm), _positive("tpm", tpm)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"a shared rate limiter needs a non-empty name (a hash of the provider key), got {name!r}")
        if not window > 0:
            raise ConfigError(f"window must be positive seconds, got {window!r}")
        if local_share is not None and not 0 < local_share <= 1:
            raise ConfigError(f"local_share must be in (0, 1] (this replica's part of the quota), got {local_share!r}")
        self.client, self.name, self.window = client, name, float(window)
        self.local_share = local_share
        self.unavailable_retry_after = unavailable_retry_after
        self.probe_interval = probe_interval
        self.url = redact_url(url)
        self._secrets = secrets_of(url)
        self._timer = timer
        base = f"{prefix}:rl:{name}:"
        self._keys = [base + "log", base + "tok", base + "state", base + "ceil:requests", base + "ceil:tokens"]
        self._acquire_script = client.register_script(_ACQUIRE)
        self._adjust_script = client.register_script(_ADJUST)
        self._observe_script = client.register_script(_OBSERVE)
        self._local: RateLimiter | None = None
        if local_share is not None:
            share = (None if limit is None else max(1, math.floor(limit * local_share)) for limit in (rpm, tpm))
            self._local = RateLimiter(*share, timer=timer)
        self._lock = threading.Lock()
        self._retry_at: float | None = None  # while Redis is out of reach: when to try it again
        self._warned_late = False

    @classmethod
    def from_url(cls, url: str, name: str, rpm: int | None = None, tpm: int | None = None, *, timeout: float = 5.0,
                 **options) -> "RedisRateLimiter":
        """Build the limiter on the Redis at ``url`` (connects on first use); ``options`` as the constructor's."""
        return cls(connect(url, timeout=timeout), name, rpm, tpm, url=url, **options)

    def __repr__(self) -> str:
        return (f"RedisRateLimiter({self.name!r}, rpm={self.rpm!r}, tpm={self.tpm!r}, window={self.window!r}, "
                f"url={self.url!r}, local_share={self.local_share!r})")

    # -- Redis, and what to do without it ---------------------------------------------------

    def _script(self, tokens: int, admit: bool) -> tuple[bool, float, float] | None:
        """Run the admission script: (admitted, seq or wait in seconds, Redis time); None when Redis is out of reach."""
        with self._lock:
            if self._retry_at is not None and self._timer() < self._retry_at:
                return None
        try:
            admitted, value, now = self._acquire_script(
                keys=self._keys, args=[tokens, self.rpm or 0, self.tpm or 0, _micros(self.window), int(admit)])
        except redis.exceptions.RedisError as exc:
            self._unreachable(exc)
            return None
        self._reachable()
        return bool(admitted), (int(value) if admitted else int(value) / 1e6), int(now) / 1e6

    def _unreachable(self, exc: Exception) -> None:
        with self._lock:
            first = self._retry_at is None
            self._retry_at = self._timer() + self.probe_interval
        if first:
            what = (f"pacing under a local share of {self.local_share} of the quota" if self._local is not None
                    else "failing closed: no upstream call until it is back")
            log.warning("semcache: the shared rate limiter %r cannot reach Redis at %s (%s); %s",
                        self.name, self.url, scrub(f"{type(exc).__name__}: {exc}", self._secrets), what)

    def _reachable(self) -> None:
        with self._lock:
            if self._retry_at is None:
                return
            self._retry_at = None
        log.info("semcache: the shared rate limiter %r reaches Redis at %s again", self.name, self.url)

    def _unavailable(self) -> RateLimited:
        return RateLimited(f"the shared rate limiter cannot reach Redis at {self.url}; no upstream call without it",
                           retry_after=self.unavailable_retry_after, status_code=None, code="limiter_unavailable")

    def _local_step(self, tokens: int) -> tuple[Reservation | None, float]:
        """Admit under the local share, or say how long to wait (never longer than the next Redis probe)."""
        assert self._local is not None
        if self._local.tpm is not None and tokens > self._local.tpm:
            raise self._unavailable()  # fits the quota, never this replica's share of it: wait for Redis
        reservation = self._local.try_acquire(tokens)
        if reservation is not None:
            return reservation, 0.0  # the local limiter's own object: its adjust knows it
        return None, min(self._local.wait_time(tokens), self.probe_interval)

    # -- public API --------------------------------------------------------------------------

    def _check_size(self, tokens: int) -> None:
        if not isinstance(tokens, int) or isinstance(tokens, bool) or tokens < 0:
            raise RequestError(f"tokens must be a non-negative integer, got {tokens!r}", field="tokens")
        if self.tpm is not None and tokens > self.tpm:
            raise RequestError(f"a request of {tokens} tokens can never fit a limit of {self.tpm} tokens per window; lower max_tokens", field="max_tokens")

    def wait_time(self, tokens: int) -> float:
        """Return the seconds until a request of ``tokens`` would be admitted; consume nothing."""
        self._check_size(tokens)
        answer = self._script(tokens, admit=False)
        if answer is not None:
            return answer[1]
        if self._local is None or (self._local.tpm is not None and tokens > self._local.tpm):
            return self.unavailable_retry_after
        return self._local.wait_time(tokens)

    def try_acquire(self, tokens: int) -> Reservation | None:
        """Admit a request of ``tokens`` now and return its reservation, or None (nothing consumed)."""
        reservation, _, _ = self._try(tokens)
        return reservation

    def _try(self, tokens: int) -> tuple[Reservation | None, float, bool]:
        """Admit now or say how long to wait; the flag says whether Redis answered."""
        self._check_size(tokens)
        answer = self._script(tokens, admit=True)
        if answer is not None:
            admitted, value, now = answer
            return (_SharedReservation(now, tokens, seq=int(value)), 0.0, True) if admitted else (None, value, True)
        if self._local is None:
            return None, self.unavailable_retry_after, False
        return (*self._local_step(tokens), False)

    def _step(self, tokens: int, max_wait: float | None, started: float) -> tuple[Reservation | None, float]:
        """Admit now, or return how long to sleep; raise RateLimited past ``max_wait`` or without Redis."""
        reservation, wait, reached = self._try(tokens)
        elapsed = self._timer() - started
        if reservation is not None:
            reservation.waited = elapsed
            return reservation, 0.0
        if not reached and self._local is None:
            raise self._unavailable()
        if max_wait is not None and elapsed + wait > max_wait:
            raise RateLimited(f"rate limit: the request would wait {wait:.2f}s, more than allowed", retry_after=wait,
                              status_code=None, code="local_rate_limit")
        return None, wait

    def acquire(self, tokens: int, *, max_wait: float | None = None, sleep: Callable[[float], None] = time.sleep) -> Reservation:
        """Wait until one request of ``tokens`` fits the shared quota, admit it and return its reservation.

        Raises ``RateLimited(retry_after=...)``, consuming nothing, when the wait would exceed
        ``max_wait`` seconds, or (code ``limiter_unavailable``) when Redis cannot be reached and
        there is no ``local_share``.
        """
        started = self._timer()
        while True:
            reservation, wait = self._step(tokens, max_wait, started)
            if reservation is not None:
                return reservation
            sleep(wait)

    async def aacquire(self, tokens: int, *, max_wait: float | None = None, sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> Reservation:
        """Async ``acquire``: each Redis round trip runs in a worker thread, so a slow Redis never stalls the loop."""
        started = self._timer()
        while True:
            reservation, wait = await asyncio.to_thread(self._step, tokens, max_wait, started)
            if reservation is not None:
                return reservation
            await sleep(wait)

    def adjust(self, reservation: Reservation, actual_tokens: int) -> None:
        """Replace a reservation's estimated tokens by the real usage, if it is still in the window.

        An admission that already left the window is left alone (it no longer counts anywhere).
        """
        actual = max(0, int(actual_tokens))
        if not isinstance(reservation, _SharedReservation):
            if self._local is not None:  # admitted by the local share while Redis was away
                self._local.adjust(reservation, actual)
            return
        try:
            self._adjust_script(keys=[*self._keys[:3], self._keys[4]], args=[reservation.seq, actual, _micros(self.window)])
        except redis.exceptions.RedisError as exc:
            self._late_failure("correct the tokens of an admission", exc)
            return
        reservation.tokens = actual

    def observe(self, info: RateLimitInfo) -> None:
        """Admit no more than the provider says is left (``remaining``) until its ``reset``, on every replica.

        A later observation replaces an earlier one for the same limit.
        """
        if self._local is not None:
            self._local.observe(info)
        args = []
        for remaining, reset in ((info.remaining_requests, info.reset_requests), (info.remaining_tokens, info.reset_tokens)):
            usable = remaining is not None and reset is not None and reset > 0
            args += [int(remaining), max(1, math.ceil(reset * 1000))] if usable else ["", ""]
        if args == ["", "", "", ""]:
            return
        try:
            self._observe_script(keys=[self._keys[2], self._keys[3], self._keys[4]], args=args)
        except redis.exceptions.RedisError as exc:
            self._late_failure("store the provider's limits", exc)

    def _late_failure(self, what: str, exc: Exception) -> None:
        if not self._warned_late:
            self._warned_late = True
            log.warning("semcache: the shared rate limiter %r could not %s in Redis at %s (%s); later failures are not logged",
                        self.name, what, self.url, scrub(f"{type(exc).__name__}: {exc}", self._secrets))


def _micros(seconds: float) -> int:
    return max(1, round(seconds * 1_000_000))
