"""The sidecar: an OpenAI-compatible HTTP proxy in front of a ``SemanticCache``.

``create_app(settings)`` returns a Starlette app. Every answer route reads the request as
JSON, keys it in the caller's partition (a hash of its API key unless ``shared_cache``), and
lets the engine answer: a hit locally with a fresh ``id``, a miss through the upstream client
(with the caller's own key when ``pass_through_key``). Concurrent identical misses make one
upstream call, and the answer is stored *inside* that one call, so a request arriving just
after it finds the entry instead of calling again. Streamed misses reach the client chunk by
chunk as they arrive and are stored once complete; streamed hits are replayed as SSE.

The event loop never waits on the model, the index or the disk: lookups and inserts run in
worker threads, where ``BatchingEmbedder`` folds concurrent lookups into one model call.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import httpx2
import openai
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..config import Settings
from ..embedding.batching import BatchingEmbedder
from ..engine import Result, SemanticCache
from ..errors import RequestError, UpstreamStatusError
from ..keys import tenant_from_api_key
from ..upstream.client import translate_error
from ..wiring import cache_from_settings, embedder_from_settings
from . import admin
from .errors import BodyTooLarge, error_body, error_response
from .streaming import DONE, assemble, encode, fresh, replay, strip_usage
from .upstreams import UpstreamPool, bearer

__all__ = ["Sidecar", "create_app"]

log = logging.getLogger("semcache")

# The field each route cannot do without, checked first so the 400 names it precisely.
_REQUIRED = {"chat": "messages", "completions": "prompt", "responses": "input", "embeddings": "input"}
# Worker threads for lookups and inserts: they mostly wait on the batching embedder, and more of
# them waiting means larger batches (see benchmarks/bench_server.py).
WORKER_THREADS = 64
_END = object()  # the stream ended


@dataclass(frozen=True)
class Options:
    """What the caller asked of the cache in its headers."""

    no_cache: bool = False  # Cache-Control: no-cache: do not look up
    no_store: bool = False  # Cache-Control: no-store: do not store the answer
    threshold: float | None = None  # x-semcache-threshold (only when settings.allow_threshold_header)


class _Failed:
    """The upstream stream broke: carries its exception to the response generator."""

    def __init__(self, error: BaseException) -> None:
        self.error = error


class Sidecar:
    """The state every route shares: settings, the cache, the upstream clients, the admin token."""

    def __init__(self, settings: Settings, cache: SemanticCache, upstreams: UpstreamPool, *, admin_token: str | None,
                 owns_cache: bool) -> None:
        self.settings = settings
        self.cache = cache
        self.upstreams = upstreams
        self.admin_token = admin_token or None
        self.owns_cache = owns_cache
        self._tasks: set[asyncio.Task] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def prepare(self) -> None:
        """Give the server's loop enough worker threads (once per loop; asyncio.run shuts them down)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            self._loop = loop
            loop.set_default_executor(ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="semcache"))

    def __repr__(self) -> str:
        return f"Sidecar({self.cache!r}, {self.upstreams!r}, admin={'on' if self.admin_token else 'off'})"

    async def aclose(self) -> None:
        """Close the upstream connections, then flush and close the cache if this sidecar built it."""
        await self.upstreams.aclose()
        if self.owns_cache:
            await asyncio.to_thread(self.cache.close)

    # -- request parsing -------------------------------------------------------------------
    def tenant(self, caller_key: str | None) -> str:
        """Return the caller's tenant: a hash of its key (never the key), or one tenant with ``shared_cache``."""
        if self.settings.shared_cache or not caller_key:
            return self.settings.tenant
        return tenant_from_api_key(caller_key)

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
                raise RequestError(f"header x-semcache-threshold must be a cosine in [-1, 1], got {raw!r}", field="x-semcache-threshold")
        return Options("no-cache" in directives, "no-store" in directives, threshold)

    # -- answering -------------------------------------------------------------------------
    async def complete(self, body: dict, kind: str, caller: str | None, options: Options) -> Response:
        """Answer a non-streaming request from the cache, or upstream (stored inside the single flight)."""
        tenant = self.tenant(caller)

        async def call(_: Any) -> dict:
            return (await self.upstreams.for_caller(caller).acall(body, kind=kind, tenant=tenant)).body

        result = await self.cache.acomplete(body, call, tenant=tenant, kind=kind, no_cache=options.no_cache,
                                            no_store=options.no_store, threshold=options.threshold)
        return JSONResponse(self._present(kind, result), headers=_headers(result))

    async def stream(self, body: dict, kind: str, caller: str | None, options: Options) -> Response:
        """Answer a streaming request: pass a miss through as it arrives, replay anything else as SSE."""
        tenant = self.tenant(caller)
        queue: asyncio.Queue = asyncio.Queue()
        client_usage = _include_usage(body)
        upstream_body = body if kind == "responses" else {
            # Always ask for usage upstream: the stored entry needs it to count tokens saved.
            **body, "stream_options": {**(body.get("stream_options") or {}), "include_usage": True}}

        async def call(_: Any) -> dict:
            chunks = []
            try:
                upstream = self.upstreams.for_caller(caller)
                async for chunk in upstream.astream(upstream_body, kind=kind, tenant=tenant):
                    chunks.append(chunk)
                    queue.put_nowait(chunk)
                answer = assemble(kind, chunks)
                if answer is None:
                    raise UpstreamStatusError("the upstream stream ended before the answer was complete", code="incomplete_stream")
            except BaseException as exc:
                queue.put_nowait(_Failed(exc))
                raise
            queue.put_nowait(_END)
            return answer  # acomplete stores it (inside the single flight) unless no-store

        # A task of its own: a client that hangs up does not stop the answer from being stored.
        task = asyncio.create_task(self.cache.acomplete(body, call, tenant=tenant, kind=kind, no_cache=options.no_cache,
                                                        no_store=options.no_store, threshold=options.threshold))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        getter = asyncio.ensure_future(queue.get())
        await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
        first = getter.result() if getter.done() else None
        if isinstance(first, dict):
            status = "bypass" if options.no_cache else "miss"
            events = _pass_through(kind, first, queue, client_usage, stored=task)
            return StreamingResponse(events, media_type="text/event-stream", headers={"x-semcache": status, "cache-control": "no-cache"})
        getter.cancel()
        result = await task  # a hit, a stale answer, a shared flight, or the error
        events = b"".join(replay(kind, self._present(kind, result), include_usage=client_usage))
        return Response(events, media_type="text/event-stream", headers={**_headers(result), "cache-control": "no-cache"})

    def _finished(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("semcache streamed request ended with %s", type(task.exception()).__name__)

    def _present(self, kind: str, result: Result) -> Any:
        if result.status in ("hit", "stale"):
            return fresh(kind, result.response, uuid.uuid4().hex, int(time.time()))
        return result.response

    async def models(self, request: Request) -> Response:
        """Pass ``GET /v1/models[/{model}]`` through to the upstream, with the caller's key or the sidecar's."""
        key = self.upstreams.key_for(bearer(request.headers))
        client = openai.AsyncOpenAI(api_key=key, base_url=self.settings.upstream_base_url, max_retries=0,
                                    timeout=self.settings.upstream_timeout, http_client=self.upstreams.http)
        try:
            answer = await client.get(request.url.path.removeprefix("/v1"), cast_to=httpx2.Response)
        except openai.OpenAIError as exc:
            raise translate_error(exc)[0] from exc
        return Response(answer.content, answer.status_code, media_type=answer.headers.get("content-type", "application/json"))


def _include_usage(body: Mapping[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, Mapping) and bool(options.get("include_usage"))


async def _pass_through(kind: str, first: dict, queue: asyncio.Queue, client_usage: bool, stored: asyncio.Task):
    """Relay a streamed miss as it arrives; end it only once the answer is stored, so the same
    request sent right after the stream ends is a hit (read your own writes)."""
    item: Any = first
    while item is not _END:
        if isinstance(item, _Failed):
            # Headers are gone: tell the client in-band, in the shape the SDKs raise as APIError.
            failure = error_response(item.error)
            yield encode("chat", json.loads(failure.body))
            return
        chunk = item if client_usage or kind == "responses" else strip_usage(item)
        if chunk is not None:
            yield encode(kind, chunk)
        item = await queue.get()
    try:
        await asyncio.shield(stored)  # shielded: a client hanging up now does not cancel the store
    except Exception:  # a failed store is logged by the task's callback; the answer itself was complete
        pass
    if kind != "responses":
        yield DONE


def _headers(result: Result) -> dict[str, str]:
    headers = {"x-semcache": result.status}
    hit = result.hit
    if hit is not None:
        headers["x-semcache-match"] = hit.kind
        if hit.decision is not None:
            headers["x-semcache-similarity"] = f"{hit.similarity:.4f}"
    if result.entry_id is not None:
        headers["x-semcache-entry-id"] = str(result.entry_id)
    return headers


async def read_json(request: Request, limit: int) -> dict:
    """Return the request's JSON object; raise ``BodyTooLarge`` past ``limit`` bytes, ``RequestError`` if not JSON."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    try:
        body = json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError) as exc:
        raise RequestError(f"the request body is not valid JSON: {exc}", field="body") from exc
    if not isinstance(body, dict):
        raise RequestError(f"the request body must be a JSON object, got {type(body).__name__}", field="body")
    return body


def _check(body: dict, kind: str) -> None:
    if not isinstance(body.get("model"), str) or not body["model"]:
        raise RequestError("missing required parameter 'model' (a string)", field="model")
    if body.get(_REQUIRED[kind]) is None:
        raise RequestError(f"missing required parameter {_REQUIRED[kind]!r}", field=_REQUIRED[kind])


def guarded(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Wrap a route so that every error leaves in OpenAI's error shape."""

    async def route(request: Request) -> Response:
        try:
            return await handler(request)
        except Exception as exc:
            settings = request.app.state.sidecar.settings
            return error_response(exc, rpm=settings.rpm, tpm=settings.tpm)

    return route


def _answer(kind: str) -> Callable[[Request], Awaitable[Response]]:
    @guarded
    async def route(request: Request) -> Response:
        sidecar: Sidecar = request.app.state.sidecar
        sidecar.prepare()
        body = await read_json(request, sidecar.settings.max_body_bytes)
        _check(body, kind)
        caller, options = bearer(request.headers), sidecar.options(request.headers)
        if body.get("stream") and kind != "embeddings":
            return await sidecar.stream(body, kind, caller, options)
        return await sidecar.complete(body, kind, caller, options)

    return route


@guarded
async def _models(request: Request) -> Response:
    return await request.app.state.sidecar.models(request)


async def _not_found(request: Request, exc: Exception) -> Response:
    status = getattr(exc, "status_code", 404)
    return JSONResponse(error_body(f"Invalid URL ({request.method} {request.url.path})"), status_code=status)


def create_app(settings: Settings, *, cache: SemanticCache | None = None, upstream: Any = None,
               environ: Mapping[str, str] | None = None) -> Starlette:
    """Return the sidecar as a Starlette app; its state is ``app.state.sidecar``.

    ``cache``: the engine (default: built from ``settings`` with the packaged model behind a
    ``BatchingEmbedder``; then the app closes it at shutdown). ``upstream``: one client that
    answers every caller (default: an ``OpenAIUpstream`` per caller key, see ``UpstreamPool``).
    ``environ`` (default ``os.environ``) is read once, here, for the admin token and the
    sidecar's own upstream key. Raises ``ConfigError`` when the model cannot be loaded.
    """
    environ = os.environ if environ is None else environ
    owns_cache = cache is None
    if cache is None:
        embedder = BatchingEmbedder(embedder_from_settings(settings))
        cache = cache_from_settings(settings, embedder=embedder)
    upstreams = UpstreamPool(settings, own_key=environ.get(settings.upstream_api_key_env), fixed=upstream,
                             stats=cache.stats_recorder, pricing=cache.pricing, ledger=cache.store)
    sidecar = Sidecar(settings, cache, upstreams, admin_token=environ.get(settings.admin_token_env), owns_cache=owns_cache)

    @asynccontextmanager
    async def lifespan(app: Starlette):
        sidecar.prepare()
        yield
        await sidecar.aclose()

    routes = [
        Route("/v1/chat/completions", _answer("chat"), methods=["POST"]),
        Route("/v1/completions", _answer("completions"), methods=["POST"]),
        Route("/v1/responses", _answer("responses"), methods=["POST"]),
        Route("/v1/embeddings", _answer("embeddings"), methods=["POST"]),
        Route("/v1/models", _models, methods=["GET"]),
        Route("/v1/models/{model:path}", _models, methods=["GET"]),
        *admin.routes(guarded),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={404: _not_found, 405: _not_found})
    app.state.sidecar = sidecar
    app.state.metrics = admin.registry(cache)
    return app
