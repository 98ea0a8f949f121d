"""The sidecar's own routes: stats, Prometheus metrics, health, and the admin routes.

``GET /semcache/stats`` is open but shows per-tenant counters only to the admin; ``DELETE
/semcache/entries`` and ``POST /semcache/feedback`` need ``Authorization: Bearer <admin token>``
(the token is read at startup from the variable named by ``settings.admin_token_env``; with no
token configured they answer 403). Sidecar keys never grant these. The feedback body is read
like an API body (JSON only, ``max_body_bytes``, checked by ``guard.parse_body``). Stats and
metrics read the store, so they run in a thread.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import Any, Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import AuthenticationFailed, RequestError, StoreError
from ..stats import COUNTERS
from .errors import NotFound, error_body
from .upstreams import bearer

__all__ = ["StatsCollector", "registry", "routes"]


def _admin_refusal(request: Request) -> Response | None:
    """Return the 403/401 for a caller that is not the admin, None for the admin."""
    token = request.app.state.sidecar.admin_token
    if token is None:
        return JSONResponse(error_body("admin routes are disabled: no admin token is configured", "permission_error",
                                       code="admin_disabled"), status_code=403)
    given = bearer(request.headers) or ""
    if not hmac.compare_digest(given.encode(), token.encode()):
        return JSONResponse(error_body("this route needs 'Authorization: Bearer <admin token>'", "authentication_error",
                                       code="invalid_admin_token"), status_code=401)
    return None


def _is_admin(request: Request) -> bool:
    try:
        return request.app.state.sidecar.admin_token is not None and _admin_refusal(request) is None
    except AuthenticationFailed:  # a header no key can have: not the admin, and the stats are public
        return False


async def stats(request: Request) -> Response:
    snapshot = await asyncio.to_thread(request.app.state.sidecar.cache.stats)
    if not _is_admin(request):
        snapshot.pop("by_tenant", None)
    return JSONResponse(snapshot)


class StatsCollector:
    """Expose the engine's counters to Prometheus: ``semcache_<counter>_total``, errors by class, size gauges."""

    def __init__(self, cache: Any) -> None:
        self.cache = cache

    def collect(self):
        try:
            snapshot, up = self.cache.stats(), 1.0
        except (StoreError, OSError):  # the store (Redis) is out of reach: what this process knows, marked (#18)
            snapshot, up = self.cache.local_stats(), 0.0
        yield GaugeMetricFamily("semcache_store_up", "1 when the store answered this scrape, 0 when the counters are "
                                "this process's own (the store's as last read, plus its counts since)", value=up)
        total = snapshot["total"]
        for name in COUNTERS:
            family = CounterMetricFamily(f"semcache_{name}", f"semcache counter {name} (see semcache.stats)")
            family.add_metric([], float(total.get(name, 0)))
            yield family
        errors = CounterMetricFamily("semcache_errors", "errors by class", labels=["error"])
        for name, value in total.items():
            if name.startswith("errors."):
                errors.add_metric([name.removeprefix("errors.")], float(value))
        yield errors
        yield GaugeMetricFamily("semcache_hit_rate", "hits / requests since the store was created", value=float(total.get("hit_rate", 0.0)))
        yield GaugeMetricFamily("semcache_entries", "entries in the cache", value=float(snapshot["cache"]["entries"]))
        yield GaugeMetricFamily("semcache_bytes", "approximate bytes of the cached entries", value=float(snapshot["cache"]["bytes"]))


def registry(cache: Any) -> CollectorRegistry:
    """Return a Prometheus registry of this cache's counters (its own, not the process-global one)."""
    out = CollectorRegistry(auto_describe=False)
    out.register(StatsCollector(cache))
    return out


async def metrics(request: Request) -> Response:
    text = await asyncio.to_thread(generate_latest, request.app.state.metrics)
    return Response(text, media_type=CONTENT_TYPE_LATEST)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready when the store answers (the model is loaded before the app exists)."""
    cache = request.app.state.sidecar.cache
    try:
        await asyncio.to_thread(cache.store.head)
    except Exception as exc:  # any failure means "not ready"; the detail goes to the body
        return JSONResponse({"status": "unavailable", "reason": f"{type(exc).__name__}: {exc}"}, status_code=503)
    return JSONResponse({"status": "ready"})


async def delete_entries(request: Request) -> Response:
    """Delete entries: ``?id=1&id=2``, ``?partition=<hash>`` or ``?all=true``; answer ``{"deleted": n}``."""
    refusal = _admin_refusal(request)
    if refusal is not None:
        return refusal
    cache, query = request.app.state.sidecar.cache, request.query_params
    if query.get("all", "").lower() in ("1", "true", "yes"):
        def clear() -> int:
            count = len(cache)
            cache.clear()
            return count
        return JSONResponse({"deleted": await asyncio.to_thread(clear)})
    ids = []
    for raw in query.getlist("id"):
        if not re.fullmatch(r"\d+", raw):
            raise RequestError(f"id must be an entry id (an integer), got {raw!r}", field="id")
        ids.append(int(raw))
    partition = query.get("partition")
    if not ids and not partition:
        raise RequestError("say what to delete: ?id=<entry id>, ?partition=<partition> or ?all=true", field="id")
    deleted = await asyncio.to_thread(cache.invalidate, ids, partition=partition)
    return JSONResponse({"deleted": deleted})


async def feedback(request: Request) -> Response:
    """Mark a served answer right or wrong: ``{"id": <entry id>, "correct": bool, "query": <text>?}``.

    A wrong answer is never served again for ``query`` (the text that got it); without
    ``query`` the entry itself is judged wrong and deleted.
    """
    refusal = _admin_refusal(request)
    if refusal is not None:
        return refusal
    sidecar = request.app.state.sidecar
    body = await request.app.state.read_json(request, sidecar.settings.max_body_bytes)
    entry_id, correct, query = body.get("id"), body.get("correct"), body.get("query")
    if not isinstance(entry_id, int) or isinstance(entry_id, bool):
        raise RequestError("'id' must be the entry id (an integer; see the x-semcache-entry-id header)", field="id")
    if not isinstance(correct, bool):
        raise RequestError("'correct' must be true or false", field="correct")
    if query is not None and not isinstance(query, str):
        raise RequestError("'query' must be a string: the text whose answer is judged", field="query")
    cache = request.app.state.sidecar.cache

    def mark() -> bool:
        if cache.store.get(entry_id) is None:  # was {"marked": true} for a right answer (#18 item 8)
            raise NotFound(f"no cache entry has the id {entry_id} (deleted, expired and evicted, or never stored)",
                           param="id", code="entry_not_found")
        if correct or query is not None:
            return cache.feedback(entry_id, correct, query_text=query)
        return cache.invalidate([entry_id]) > 0

    return JSONResponse({"marked": await asyncio.to_thread(mark)})


def routes(guarded: Callable) -> list[Route]:
    """Return the routes, each wrapped by ``guarded`` (errors in OpenAI's shape)."""
    return [
        Route("/semcache/stats", guarded(stats), methods=["GET"]),
        Route("/metrics", guarded(metrics), methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/semcache/entries", guarded(delete_entries), methods=["DELETE"]),
        Route("/semcache/feedback", guarded(feedback), methods=["POST"]),
    ]
