"""Call an OpenAI-compatible API: paced by the limiter, retried by policy, failing over, typed errors.

``OpenAIUpstream`` wraps the official ``openai`` SDK. Its clients are built with
``max_retries=0`` so that every attempt passes our limiter and retry policy, never the SDK's.
Requests go through the SDK's generic ``post(path, body=...)``: the request dict is sent as is,
so fields this code has never heard of pass through untouched. The answer's JSON is returned
as the provider sent it, after the SDK's response model has validated its shape.

The call logic is written once, as a generator of I/O steps (acquire, send, sleep) that a sync
and an async driver execute, so ``call`` and ``acall`` cannot drift apart.

Translating the SDK's exceptions happens in ``translate_error`` and nowhere else.

Accounting around a call (see ``OpenAIUpstream``): the budget is reserved before the first
attempt and settled after the answer; once the provider has answered (and billed), nothing
in the accounting (limiter, pricing, stats, budget ledger) can fail the call: a failure there
is logged once per kind, counted as ``errors.<Class>``, and the answer is returned. In
``acall`` the budget ledger (SQLite on disk) is read and written in a worker thread, never on
the event loop.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Generator, Iterator, Mapping, Protocol, Sequence
from urllib.parse import urlsplit

import httpx2
import openai

from ..errors import (
    AuthenticationFailed,
    DailyLimitReached,
    QuotaExhausted,
    RateLimited,
    RequestError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from ..stats import Stats
from .budget import BudgetGuard, BudgetReservation
from .anthropic import anthropic_headers, is_low_balance, stream_usage
from .headers import DAILY_DEFAULT_WAIT, RateLimitInfo, daily_limit_wait, parse_ratelimit_headers
from .limiter import Limiter, RateLimiter, Reservation
from .pricing import Pricing
from .retry import RetryPolicy
from .tokens import CAP_FIELDS, estimate_request_tokens

__all__ = ["KINDS", "Endpoint", "FunctionUpstream", "OpenAIUpstream", "Upstream", "UpstreamResponse", "translate_error"]

log = logging.getLogger("semcache")

# kind -> (path under base_url, (list field, item fields) every answer must have)
# Only what semcache itself relies on is checked: the SDK's own types require fields that
# OpenAI-compatible servers (and newer or older API versions) leave out, and rejecting a
# usable answer would make the cache worse than no cache.
KINDS: dict[str, tuple[str, tuple[str, tuple[str, ...]]]] = {
    "chat": ("/chat/completions", ("choices", ("message",))),
    "completions": ("/completions", ("choices", ("text",))),
    "responses": ("/responses", ("output", ())),
    "embeddings": ("/embeddings", ("data", ("embedding",))),
    "messages": ("/messages", ("content", ())),  # Anthropic's Messages API (an endpoint with api="anthropic")
}


def check_shape(kind: str, body: Any) -> None:
    """Raise ``UpstreamStatusError`` unless ``body`` has the fields a ``kind`` answer needs."""
    field_name, item_fields = KINDS[kind][1]
    items = body.get(field_name) if isinstance(body, Mapping) else None
    problem = None
    if not isinstance(items, list):
        problem = f"'{field_name}' is not a list"
    else:
        for i, item in enumerate(items):
            missing = [f for f in item_fields if not isinstance(item, Mapping) or f not in item]
            if missing:
                problem = f"'{field_name}[{i}]' has no {missing[0]!r}"
                break
    if problem:
        raise UpstreamStatusError(f"upstream {kind} answer does not have the expected shape: {problem}", status_code=200, code="invalid_response_body")


# Error codes meaning the account cannot pay: retrying cannot help (OpenAI sends them with 429;
# Anthropic's error type is billing_error, and a spent prepaid balance a 400 that says so).
QUOTA_CODES = frozenset({"insufficient_quota", "billing_hard_limit_reached", "billing_not_active", "quota_exceeded",
                         "billing_error"})


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible API: where, with which key, and its names for our models."""

    base_url: str
    api_key: str = field(repr=False)
    name: str | None = None
    model_map: Mapping[str, str] = field(default_factory=dict)
    api: str = "openai"  # "anthropic": the Messages API is sent with x-api-key and anthropic-version

    def headers(self, kind: str) -> Mapping[str, Any]:
        """Per-request headers for a ``kind`` request (Anthropic's auth for its Messages API)."""
        return anthropic_headers(self.api_key) if self.api == "anthropic" and kind == "messages" else {}

    @property
    def label(self) -> str:
        """The name to show in stats and logs: ``name``, else the host (never the key)."""
        return self.name or (urlsplit(self.base_url).hostname or "upstream")


