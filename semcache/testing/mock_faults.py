"""The mock upstream's refusals: scripted faults, rate-limit buckets, and OpenAI's error answers.

Pure logic, no I/O: ``mock.py`` checks a request's fields with ``check_field``, asks a
``FaultPlan`` what to do with it and a ``RateLimits`` whether to admit it, then sends what
``fault_reply``, ``refusal_body`` or ``error_body`` return.

Fault spec (``--faults``): comma-separated ``KIND:RATE[:SECONDS]``; RATE is ``30%`` or ``0.3``.

    429      429 rate_limit_exceeded, ``retry-after`` SECONDS (default 1)
    tpd/rpd  429 over the tokens/requests per day limit; the message names the wait, SECONDS (default 432: "7m12s")
    quota    429 insufficient_quota (``quota:100%`` makes the account permanently out of quota)
    500/502/503  that status with OpenAI's server_error body
    drop     close the connection without a response
    garbage  200 whose body is not valid JSON
    slow     add SECONDS of latency (default ``slow_s``); drawn independently of the others

Each request draws once from a ``random.Random(seed)`` for the terminal kinds (their rates add
up, at most 100%) and once more for ``slow``, so a run with the same seed and the same request
order injects the same faults.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass
from typing import Any, Callable

from semcache.errors import ConfigError

__all__ = [
    "FAULT_KINDS",
    "JSON_PARSE_ERROR",
    "Fault",
    "FaultPlan",
    "Invalid",
    "RateLimits",
    "Refusal",
    "TokenBucket",
    "check_field",
    "error_body",
    "fault_reply",
    "format_duration",
    "parse_faults",
    "refusal_body",
    "retry_headers",
]

FAULT_KINDS = ("429", "quota", "500", "502", "503", "drop", "garbage", "slow", "tpd", "rpd")
_DEFAULT_SECONDS = {"429": 1.0, "tpd": 432.0, "rpd": 432.0}


@dataclass(frozen=True)
class Fault:
    """One scripted fault: ``kind`` happens to a fraction ``rate`` of requests; ``seconds`` is its delay or retry-after."""

    kind: str
    rate: float
    seconds: float | None = None


def _parse_rate(text: str, part: str) -> float:
    try:
        rate = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise ConfigError(f"faults: bad rate {text!r} in {part!r}; expected like 30% or 0.3") from None
    if not 0.0 <= rate <= 1.0 or math.isnan(rate):
        raise ConfigError(f"faults: rate {text!r} in {part!r} must be between 0% and 100%")
    return rate


def parse_faults(spec: str) -> tuple[Fault, ...]:
    """Parse a ``--faults`` spec such as ``"429:10%,500:0.05,slow:20%:2"``; empty gives no faults.

    Raises ``ConfigError`` naming the bad part: an unknown kind, a malformed or out-of-range rate,
    a bad SECONDS, a kind given twice, or terminal rates that add up to more than 100%.
    """
    faults: list[Fault] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        fields = part.split(":")
        if len(fields) not in (2, 3):
            raise ConfigError(f"faults: {part!r} is not KIND:RATE[:SECONDS]")
        kind = fields[0].strip().lower()
        if kind not in FAULT_KINDS:
            raise ConfigError(f"faults: unknown kind {fields[0]!r} in {part!r}; expected one of {', '.join(FAULT_KINDS)}")
        if any(f.kind == kind for f in faults):
            raise ConfigError(f"faults: kind {kind!r} given twice")
        seconds = None
        if len(fields) == 3:
            if kind not in ("429", "slow", "tpd", "rpd"):
                raise ConfigError(f"faults: {part!r}: only 429, tpd, rpd and slow take SECONDS")
            try:
                seconds = float(fields[2].strip().removesuffix("s"))
            except ValueError:
                raise ConfigError(f"faults: bad SECONDS {fields[2]!r} in {part!r}") from None
            if not seconds >= 0 or math.isinf(seconds):
                raise ConfigError(f"faults: SECONDS in {part!r} must be a finite number >= 0")
        faults.append(Fault(kind, _parse_rate(fields[1].strip(), part), seconds))
    terminal = sum(f.rate for f in faults if f.kind != "slow")
    if terminal > 1.0 + 1e-9:
        raise ConfigError(f"faults: rates of {spec!r} add up to {terminal:.0%}, more than 100%")
    return tuple(faults)


class FaultPlan:
    """Decide, deterministically from ``seed``, which fault (if any) each request gets."""

    def __init__(self, faults: tuple[Fault, ...], *, seed: int = 0, slow_s: float = 2.0) -> None:
        self.faults = faults
        self.seed = seed
        self.slow_s = slow_s
        self.reset()

    def reset(self) -> None:
        """Restart the random sequence, so the same requests get the same faults again."""
        self._rng = random.Random(self.seed)

    def draw(self) -> tuple[Fault | None, float]:
        """Return (the terminal fault or None, extra latency in seconds) for the next request."""
        terminal = [f for f in self.faults if f.kind != "slow"]
        slow = [f for f in self.faults if f.kind == "slow"]
        if not self.faults:
            return None, 0.0
        # Two draws per request, always, so adding `slow` never shifts the other faults' sequence.
        r, r_slow = self._rng.random(), self._rng.random()
        chosen, edge = None, 0.0
        for fault in terminal:
            edge += fault.rate
            if r < edge:
                chosen = fault
                break
        delay = 0.0
        if slow and r_slow < slow[0].rate:
            delay = slow[0].seconds if slow[0].seconds is not None else self.slow_s
        if chosen is not None and chosen.seconds is None and chosen.kind in _DEFAULT_SECONDS:
            chosen = Fault(chosen.kind, chosen.rate, _DEFAULT_SECONDS[chosen.kind])
        return chosen, delay


def format_duration(seconds: float) -> str:
    """Format a duration the way OpenAI's reset headers do (Go style): ``12ms``, ``1s``, ``1.5s``, ``6m0s``."""
    if seconds <= 0:
        return "0s"
    if seconds < 1:
        return f"{max(1, math.ceil(seconds * 1000))}ms"
    ms = math.ceil(seconds * 1000)
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs = f"{ms / 1000:.3f}".rstrip("0").rstrip(".") + "s"
    if hours:
        return f"{hours}h{minutes}m{secs}"
    return f"{minutes}m{secs}" if minutes else secs


