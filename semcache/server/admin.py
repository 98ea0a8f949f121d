"""The sidecar's own routes: stats, Prometheus metrics, health, and the admin routes.

``GET /semcache/stats`` is open but shows per-tenant counters only to the admin; ``DELETE
/semcache/entries`` and ``POST /semcache/feedback`` need ``Authorization: Bearer <admin token>``
(or the review page's session cookie, ``session_cookie``)
(the token is read at startup from the variable named by ``settings.admin_token_env``; with no
token configured they answer 403). Sidecar keys never grant these. The feedback body is read
like an API body (JSON only, ``max_body_bytes``, checked by ``guard.parse_body``). Stats and
metrics read the store, so they run in a thread.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
import time
from typing import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import AuthenticationFailed, RequestError
from .errors import NotFound, error_body
from .metrics import CONTENT_TYPE_LATEST
from .upstreams import bearer

__all__ = ["routes"]


SESSION_COOKIE = "semcache_session"
SESSION_S = 12 * 3600  # how long the review page's sign-in lasts


def session_cookie(token: str, *, now: float | None = None) -> tuple[str, int]:
    """Return the review page's session cookie value for the admin ``token`` and its max age in seconds.

    ``<expiry>.<HMAC of it keyed by the token>``: never the token itself, useless once expired,
    and void as soon as the token changes.
    """
    expires = int((time.time() if now is None else now) + SESSION_S)
    return f"{expires}.{_sign(token, expires)}", SESSION_S


def _sign(token: str, expires: int) -> str:
    return hmac.new(token.encode(), f"semcache review session {expires}".encode(), hashlib.sha256).hexdigest()


def _session_valid(value: str, token: str) -> bool:
    expires, _, signature = value.partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    return hmac.compare_digest(signature.encode(), _sign(token, int(expires)).encode())


def token_matches(given: str, token: str) -> bool:
    """Whether ``given`` is the admin token (in constant time)."""
    return hmac.compare_digest(given.encode(), token.encode())


def _admin_refusal(request: Request) -> Response | None:
    """Return the 403/401 for a caller that is not the admin, None for the admin (bearer token, or the
    review page's session cookie)."""
    token = request.app.state.sidecar.admin_token
    if token is None:
        return JSONResponse(error_body("admin routes are disabled: no admin token is configured", "permission_error",
                                       code="admin_disabled"), status_code=403)
    session = request.cookies.get(SESSION_COOKIE)
    if session is not None and _session_valid(session, token):
        return None
    given = bearer(request.headers) or ""
    if not token_matches(given, token):
        return JSONResponse(error_body("this route needs 'Authorization: Bearer <admin token>'", "authentication_error",
                                       code="invalid_admin_token"), status_code=401)
    return None


def _is_admin(request: Request) -> bool:
    try:
        return request.app.state.sidecar.admin_token is not None and _admin_refusal(request) is None
    except AuthenticationFailed:  # a header no key can have: not the admin, and the stats are public
        return False


async def stats(request: Request) -> Response:
    sidecar = request.app.state.sidecar

    def collect() -> dict:
        snapshot = sidecar.cache.stats()
        if "budget" not in snapshot and sidecar.upstreams.budget is not None:  # the sidecar's budget is its pool's
            snapshot["budget"] = sidecar.upstreams.budget.state()
        return snapshot

    snapshot = await asyncio.to_thread(collect)
    if not _is_admin(request):
        snapshot.pop("by_tenant", None)
        snapshot.get("learning", {}).pop("by_tenant", None)
    return JSONResponse(snapshot)


async def metrics(request: Request) -> Response:
    """This process's Prometheus metrics (``metrics.Metrics``): answers while the store is down."""
    text = await asyncio.to_thread(request.app.state.metrics.scrape)
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

    marked = await asyncio.to_thread(mark)
    if marked:  # the review page shows the verdict, wherever it came from
        sidecar.decisions.judge(entry_id, query, correct)
    return JSONResponse({"marked": marked})


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