@dataclass(frozen=True)
class UpstreamResponse:
    """One answer: the provider's JSON ``body`` and what it cost to get."""

    body: dict
    model: str  # the model asked for (a fallback model if one answered)
    prompt_tokens: int
    completion_tokens: int
    attempts: int
    waited_s: float  # limiter waits and retry sleeps
    endpoint: str
    headers: RateLimitInfo = field(default_factory=RateLimitInfo)


class Upstream(Protocol):
    """Answer an OpenAI request body (``kind``: chat, completions, responses, embeddings)."""

    def call(self, request: dict, *, kind: str = "chat", tenant: str = "") -> UpstreamResponse: ...

    async def acall(self, request: dict, *, kind: str = "chat", tenant: str = "") -> UpstreamResponse: ...


def translate_error(exc: openai.OpenAIError) -> tuple[UpstreamError, RateLimitInfo]:
    """Map an openai SDK exception to semcache's error tree, with the headers of its response."""
    if isinstance(exc, openai.APITimeoutError):
        return UpstreamTimeout("the upstream provider did not answer in time"), RateLimitInfo()
    if isinstance(exc, openai.APIConnectionError):
        return UpstreamConnectionError(f"the upstream provider could not be reached: {exc.message}"), RateLimitInfo()
    response = getattr(exc, "response", None)
    info = parse_ratelimit_headers(response.headers) if response is not None else RateLimitInfo()
    status = getattr(exc, "status_code", None)
    code = getattr(exc, "code", None) or getattr(exc, "type", None)
    message = f"upstream answered {status or 'an error'}: {getattr(exc, 'message', str(exc))}"
    body = getattr(exc, "body", None)
    said = f"{message} {body.get('message', '')}" if isinstance(body, Mapping) else message  # the provider's own words
    if isinstance(exc, openai.APIResponseValidationError):
        return UpstreamStatusError(message, status_code=status, code="invalid_response_body"), info
    if status == 402 or code in QUOTA_CODES or getattr(exc, "type", None) in QUOTA_CODES or (
            status == 400 and is_low_balance(said)):
        return QuotaExhausted(message, status_code=status, code=code), info
    if status in (401, 403):
        return AuthenticationFailed(message, status_code=status, code=code), info
    daily = daily_limit_wait(said) if status == 429 else None
    if daily is not None:  # the wait the message names, else the headers', else a minute (never 0: a loop)
        wait = daily or info.retry_after or info.reset_for_exhausted() or DAILY_DEFAULT_WAIT
        return DailyLimitReached(message, retry_after=wait, code=code or "rate_limit_exceeded"), info
    if status == 429:
        retry_after = info.retry_after if info.retry_after is not None else info.reset_for_exhausted() or 0.0
        return RateLimited(message, retry_after=retry_after, code=code or "rate_limit_exceeded"), info
    return UpstreamStatusError(message, status_code=status, code=code), info