class TokenBucket:
    """A bucket of ``limit`` units that refills continuously, ``limit`` per 60 seconds.

    This is how OpenAI describes its limits: the full limit is available at once and capacity
    comes back continuously, not at the top of each minute, so RPM 60 admits 60 requests in a
    burst and then one a second.
    """

    def __init__(self, limit: int, *, timer: Callable[[], float] = time.monotonic) -> None:
        if limit <= 0:
            raise ConfigError(f"rate limit must be a positive integer, got {limit!r}")
        self.limit = limit
        self._timer = timer
        self.reset()

    def reset(self) -> None:
        """Fill the bucket."""
        self._level = float(self.limit)
        self._at = self._timer()

    def available(self) -> float:
        """Return the units available now."""
        now = self._timer()
        self._level = min(float(self.limit), self._level + (now - self._at) * self.limit / 60.0)
        self._at = now
        return self._level

    def wait_for(self, cost: float) -> float:
        """Return the seconds until ``cost`` units are available (0 if they are now)."""
        return max(0.0, cost - self.available()) * 60.0 / self.limit

    def take(self, cost: float) -> None:
        """Consume ``cost`` units; the caller has checked ``wait_for(cost) == 0``."""
        self.available()
        self._level -= cost

    def headers(self, suffix: str) -> dict[str, str]:
        """Return the ``x-ratelimit-*-{suffix}`` headers describing this bucket now."""
        level = self.available()
        return {
            f"x-ratelimit-limit-{suffix}": str(self.limit),
            f"x-ratelimit-remaining-{suffix}": str(max(0, math.floor(level))),
            f"x-ratelimit-reset-{suffix}": format_duration((self.limit - level) * 60.0 / self.limit),
        }


