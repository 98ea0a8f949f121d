"""The sidecar: an OpenAI-compatible HTTP proxy in front of a ``SemanticCache``.

``create_app(settings)`` returns a Starlette app. Every answer route checks who is calling
(a sidecar key when client keys are configured, see ``auth``), reads the body as JSON that can
be forwarded (``guard``), keys it in the caller's partition (its tenant: the sidecar key's
tenant, else a hash of its API key unless ``shared_cache``), and lets the engine answer: a hit
locally with a fresh ``id``, a miss through the upstream client (with the caller's own key when
``pass_through_key`` and no client keys). Concurrent identical misses make one upstream call,
and the answer is stored *inside* that one call, so a request arriving just after it finds the
entry instead of calling again. Streamed misses reach the client chunk by chunk as they arrive
and are stored once complete; streamed hits are replayed as SSE.

The server's event loop only speaks HTTP: the engine (keying the request, the lookup, the
upstream call and its pacing, the store) runs on its own loop in a thread (``EngineLoop``),
and blocking work there runs in worker threads, where ``BatchingEmbedder`` folds concurrent
lookups into one model call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import httpx2
import openai
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..config import Settings
from ..embedding.batching import BatchingEmbedder
from ..engine import Result, SemanticCache
from ..errors import RequestError, UpstreamStatusError
from ..keys import tenant_from_api_key
from ..upstream.anthropic import forwarding
from ..upstream.client import translate_error
from ..upstream.tokens import encoding_for, usage_of
from ..wiring import cache_from_settings, embedder_from_settings, limiter_from_settings
from . import admin, messages, review
from .alerts import Alerter
from .auth import ClientKeys, TenantQuota, check_exposure, load_client_keys
from .decisions import Decisions
from .engine_loop import EngineLoop
from .errors import BodyTooLarge, error_body, error_response
from .guard import check_request, model_id, parse_body
from .hosts import HostOriginGuard, cors, require_json
from .metrics import ROUTE_OF_KIND, Metrics, result_label, tenant_label
from .paths import TrailingSlash
from .streaming import DONE, assemble, encode, fresh, replay, strip_usage
from .cache_control import max_age, partition_extras, with_partition
from .count_tokens import count_tokens
from .upstreams import UpstreamPool, bearer, route_key
from .usage import served_usage

__all__ = ["Sidecar", "create_app"]

log = logging.getLogger("semcache")

# Worker threads for lookups and inserts: they mostly wait on the batching embedder, and more of
# them waiting means larger batches (see benchmarks/bench_server.py).
WORKER_THREADS = 64
# Bodies up to this size are parsed on the server's loop (under a millisecond); larger ones in a thread.
_INLINE_PARSE_BYTES = 64 * 1024
# How long shutdown waits for answers still being stored (streamed misses store in the background).
DRAIN_TIMEOUT_S = 10.0
_END = object()  # the stream ended
_OWN_STREAM_USAGE = ("responses", "messages")  # APIs whose streams carry usage unasked (no stream_options)


@dataclass(frozen=True)
class Options:
    """What the caller asked of the cache in its headers."""

    no_cache: bool = False  # Cache-Control: no-cache: do not look up
    no_store: bool = False  # Cache-Control: no-store: do not store the answer
    threshold: float | None = None  # x-semcache-threshold (only when settings.allow_threshold_header)
    max_age: float | None = None  # Cache-Control: max-age=N: this answer's TTL, and the oldest one accepted
    partition: Mapping[str, str] | None = None  # x-semcache-namespace / x-semcache-bucket (cache_control)

    def keyed(self, body: dict) -> dict:
        """The body as the cache keys it (namespace and bucket join its partition); never sent upstream."""
        return with_partition(body, self.partition or {})

    @property
    def ttl(self) -> Any:
        return ... if self.max_age is None else self.max_age

    @property
    def anthropic_beta(self) -> str | None:
        return (self.partition or {}).get("anthropic_beta")


@dataclass(frozen=True)
class Caller:
    """Who is asking: its tenant, the key its misses go upstream with (None: the sidecar's own), its own limits."""

    tenant: str
    upstream_key: str | None = None
    quota: TenantQuota | None = None


class _Failed:
    """The upstream stream broke: carries its exception to the response generator."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Answer(JSONResponse):
    """A JSON response that any answer can be rendered into, or a typed error when it cannot."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:  # a lone surrogate in an upstream answer: escaped, it is still valid JSON
            return json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode()
        except ValueError as exc:  # NaN or Infinity in an upstream answer: not JSON, not forwardable
            raise UpstreamStatusError(f"the upstream answer cannot be sent on as JSON: {exc}", code="invalid_response_body") from exc


class SnapshotTimer:
    """Save the cache's index snapshot every ``interval`` seconds in a daemon thread (0: never; the
    cache saves one at close), so a replica that restarts, or a new one, replays little of the log."""

    def __init__(self, cache: SemanticCache, interval: float) -> None:
        self.cache, self.interval = cache, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self.interval > 0 and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="semcache-snapshot", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.cache.save_snapshot()  # best effort: it logs its own failures

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


class Sidecar:
    """The state every route shares: settings, the cache, the upstream clients, the keys and tokens."""

    def __init__(self, settings: Settings, cache: SemanticCache, upstreams: UpstreamPool, *, admin_token: str | None,
                 owns_cache: bool, client_keys: ClientKeys | None = None, metrics: Metrics | None = None) -> None:
        self.settings = settings
        self.cache = cache
        self.upstreams = upstreams
        self.admin_token = admin_token or None
        self.owns_cache = owns_cache
        self.client_keys = client_keys
        self.quotas: dict[str, TenantQuota] = {}
        for tenant, limits in (client_keys.tenants.items() if client_keys is not None else ()):
            if limits:
                shared = limiter_from_settings(settings, "tenant-" + tenant_from_api_key(tenant), limits.get("rpm"),
                                               limits.get("tpm"), store=cache.store) if limits.get("rpm") or limits.get("tpm") else None
                self.quotas[tenant] = TenantQuota(tenant, limits, alert_fraction=settings.budget_alert_fraction,
                                                  pricing=cache.pricing, stats=cache.stats_recorder, ledger=cache.store,
                                                  limiter=shared)
        self.engine = EngineLoop(workers=WORKER_THREADS)
        self.alerts = Alerter.from_settings(settings, ledger=cache.store)
        cache.stats_recorder.listen(self.alerts.listen)
        self.metrics = (metrics or Metrics(settings)).watch(cache, budgets=self.budgets, alerts=self.alerts.counts)
        self.decisions = Decisions()  # for the review page (/semcache/ui)
        self.history = review.History(lambda: cache.stats()["total"])
        self.snapshots = SnapshotTimer(cache, settings.snapshot_interval)
        self.loop: asyncio.AbstractEventLoop | None = None  # the server's loop (HTTP)

    def budgets(self) -> list[tuple[str, Any]]:
        """The budget guards to report: ("all", the sidecar's own) and each tenant's, by its name."""
        out = [("all", self.upstreams.budget)] if self.upstreams.budget is not None else []
        return out + [(tenant, quota.budget) for tenant, quota in sorted(self.quotas.items()) if quota.budget is not None]

    def answered(self, kind: str, caller: Caller, body: Mapping[str, Any], result: Result | str, started: float) -> None:
        """Count an answer (metrics) and keep its decision for review when it came close (``decisions``)."""
        route = ROUTE_OF_KIND[kind]
        label = result if isinstance(result, str) else result_label(result)
        self.metrics.answered(route, caller.tenant, body, label, time.perf_counter() - started)
        if not isinstance(result, str):
            self.decisions.record(result, route=route, tenant=tenant_label(caller.tenant), model=self.metrics.model_label(body))

    def prepare(self) -> None:
        """Note the server's loop and start the engine's (idempotent)."""
        self.loop = asyncio.get_running_loop()
        self.engine.start()

    def __repr__(self) -> str:
        keys = f"{len(self.client_keys)} client keys" if self.client_keys is not None else "no client keys"
        return f"Sidecar({self.cache!r}, {self.upstreams!r}, {keys}, admin={'on' if self.admin_token else 'off'})"

    async def aclose(self) -> None:
        """Wait (bounded) for answers still being stored, close the upstream connections, then the cache if it is ours."""
        remaining = await self.engine.drain(DRAIN_TIMEOUT_S)
        if remaining:
            log.warning("semcache sidecar: %d requests still running after %.0fs at shutdown; their answers are not stored",
                        remaining, DRAIN_TIMEOUT_S)
        await self.engine.run(self.upstreams.aclose())
        await asyncio.to_thread(self.snapshots.stop)
        await asyncio.to_thread(self.alerts.close)
        await asyncio.to_thread(self.history.stop)
        if self.owns_cache:  # closing saves the index snapshot, when there is one
            await asyncio.to_thread(self.cache.close)
        await self.engine.stop()

    # -- request parsing -------------------------------------------------------------------
    def tenant(self, caller_key: str | None) -> str:
        """Return the tenant of a caller without client keys: a hash of its key (never the key), or ``settings.tenant``."""
        if self.settings.shared_cache or not caller_key:
            return self.settings.tenant
        return tenant_from_api_key(caller_key)

    def caller(self, headers: Mapping[str, str]) -> Caller:
        """Return who is calling; raise ``AuthenticationFailed`` (401) for a key that cannot be used."""
        presented = bearer(headers)
        if self.client_keys is None:
            return Caller(self.tenant(presented), presented)
        key = self.client_keys.authenticate(presented)
        tenant = self.settings.tenant if self.settings.shared_cache else key.tenant
        return Caller(tenant, None, self.quotas.get(key.tenant))

    def options(self, headers: Mapping[str, str]) -> Options:
        directives = {d.strip().lower() for d in headers.get("cache-control", "").split(",")}
        threshold = None
        raw = headers.get("x-semcache-threshold")
        if raw is not None and self.settings.allow_threshold_header:
            try:
                threshold = float(raw)
            except ValueError:
                threshold = float("nan")
            if not -1 <= threshold <= 1:
                raise RequestError(f"header x-semcache-threshold must be a cosine in [-1, 1], got {raw[:50]!r}", field="x-semcache-threshold")
        age = max_age(directives)
        skip = age == 0  # max-age=0: accept no stored answer, and store none that would expire at once
        return Options("no-cache" in directives or skip, "no-store" in directives or skip, threshold,
                       None if skip else age, partition_extras(headers))

    # -- answering (the coroutines named _on_engine run on the engine loop) ----------------
    async def _upstream_call(self, body: dict, kind: str, caller: Caller) -> Any:
        upstream = self.upstreams.for_request(caller.upstream_key, body.get("model"), kind)
        quota = caller.quota
        ticket = await quota.admit(body, kind) if quota is not None else None
        started = time.perf_counter()
        try:
            response = await upstream.acall(body, kind=kind, tenant=caller.tenant)
        except BaseException:
            self.metrics.upstream(body, False, time.perf_counter() - started)
            if quota is not None:
                quota.refund(ticket)
            raise
        self.metrics.upstream(body, True, time.perf_counter() - started)
        if quota is not None:
            await quota.settle(ticket, response.model, response.prompt_tokens, response.completion_tokens)
        return response.body

    async def _complete_on_engine(self, body: dict, kind: str, caller: Caller, options: Options) -> Result:
        async def call(_: Any) -> dict:
            return await self._upstream_call(body, kind, caller)

        with forwarding(options.anthropic_beta):
            return await self.cache.acomplete(options.keyed(body), call, tenant=caller.tenant, kind=kind, no_cache=options.no_cache,
                                              no_store=options.no_store, threshold=options.threshold, ttl=options.ttl,
                                              max_age=options.max_age)

    async def complete(self, body: dict, kind: str, caller: Caller, options: Options) -> Response:
        """Answer a non-streaming request from the cache, or upstream (stored inside the single flight)."""
        started = time.perf_counter()
        result = await self.engine.run(self._complete_on_engine(body, kind, caller, options))
        self.answered(kind, caller, body, result, started)
        return Answer(self._present(kind, result), headers=_headers(result))

    async def _stream_on_engine(self, body: dict, kind: str, caller: Caller, options: Options,
                                push: Callable[[Any], None]) -> Result:
        upstream_body = body if kind in _OWN_STREAM_USAGE else {
            # Always ask for usage upstream: the stored entry needs it to count tokens saved.
            **body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}

        async def call(_: Any) -> dict:
            chunks: list[dict] = []
            quota, ticket, started = caller.quota, None, None
            try:
                upstream = self.upstreams.for_request(caller.upstream_key, body.get("model"), kind)
                ticket = await quota.admit(body, kind) if quota is not None else None
                started = time.perf_counter()
                async for chunk in upstream.astream(upstream_body, kind=kind, tenant=caller.tenant):
                    chunks.append(chunk)
                    push(chunk)
                answer = assemble(kind, chunks)
                if answer is None:
                    raise UpstreamStatusError("the upstream stream ended before the answer was complete", code="incomplete_stream")
                self.metrics.upstream(body, True, time.perf_counter() - started)
            except BaseException as exc:
                if started is not None:
                    self.metrics.upstream(body, False, time.perf_counter() - started)
                if quota is not None:
                    quota.refund(ticket)
                push(_Failed(exc))
                raise
            if quota is not None:
                await quota.settle(ticket, body["model"], *usage_of(answer))
            push(_END)
            return answer  # acomplete stores it (inside the single flight) unless no-store

        with forwarding(options.anthropic_beta):
            return await self.cache.acomplete(options.keyed(body), call, tenant=caller.tenant, kind=kind, no_cache=options.no_cache,
                                              no_store=options.no_store, threshold=options.threshold, ttl=options.ttl,
                                              max_age=options.max_age)

    async def stream(self, body: dict, kind: str, caller: Caller, options: Options) -> Response:
        """Answer a streaming request: pass a miss through as it arrives, replay anything else as SSE."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        client_usage = _include_usage(body)
        started = time.perf_counter()

        def push(item: Any) -> None:  # called on the engine loop
            loop.call_soon_threadsafe(queue.put_nowait, item)

        # A task of its own, on the engine loop: a client that hangs up does not stop the answer
        # from being stored, and shutdown waits for it (``aclose``).
        task = asyncio.wrap_future(self.engine.submit(self._stream_on_engine(body, kind, caller, options, push)))
        task.add_done_callback(_finished)
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        first = getter.result() if getter.done() else None
        if isinstance(first, dict):
            status = "bypass" if options.no_cache else "miss"
            self.answered(kind, caller, body, status, started)
            events = _pass_through(kind, first, queue, client_usage, stored=task)
            return StreamingResponse(events, media_type="text/event-stream", headers={"x-semcache": status, "cache-control": "no-cache"})
        getter.cancel()
        result = await task  # a hit, a stale answer, a shared flight, or the error
        self.answered(kind, caller, body, result, started)
        events = b"".join(replay(kind, self._present(kind, result), include_usage=client_usage))
        return Response(events, media_type="text/event-stream", headers={**_headers(result), "cache-control": "no-cache"})

    def _present(self, kind: str, result: Result) -> Any:
        if result.status in ("hit", "stale", "follower"):  # not bought by this request: its usage says so (usage.py)
            answer = fresh(kind, result.response, uuid.uuid4().hex, int(time.time()))
            return served_usage(answer, self.settings.hit_usage)
        return result.response

    async def _models_on_engine(self, path: str, caller: Caller) -> Response:
        key = self.upstreams.key_for(caller.upstream_key)
        client = openai.AsyncOpenAI(api_key=key, base_url=self.settings.upstream_base_url, max_retries=0,
                                    timeout=self.settings.upstream_timeout, http_client=self.upstreams.http)
        try:
            answer = await client.get(path, cast_to=httpx2.Response)
        except openai.OpenAIError as exc:
            raise translate_error(exc)[0] from exc
        return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type", "application/json"))

    async def models(self, request: Request) -> Response:
        """Pass ``GET /v1/models[/{id}]`` through to the upstream, with the caller's key or the sidecar's.

        Only a well-formed id reaches the upstream (``guard.model_id``): a path such as
        ``/v1/models/%2e%2e/files`` would otherwise become ``GET /v1/files`` with the sidecar's key.
        """
        caller = self.caller(request.headers)
        raw_path = request.scope.get("raw_path") or request.url.path.encode()
        path = "/models" if raw_path in (b"/v1/models",) else "/models/" + model_id(raw_path)
        return await self.engine.run(self._models_on_engine(path, caller))


def _load_tokenizers() -> None:
    for model in ("gpt-4o-mini", "gpt-3.5-turbo"):  # o200k_base and cl100k_base
        encoding_for(model)


def _finished(task: asyncio.Future) -> None:
    if not task.cancelled() and task.exception() is not None:  # retrieved: never "exception was never retrieved"
        log.debug("semcache streamed request ended with %s", type(task.exception()).__name__)


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and bool(options.get("include_usage"))


async def _pass_through(kind: str, first: dict, queue: asyncio.Queue, client_usage: bool, stored: asyncio.Future):
    """Relay a streamed miss as it arrives; end it only once the answer is stored, so the same
    request sent right after the stream ends is a hit (read your own writes)."""
    item: Any = first
    while item is not _END:
        if isinstance(item, _Failed):
            # Headers are gone: tell the client in-band, in the shape the SDKs raise as APIError.
            if kind == "messages":
                yield messages.error_event(item.error)
                return
            failure = error_response(item.error)
            yield encode("chat", json.loads(failure.body))
            return
        chunk = item if client_usage or kind in _OWN_STREAM_USAGE else strip_usage(item)
        if chunk is not None:
            yield encode(kind, chunk)
        item = await queue.get()
    try:
        await asyncio.shield(stored)  # shielded: a client hanging up now does not cancel the store
    except Exception:  # a failed store is logged by the engine; the answer itself was complete
        pass
    if kind not in _OWN_STREAM_USAGE:
        yield DONE


def _headers(result: Result) -> dict[str, str]:
    headers = {"x-semcache": result.status}
    hit = result.hit
    if hit is not None:
        headers["x-semcache-match"] = hit.kind
        if hit.decision is not None:  # the cosine, the policy's score that decided, and the bar it cleared
            headers["x-semcache-similarity"] = f"{hit.similarity:.4f}"
            headers["x-semcache-score"] = f"{hit.decision.score:.6f}"
            headers["x-semcache-threshold"] = f"{hit.decision.threshold:.6g}"
    if result.entry_id is not None:
        headers["x-semcache-entry-id"] = str(result.entry_id)
    return headers


async def read_body(request: Request, limit: int) -> bytes:
    """Return the raw body; raise ``BodyTooLarge`` past ``limit`` bytes (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json(request: Request, limit: int) -> dict:
    """Return the request's JSON object, checked by ``guard.parse_body``.

    Raises ``UnsupportedMediaType`` unless declared JSON, ``BodyTooLarge`` past ``limit`` bytes,
    ``RequestError`` naming the field that cannot be forwarded. A large body is parsed in a
    worker thread: the server's loop keeps answering meanwhile.
    """
    require_json(request.headers)
    raw = await read_body(request, limit)
    if len(raw) <= _INLINE_PARSE_BYTES:
        return parse_body(raw)
    return await asyncio.to_thread(parse_body, raw)


def guarded(handler: Callable[[Request], Awaitable[Response]],
            render: Callable[..., Response] = error_response) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a route so that every error leaves in OpenAI's error shape (or ``render``'s: Anthropic's)."""

    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except ClientDisconnect:  # nobody is left to read an answer
            return Response(status_code=400)
        except Exception as exc:
            settings = request.app.state.sidecar.settings
            quota = getattr(request.state, "quota", None)
            if quota is not None:  # a tenant over its own limit is told its own limits
                return render(exc, rpm=quota.rpm, tpm=quota.tpm)
            return render(exc, rpm=settings.rpm, tpm=settings.tpm)

    return route


def _answer(kind: str) -> Callable[[Request], Awaitable[Response]]:
    async def route(request: Request) -> Response:
        sidecar: Sidecar = request.app.state.sidecar
        sidecar.prepare()
        started, caller, body = time.perf_counter(), None, None
        try:
            caller = sidecar.caller(request.headers)  # 401 before the body is read
            request.state.quota = caller.quota
            body = await read_json(request, sidecar.settings.max_body_bytes)
            check_request(body, kind)
            options = sidecar.options(request.headers)
            if body.get("stream") and kind != "embeddings":
                return await sidecar.stream(body, kind, caller, options)
            return await sidecar.complete(body, kind, caller, options)
        except Exception:
            sidecar.metrics.answered(ROUTE_OF_KIND[kind], caller.tenant if caller is not None else None, body, "error",
                                     time.perf_counter() - started)
            raise

    return guarded(route, messages.error_response if kind == "messages" else error_response)


@guarded
async def _models(request: Request) -> Response:
    sidecar: Sidecar = request.app.state.sidecar
    sidecar.prepare()
    return await sidecar.models(request)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    return JSONResponse(error_body(f"Invalid URL ({request.method} {request.url.path[:200]})"), status_code=status)


def create_app(settings: Settings, *, cache: SemanticCache | None = None, upstream: Any = None,
               environ: Mapping[str, str] | None = None, embedder: Any = None) -> Starlette:
    """Return the sidecar as a Starlette app; its state is ``app.state.sidecar``.

    ``cache``: the engine (default: built from ``settings`` with the packaged model behind a
    ``BatchingEmbedder``; then the app closes it at shutdown). ``upstream``: one client that
    answers every caller (default: an ``OpenAIUpstream`` per caller key, see ``UpstreamPool``).
    ``environ`` (default ``os.environ``) is read once, here, for the admin token, the sidecar's
    own upstream key, the client keys and the Redis password (``store_password_env``).
    ``embedder``: the model the cache is built with (default: the settings'; ignored with ``cache``).
    Raises ``ConfigError`` when the model cannot be loaded, the client keys cannot be read, the
    setup would serve the sidecar's own key to anyone (``auth.check_exposure``), or the Redis store
    was built with another model (a replica must embed as the others do); ``StoreError`` when the
    Redis store cannot be reached at start.
    """
    environ = os.environ if environ is None else environ
    own_key = environ.get(settings.upstream_api_key_env) or None
    client_keys = load_client_keys(settings, environ)
    # The routes' keys are the sidecar's own too: the same exposure rules hold for them. (Reading them
    # checks the routes table too, before a model is loaded.)
    routes_key = route_key(settings, environ)
    check_exposure(settings, own_key=own_key or routes_key, client_keys=client_keys, fixed_upstream=upstream is not None)
    owns_cache = cache is None
    metrics = Metrics(settings)
    if cache is None:
        # Concurrent lookups share embedding calls.
        embedder = BatchingEmbedder(metrics.timed(embedder if embedder is not None else embedder_from_settings(settings)))
        cache = cache_from_settings(settings, embedder=embedder, environ=environ)
    upstreams = UpstreamPool(settings, own_key=own_key, fixed=upstream, stats=cache.stats_recorder, pricing=cache.pricing,
                             ledger=cache.store, store=cache.store, environ=environ)
    sidecar = Sidecar(settings, cache, upstreams, admin_token=environ.get(settings.admin_token_env), owns_cache=owns_cache,
                      client_keys=client_keys, metrics=metrics)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        sidecar.prepare()
        # Load both tokenizers now, not in the first request: building one holds the GIL for ~0.5 s.
        await sidecar.engine.run(asyncio.to_thread(_load_tokenizers))
        sidecar.snapshots.start()
        sidecar.history.start()
        yield
        await sidecar.aclose()

    routes = [
        Route("/v1/chat/completions", _answer("chat"), methods=["POST"]),
        Route("/v1/completions", _answer("completions"), methods=["POST"]),
        Route("/v1/responses", _answer("responses"), methods=["POST"]),
        Route("/v1/embeddings", _answer("embeddings"), methods=["POST"]),
        Route("/v1/messages", _answer("messages"), methods=["POST"]),
        Route("/v1/messages/count_tokens", guarded(count_tokens, messages.error_response), methods=["POST"]),
        Route("/v1/models", _models, methods=["GET"]),
        Route("/v1/models/{model:path}", _models, methods=["GET"]),
        *admin.routes(guarded),
        *review.routes(),
    ]
    middleware = [Middleware(metrics.middleware),
                  Middleware(HostOriginGuard, hosts=(settings.host, *settings.allowed_hosts), origins=settings.allowed_origins),
                  *cors(settings)]
    middleware.insert(0, Middleware(TrailingSlash))  # outermost: /v1/chat/completions/ is routed (and checked) as without it
    app = Starlette(routes=routes, middleware=middleware, lifespan=lifespan, exception_handlers={404: _not_found, 405: _not_found})
    app.state.sidecar = sidecar
    app.state.read_json = read_json
    app.state.metrics = sidecar.metrics
    return app