def _usage(body: Mapping, kind: str) -> tuple[int, int] | None:
    """Return (prompt, completion) tokens from an answer or final stream chunk, if it says."""
    usage = body.get("usage")
    if not isinstance(usage, Mapping) and isinstance(body.get("response"), Mapping):
        usage = body["response"].get("usage")  # responses API stream: response.completed event
    if not isinstance(usage, Mapping) and isinstance(body.get("message"), Mapping):
        usage = body["message"].get("usage")  # Messages API stream: message_start event
    if not isinstance(usage, Mapping):
        return None
    prompt = usage.get("prompt_tokens", usage.get("input_tokens"))
    completion = usage.get("completion_tokens", usage.get("output_tokens", 0))
    if not isinstance(prompt, int) or not isinstance(completion, int):
        return None
    return prompt, completion


def _validate_request(request: Any, kind: str) -> None:
    if kind not in KINDS:
        raise RequestError(f"kind must be one of {sorted(KINDS)}, got {kind!r}", field="kind")
    if not isinstance(request, Mapping):
        raise RequestError(f"request must be a JSON object (dict), got {type(request).__name__}", field="request")
    if not isinstance(request.get("model"), str) or not request["model"]:
        raise RequestError("request needs a 'model' string", field="model")


# I/O steps the call plan yields; the drivers execute them.
@dataclass
class _Acquire:
    tokens: int
    max_wait: float


@dataclass
class _Send:
    endpoint: Endpoint
    path: str
    body: dict
    stream: bool
    headers: Mapping[str, Any] = field(default_factory=dict)
    timeout: float | None = None  # this attempt's own (None: the client's)


@dataclass
class _Sleep:
    seconds: float


@dataclass
class _Ledger:
    """Budget bookkeeping (ledger I/O): run as is by ``call``, in a worker thread by ``acall``."""

    fn: Callable[..., Any]
    args: tuple


@dataclass
class _Opened:
    """A stream that answered: its chunks still to read, and what to account once read."""

    chunks: Any
    model: str
    endpoint: str
    reservation: Reservation
    attempts: int
    waited: float
    floor: int = 0  # tokens the provider counted at admission (a stated max_tokens)
    budget: BudgetReservation | None = None  # settled once read; kept (the upper bound) if the stream breaks