@dataclass(frozen=True)
class Refusal:
    """Why a request was refused by the limits: which one (``requests`` or ``tokens``) and for how long."""

    kind: str
    limit: int
    used: int
    requested: int
    retry_after: float | None  # None: the request can never fit (larger than the limit)


class RateLimits:
    """Requests-per-minute and tokens-per-minute buckets checked together; either may be None."""

    def __init__(self, rpm: int | None = None, tpm: int | None = None, *, timer: Callable[[], float] = time.monotonic) -> None:
        self.requests = TokenBucket(rpm, timer=timer) if rpm is not None else None
        self.tokens = TokenBucket(tpm, timer=timer) if tpm is not None else None

    def reset(self) -> None:
        """Refill both buckets."""
        for bucket in (self.requests, self.tokens):
            if bucket is not None:
                bucket.reset()

    def admit(self, tokens: int) -> Refusal | None:
        """Take one request and ``tokens`` tokens if both fit, else take nothing and return the Refusal."""
        for kind, bucket, cost in (("requests", self.requests, 1), ("tokens", self.tokens, tokens)):
            if bucket is None:
                continue
            used = bucket.limit - max(0, math.floor(bucket.available()))
            if cost > bucket.limit:
                return Refusal(kind, bucket.limit, used, cost, None)
            wait = bucket.wait_for(cost)
            if wait > 0:
                return Refusal(kind, bucket.limit, used, cost, wait)
        for bucket, cost in ((self.requests, 1), (self.tokens, tokens)):
            if bucket is not None:
                bucket.take(cost)
        return None

    def headers(self) -> dict[str, str]:
        """Return the ``x-ratelimit-*`` headers for the limits that are set."""
        out: dict[str, str] = {}
        if self.requests is not None:
            out.update(self.requests.headers("requests"))
        if self.tokens is not None:
            out.update(self.tokens.headers("tokens"))
        return out


def error_body(message: str, type_: str = "invalid_request_error", *, param: str | None = None, code: str | None = None) -> dict:
    """Return OpenAI's error body: ``{"error": {"message", "type", "param", "code"}}``."""
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


def refusal_body(refusal: Refusal, model: str) -> dict:
    """Return the 429 body OpenAI sends when a request is over its RPM or TPM limit."""
    unit = "requests per min (RPM)" if refusal.kind == "requests" else "tokens per min (TPM)"
    if refusal.retry_after is None:
        message = (
            f"Request too large for {model} in organization org-mock on {unit}: Limit {refusal.limit}, "
            f"Requested {refusal.requested}. The input or output tokens must be reduced in order to run successfully."
        )
    else:
        message = (
            f"Rate limit reached for {model} in organization org-mock on {unit}: Limit {refusal.limit}, "
            f"Used {refusal.used}, Requested {refusal.requested}. Please try again in "
            f"{format_duration(refusal.retry_after)}. Visit https://platform.openai.com/account/rate-limits to learn more."
        )
    return error_body(message, refusal.kind, code="rate_limit_exceeded")


def retry_headers(seconds: float) -> dict[str, str]:
    """Return ``retry-after`` (whole seconds, rounded up) and ``retry-after-ms``."""
    return {"retry-after": str(max(1, math.ceil(seconds))), "retry-after-ms": str(max(1, math.ceil(seconds * 1000)))}


# --- OpenAI's answers to bad requests and to faults -----------------------------------------------

_GARBAGE = b'{"id": "chatcmpl-mock", "object": "chat.completion", "choices": [{"index": 0, "mess'
JSON_PARSE_ERROR = (
    "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP "
    "library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)"
)
_QUOTA = ("You exceeded your current quota, please check your plan and billing details. For more information on "
          "this error, read the docs: https://platform.openai.com/docs/guides/error-codes/api-errors.")