class OpenAIUpstream:
    """Call OpenAI-compatible endpoints in order, paced, retried, with model fallbacks.

    An endpoint that fails (connection errors, timeouts or 5xx after retries, quota) is skipped
    for ``cooldown`` seconds; an endpoint that answers 429 after retries, or 404, is skipped for
    this call only. When every endpoint failed for a model with a quota error, 404 or 5xx, the
    next of ``fallback_models`` is tried. ``retry.deadline`` bounds the whole call. A non-streamed
    attempt waits at most ``first_byte_timeout`` seconds (default ``timeout``) for its answer to
    begin, and never past the deadline: a hanging provider fails the attempt, which is retried
    while the deadline allows. ``timeout`` is the SDK's, for streams the longest silence between chunks.

    With a ``budget``, each call first reserves its estimated cost (prompt estimate plus
    ``max_tokens`` or ``default_max_tokens``), raising ``BudgetExceeded`` with nothing sent when
    it does not fit, or ``UpstreamError(code="budget_ledger_unavailable")`` when the ledger
    cannot be read (fail closed: no spending that cannot be counted); an answer settles the
    reservation to its real usage, a failed call gives it all back. After the provider has
    answered, a failure of the accounting (limiter, pricing, stats, budget ledger) is logged
    once per kind, counted as ``errors.<Class>``, and the answer returned regardless.
    """

    def __init__(
        self,
        endpoints: Endpoint | Sequence[Endpoint],
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        limiter: Limiter | None = None,
        retry: RetryPolicy | None = None,
        budget: BudgetGuard | None = None,
        fallback_models: Sequence[str] = (),
        stats: Stats | None = None,
        pricing: Pricing | None = None,
        timeout: float = 60.0,
        first_byte_timeout: float | None = None,
        default_max_tokens: int = 256,
        cooldown: float = 30.0,
        timer: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        async_sleep: Callable[[float], Any] | None = None,
        http_client: httpx2.Client | None = None,
        async_http_client: httpx2.AsyncClient | None = None,
    ) -> None:
        self.endpoints = [endpoints] if isinstance(endpoints, Endpoint) else list(endpoints)
        if not self.endpoints:
            raise RequestError("at least one endpoint is needed", field="endpoints")
        self.limiter: Limiter = limiter if limiter is not None else RateLimiter(rpm, tpm, timer=timer)
        self.retry = retry or RetryPolicy()
        self.budget = budget
        self.fallback_models = tuple(fallback_models)
        self.stats = stats
        self.pricing = pricing or Pricing()
        self.timeout = timeout
        self.first_byte_timeout = timeout if first_byte_timeout is None else first_byte_timeout
        self.default_max_tokens = default_max_tokens
        self.cooldown = cooldown
        self._timer = timer
        self._sleep = sleep
        self._async_sleep = async_sleep
        self._http_client = http_client
        self._async_http_client = async_http_client
        self._lock = threading.Lock()
        self._clients: dict[tuple[int, bool], Any] = {}
        self._down_until: dict[int, float] = {}
        self._warned: set[tuple[str, str]] = set()  # (what, error class) of accounting failures already logged

    def __repr__(self) -> str:
        names = ", ".join(e.label for e in self.endpoints)
        return f"OpenAIUpstream(endpoints=[{names}], limiter={self.limiter!r}, fallback_models={list(self.fallback_models)!r})"

    def close(self) -> None:
        """Close the sync SDK clients (and their connections); the upstream stays usable."""
        with self._lock:
            clients = [c for (_, asynchronous), c in self._clients.items() if not asynchronous]
            self._clients = {k: c for k, c in self._clients.items() if k[1]}
        for client in clients:
            client.close()

    async def aclose(self) -> None:
        """Close every SDK client, async ones included."""
        with self._lock:
            clients, self._clients = list(self._clients.items()), {}
        for (_, asynchronous), client in clients:
            await client.close() if asynchronous else client.close()

    def __enter__(self) -> "OpenAIUpstream":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- public API ------------------------------------------------------------------------
    def call(self, request: dict, *, kind: str = "chat", tenant: str = "") -> UpstreamResponse:
        """Send one request and return its answer; raise an ``UpstreamError`` subclass on failure."""
        return self._run(self._plan(request, kind, tenant, stream=False), tenant, request)

    async def acall(self, request: dict, *, kind: str = "chat", tenant: str = "") -> UpstreamResponse:
        """Async ``call``."""
        return await self._arun(self._plan(request, kind, tenant, stream=False), tenant, request)

    def stream(self, request: dict, *, kind: str = "chat", tenant: str = "") -> Iterator[dict]:
        """Yield the provider's stream chunks (dicts) as they arrive.

        Pacing, retries and failover happen before the first chunk (raised by the first
        ``next``); an error after it is raised as is. Tokens are corrected from a final usage
        chunk when the stream has one (chat: ``stream_options={"include_usage": true}``).
        """
        opened = self._run(self._plan(request, kind, tenant, stream=True), tenant, request)
        got: tuple[int, int] | None = None
        try:
            for chunk in opened.chunks:
                got = self._chunk(chunk, kind, got)
                yield chunk
        except (openai.OpenAIError, ValueError, httpx2.TransportError) as exc:
            raise self._failed(exc, tenant, opened.model) from exc
        finally:
            opened.chunks.close()
        self._account(opened, got, tenant)

    async def astream(self, request: dict, *, kind: str = "chat", tenant: str = "") -> AsyncIterator[dict]:
        """Async ``stream``."""
        opened = await self._arun(self._plan(request, kind, tenant, stream=True), tenant, request)
        got: tuple[int, int] | None = None
        try:
            async for chunk in opened.chunks:
                got = self._chunk(chunk, kind, got)
                yield chunk
        except (openai.OpenAIError, ValueError, httpx2.TransportError) as exc:
            raise self._failed(exc, tenant, opened.model) from exc
        finally:
            await opened.chunks.close()
        self._account(opened, got, tenant)

    # -- drivers: execute the plan's I/O steps -----------------------------------------------
    def _run(self, plan: Generator, tenant: str, request: Any) -> Any:
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                step = plan.throw(error) if error is not None else plan.send(value)
                value, error = None, None
                try:
                    if isinstance(step, _Acquire):
                        value = self.limiter.acquire(step.tokens, max_wait=step.max_wait, sleep=self._sleep)
                    elif isinstance(step, _Sleep):
                        self._sleep(step.seconds)
                    elif isinstance(step, _Ledger):
                        value = step.fn(*step.args)
                    else:
                        client = self._client(step.endpoint, asynchronous=False)
                        stream_cls = openai.Stream[object] if step.stream else None
                        value = client.post(step.path, body=step.body, cast_to=object if step.stream else httpx2.Response, stream=step.stream, stream_cls=stream_cls,
                                            options=_options(step))
                except Exception as exc:  # handed to the plan, which decides
                    error = exc
        except StopIteration as done:
            return done.value
        except UpstreamError as exc:
            self._count(f"errors.{type(exc).__name__}", 1, tenant, _model_of(request))
            raise

    async def _arun(self, plan: Generator, tenant: str, request: Any) -> Any:
        sleep = self._async_sleep or asyncio.sleep
        value: Any = None
        error: BaseException | None = None
        try:
            while True:
                step = plan.throw(error) if error is not None else plan.send(value)
                value, error = None, None
                try:
                    if isinstance(step, _Acquire):
                        value = await self.limiter.aacquire(step.tokens, max_wait=step.max_wait, sleep=sleep)
                    elif isinstance(step, _Sleep):
                        await sleep(step.seconds)
                    elif isinstance(step, _Ledger):  # SQLite I/O: never on the event loop
                        value = await asyncio.to_thread(step.fn, *step.args)
                    else:
                        client = self._client(step.endpoint, asynchronous=True)
                        stream_cls = openai.AsyncStream[object] if step.stream else None
                        value = await client.post(step.path, body=step.body, cast_to=object if step.stream else httpx2.Response, stream=step.stream, stream_cls=stream_cls,
                                                  options=_options(step))
                except Exception as exc:
                    error = exc
        except StopIteration as done:
            return done.value
        except UpstreamError as exc:
            self._count(f"errors.{type(exc).__name__}", 1, tenant, _model_of(request))
            raise

    def _client(self, endpoint: Endpoint, *, asynchronous: bool) -> Any:
        key = (self.endpoints.index(endpoint), asynchronous)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                cls = openai.AsyncOpenAI if asynchronous else openai.OpenAI
                http = self._async_http_client if asynchronous else self._http_client
                client = cls(api_key=endpoint.api_key, base_url=endpoint.base_url, max_retries=0, timeout=self.timeout, http_client=http)
                self._clients[key] = client
            return client

    # -- the call logic, once for sync and async -----------------------------------------------
    def _plan(self, request: dict, kind: str, tenant: str, *, stream: bool) -> Generator[Any, Any, Any]:
        _validate_request(request, kind)
        prompt, completion = estimate_request_tokens(request, self.default_max_tokens, kind=kind)
        held = None
        if self.budget is not None:
            # Reserved, not just checked: concurrent calls cannot all pass a check and overshoot.
            held = yield _Ledger(self._reserve_budget, (request["model"], prompt, completion, tenant))
        try:
            return (yield from self._attempts(request, kind, tenant, prompt, prompt + completion, held, stream=stream))
        except Exception:
            if held is not None:
                yield _Ledger(self._release_budget, (held, tenant, request["model"]))
            raise

    def _attempts(self, request: dict, kind: str, tenant: str, prompt: int, tokens: int, held: BudgetReservation | None, *,
                  stream: bool) -> Generator[Any, Any, Any]:
        path, _ = KINDS[kind]
        # A provider counts a stated max_tokens toward TPM when it admits the request, whatever
        # the answer then uses: refunding the difference would pace above its count (-> 429s).
        floor = tokens if any(request.get(name) for name in CAP_FIELDS) else 0
        started = self._timer()
        attempts, waited = 0, 0.0
        error: UpstreamError | None = None
        for model in dict.fromkeys((request["model"], *self.fallback_models)):
            for index in self._endpoint_order():
                endpoint = self.endpoints[index]
                if error is not None and self._timer() - started >= self.retry.deadline:
                    raise error
                body = {**request, "model": endpoint.model_map.get(model, model)}
                if stream:
                    body["stream"] = True
                tries = 0
                while True:
                    reservation = yield _Acquire(tokens, max(0.0, self.retry.deadline - (self._timer() - started)))
                    waited += reservation.waited
                    self._count("ratelimit_wait_s", reservation.waited, tenant, model)
                    if reservation.waited >= 0.001:  # held back instead of sent into a 429 (not clock noise)
                        self._count("ratelimit_waits", 1, tenant, model)
                    tries += 1
                    attempts += 1
                    self._count("upstream_attempts", 1, tenant, model)
                    try:
                        answer = yield _Send(endpoint, path, body, stream, endpoint.headers(kind),
                                             self._attempt_timeout(stream, started))
                    except openai.OpenAIError as exc:
                        error, info = translate_error(exc)
                        self.limiter.adjust(reservation, 0)  # a refused attempt spent no tokens
                        self.limiter.observe(info)
                        # A billing refusal (insufficient_quota, also sent as 429) is not a rate limit.
                        if isinstance(error, QuotaExhausted):
                            self._count("quota_exhausted", 1, tenant, model)
                        elif error.status_code == 429:
                            self._count("rate_limited_429", 1, tenant, model)
                        delay = self.retry.next_delay(error, info, tries, self._timer() - started)
                        if delay is None:
                            break
                        self._count("retries", 1, tenant, model)
                        waited += delay
                        yield _Sleep(delay)
                        continue
                    with self._lock:
                        self._down_until.pop(index, None)
                    if stream:
                        with self._accounting("the rate limiter", tenant, model):
                            self.limiter.observe(parse_ratelimit_headers(answer.response.headers))
                        return _Opened(answer, model, endpoint.label, reservation, attempts, waited, floor, held)
                    return (yield from self._finish(answer, kind, model, endpoint, reservation, attempts, waited, tenant, prompt, floor, held))
                if _endpoint_failed(error):
                    with self._lock:
                        self._down_until[index] = self._timer() + self.cooldown
                if not (_endpoint_failed(error) or isinstance(error, RateLimited) or error.status_code == 404):
                    raise error
            if not (isinstance(error, QuotaExhausted) or error.status_code == 404 or (error.status_code or 0) >= 500):
                raise error
        raise error

    def _attempt_timeout(self, stream: bool, started: float) -> float | None:
        """A non-streamed attempt waits ``first_byte_timeout`` for its answer to begin, and never past the
        deadline; a streamed one keeps the client's ``timeout`` (the longest silence between two chunks)."""
        if stream:
            return None
        left = self.retry.deadline - (self._timer() - started)
        return max(0.1, min(self.first_byte_timeout, left))

    def _endpoint_order(self) -> list[int]:
        """Healthy endpoints in configured order, then those cooling down, soonest back first."""
        now = self._timer()
        with self._lock:
            down = {i: t for i, t in self._down_until.items() if t > now}
        healthy = [i for i in range(len(self.endpoints)) if i not in down]
        return healthy + sorted(down, key=down.__getitem__)

    def _finish(self, answer: httpx2.Response, kind: str, model: str, endpoint: Endpoint, reservation: Reservation, attempts: int,
                waited: float, tenant: str, prompt_estimate: int, floor: int,
                held: BudgetReservation | None) -> Generator[Any, Any, UpstreamResponse]:
        info = parse_ratelimit_headers(answer.headers)
        with self._accounting("the rate limiter", tenant, model):
            self.limiter.observe(info)
        try:
            body = answer.json()
        except ValueError as exc:
            raise UpstreamStatusError(f"upstream answered {answer.status_code} with a body that is not JSON", status_code=answer.status_code, code="invalid_json") from exc
        check_shape(kind, body)
        # A usable answer: the provider has billed it, so from here on nothing fails the call.
        usage = _usage(body, kind)
        with self._accounting("the rate limiter", tenant, model):
            if usage is not None:
                self.limiter.adjust(reservation, max(sum(usage), floor))
        prompt, completion = usage if usage is not None else (prompt_estimate, 0)
        with self._accounting("the stats", tenant, model):
            self._spent(model, prompt, completion, tenant)
        if held is not None:
            yield _Ledger(self._settle_budget, (held, usage, model, tenant))
        return UpstreamResponse(body, model, prompt, completion, attempts, waited, endpoint.label, info)

    def _chunk(self, chunk: Any, kind: str, got: tuple[int, int] | None) -> tuple[int, int] | None:
        """The usage known after ``chunk``: its own, else what came before (Anthropic's add up)."""
        if not isinstance(chunk, Mapping):
            raise UpstreamStatusError(f"upstream stream chunk is not a JSON object: {type(chunk).__name__}", code="invalid_response_body")
        if kind == "messages":
            return stream_usage(chunk, got)
        return _usage(chunk, kind) or got

    def _account(self, opened: _Opened, usage: tuple[int, int] | None, tenant: str) -> None:
        """Account a stream read to its end; never raises (the provider answered and billed).

        A stream without a usage chunk keeps its whole budget reservation (the upper bound).
        """
        with self._accounting("the rate limiter", tenant, opened.model):
            if usage is not None:
                self.limiter.adjust(opened.reservation, max(sum(usage), opened.floor))
        with self._accounting("the stats", tenant, opened.model):
            self._spent(opened.model, *(usage or (0, 0)), tenant)
        if opened.budget is not None:
            self._settle_budget(opened.budget, usage, opened.model, tenant)

    def _failed(self, exc: Exception, tenant: str, model: str) -> UpstreamError:
        """The typed error of a stream that broke after it opened: the SDK's error, an event that
        is not JSON (the SDK raises ``json.JSONDecodeError``), or the connection failing mid-stream."""
        if isinstance(exc, openai.OpenAIError):
            error, _ = translate_error(exc)
        elif isinstance(exc, httpx2.TimeoutException):
            error = UpstreamTimeout("the upstream provider stopped sending its stream in time")
        elif isinstance(exc, httpx2.TransportError):
            error = UpstreamConnectionError(f"the upstream stream broke: {type(exc).__name__}")
        else:
            error = UpstreamStatusError("upstream stream event is not valid JSON", status_code=200, code="invalid_json")
        self._count(f"errors.{type(error).__name__}", 1, tenant, model)
        return error

    def _spent(self, model: str, prompt: int, completion: int, tenant: str) -> None:
        self._count("upstream_calls", 1, tenant, model)
        self._count("upstream_prompt_tokens", prompt, tenant, model)
        self._count("upstream_completion_tokens", completion, tenant, model)
        self._count("cost_spent_usd", self.pricing.cost(model, prompt, completion), tenant, model)
        if not self.pricing.priced(model):  # shown as unpriced, never as $0 (stats.snapshot)
            self._count("unpriced_upstream_calls", 1, tenant, model)

    # -- budget bookkeeping: each runs in one _Ledger step ---------------------------------------
    def _reserve_budget(self, model: str, prompt: int, completion: int, tenant: str) -> BudgetReservation:
        assert self.budget is not None
        return self.budget.reserve(model, prompt, completion, tenant=tenant)

    def _settle_budget(self, held: BudgetReservation, usage: tuple[int, int] | None, model: str, tenant: str) -> None:
        assert self.budget is not None
        with self._accounting("the budget ledger", tenant, model):
            self.budget.settle(held, usage, model=model)

    def _release_budget(self, held: BudgetReservation, tenant: str, model: str) -> None:
        """Give a failed call's reservation back; a ledger failure here must not hide the call's own error."""
        assert self.budget is not None
        with self._accounting("the budget ledger (refunding a failed call)", tenant, model):
            self.budget.release(held)

    @contextmanager
    def _accounting(self, what: str, tenant: str, model: str) -> Iterator[None]:
        """Log (once per kind), count and swallow a failure of bookkeeping that must not fail the call."""
        try:
            yield
        except Exception as exc:
            name = type(exc).__name__
            with self._lock:
                first = (what, name) not in self._warned
                self._warned.add((what, name))
            if first:
                log.warning("semcache upstream: %s failed (%s: %s); the call's own answer or error is returned as it "
                            "came and its accounting may be off. Logged once; every occurrence counts as errors.%s",
                            what, name, exc, name, exc_info=exc)
            try:
                self._count(f"errors.{name}", 1, tenant, model)
            except Exception:  # the stats themselves failing: the warning above is all we can do
                pass

    def _count(self, counter: str, amount: float, tenant: str, model: str) -> None:
        if self.stats is not None:
            self.stats.incr(counter, amount, tenant=tenant, model=model)


def _options(step: _Send) -> dict:
    """The SDK request options of one attempt: its extra headers and its own timeout, when set."""
    options: dict[str, Any] = {"headers": dict(step.headers)} if step.headers else {}
    if step.timeout is not None:
        options["timeout"] = step.timeout
    return options


def _endpoint_failed(error: UpstreamError) -> bool:
    """Whether the endpoint itself is unwell (down or out of quota), not just this request."""
    return isinstance(error, (QuotaExhausted, UpstreamConnectionError, UpstreamTimeout)) or (
        isinstance(error, UpstreamStatusError) and (error.status_code or 0) >= 500
    )


def _model_of(request: Any) -> str:
    return request.get("model", "") if isinstance(request, Mapping) and isinstance(request.get("model"), str) else ""


class FunctionUpstream:
    """An ``Upstream`` around a plain function ``handler(request, kind) -> dict`` (for tests).

    The handler may raise any ``UpstreamError``; ``calls`` counts the calls made. Usage is read
    from the body's ``usage`` when present.
    """

    def __init__(self, handler: Callable[[dict, str], Any], *, name: str = "function") -> None:
        self.handler = handler
        self.name = name
        self.calls = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"FunctionUpstream(name={self.name!r}, calls={self.calls})"

    def _respond(self, request: dict, body: Any) -> UpstreamResponse:
        if not isinstance(body, dict):
            raise UpstreamStatusError(f"handler returned {type(body).__name__}, not a JSON object", code="invalid_response_body")
        prompt, completion = _usage(body, "") or (0, 0)
        return UpstreamResponse(body, request.get("model", ""), prompt, completion, 1, 0.0, self.name)

    def _start(self, request: dict, kind: str) -> None:
        _validate_request(request, kind)
        with self._lock:
            self.calls += 1

    def call(self, request: dict, *, kind: str = "chat", tenant: str = "") -> UpstreamResponse:
        """Return the handler's answer to ``request``."""
        self._start(request, kind)
        return self._respond(request, self.handler(dict(request), kind))

    async def acall(self, request: dict, *, kind: str = "chat", tenant: str = "") -> UpstreamResponse:
        """Return the handler's answer; an async handler is awaited."""
        self._start(request, kind)
        body = self.handler(dict(request), kind)
        if inspect.isawaitable(body):
            body = await body
        return self._respond(request, body)