class Invalid(Exception):
    """A request OpenAI would answer with 400 invalid_request_error; ``param`` and ``code`` go in the body."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param, self.code = param, code


_JSON_TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}


def _json_type(value: Any) -> str:
    for name, kind in (("boolean", bool), ("integer", int), ("number", float), ("string", str), ("array", list), ("object", dict)):
        if isinstance(value, kind):
            return name
    return "null"


def check_field(body: dict, name: str, kind: str, *, required: bool = False, minimum: int | None = None,
                maximum: int | None = None) -> Any:
    """Return ``body[name]`` checked like OpenAI checks it (JSON type, integer range); None when absent.

    Raises ``Invalid`` with OpenAI's message and code (missing_required_parameter, invalid_type,
    integer_below_min_value, integer_above_max_value) and ``param`` set to ``name``.
    """
    value = body.get(name)
    if value is None:
        if required:
            raise Invalid(f"Missing required parameter: '{name}'.", name, "missing_required_parameter")
        return None
    if not isinstance(value, _JSON_TYPES[kind]) or (kind in ("integer", "number") and isinstance(value, bool)):
        got = _json_type(value)
        message = f"Invalid type for '{name}': expected {_article(kind)} {kind}, but got {_article(got)} {got} instead."
        raise Invalid(message, name, "invalid_type")
    if minimum is not None and value < minimum:
        message = f"Invalid '{name}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead."
        raise Invalid(message, name, "integer_below_min_value")
    if maximum is not None and value > maximum:
        message = f"Invalid '{name}': integer above maximum value. Expected a value <= {maximum}, but got {value} instead."
        raise Invalid(message, name, "integer_above_max_value")
    return value


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


_BAD_GATEWAY = ("<html><head><title>502 Bad Gateway</title></head><body><center><h1>502 Bad Gateway</h1></center>"
                "<hr><center>cloudflare</center></body></html>")


def fault_reply(kind: str, seconds: float | None, model: str, *, rpm: int | None, stream: bool) -> tuple[int, bytes, str, dict]:
    """Return (status, body, media type, headers) of a terminal fault other than ``drop``."""
    if kind == "429":
        limit = rpm or 60
        body = refusal_body(Refusal("requests", limit, limit, 1, seconds or 1.0), model)
        return 429, json.dumps(body).encode(), "application/json", retry_headers(seconds or 1.0)
    if kind in ("tpd", "rpd"):  # OpenAI's daily limits: the wait is in the message, no retry-after header
        unit = "tokens per day (TPD)" if kind == "tpd" else "requests per day (RPD)"
        limit = 2_000_000 if kind == "tpd" else 10_000
        wait = format_duration(seconds if seconds is not None else _DEFAULT_SECONDS[kind])
        message = (f"Rate limit reached for {model} in organization org-mock on {unit}: Limit {limit}, Used {limit}, "
                   f"Requested 1. Please try again in {wait}. Visit https://platform.openai.com/account/rate-limits to learn more.")
        return 429, json.dumps(error_body(message, "tokens" if kind == "tpd" else "requests", code="rate_limit_exceeded")).encode(), "application/json", {}
    if kind == "quota":  # no retry-after: waiting does not bring quota back
        return 429, json.dumps(error_body(_QUOTA, "insufficient_quota", code="insufficient_quota")).encode(), "application/json", {}
    if kind == "502":  # what OpenAI's edge really sends: an HTML page, not JSON
        return 502, _BAD_GATEWAY.encode(), "text/html", {}
    if kind in ("500", "503"):
        message = ("The server had an error while processing your request. Sorry about that!" if kind == "500"
                   else "The engine is currently overloaded, please try again later.")
        return int(kind), json.dumps(error_body(message, "server_error")).encode(), "application/json", {}
    if kind == "garbage":
        return (200, b"data: " + _GARBAGE + b"\n\n", "text/event-stream", {}) if stream else (200, _GARBAGE, "application/json", {})
    raise ValueError(f"no reply for fault kind {kind!r}")
