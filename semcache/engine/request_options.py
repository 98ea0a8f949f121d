"""What one request asks of the cache beyond its body: the TTL of the answer it stores, and the
oldest answer it accepts (HTTP's ``Cache-Control: max-age=N`` in a request means both here).

``complete``/``acomplete`` set them for the duration of one request, in context variables, so that
they reach the lookup and the store step of the miss path (a worker thread: ``asyncio.to_thread``
copies the context) without passing through every layer. The request that fetches an answer
decides its TTL; requests that join its flight share its answer.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Any, Iterator

from .outcome import Hit, Looked

__all__ = ["fresh_enough", "request_options", "store_ttl", "too_old"]

_TTL: ContextVar[Any] = ContextVar("semcache_request_ttl", default=...)  # ...: the cache's own TTL
_MAX_AGE: ContextVar[float | None] = ContextVar("semcache_request_max_age", default=None)


@contextlib.contextmanager
def request_options(ttl: Any = ..., max_age: float | None = None) -> Iterator[None]:
    """Within the block, store answers with ``ttl`` seconds (``...``: the cache's; None or 0: never
    expire) and serve no entry older than ``max_age`` seconds (None: any fresh one)."""
    ttl_token, age_token = _TTL.set(ttl), _MAX_AGE.set(max_age)
    try:
        yield
    finally:
        _TTL.reset(ttl_token)
        _MAX_AGE.reset(age_token)


def store_ttl(default: float | None) -> float | None:
    """The TTL an answer stored now gets: the request's, else ``default``."""
    ttl = _TTL.get()
    return default if ttl is ... else (ttl or None)


def fresh_enough(hit: Hit, now: float) -> bool:
    """Whether a hit is no older than the request's max-age (always, without one)."""
    max_age = _MAX_AGE.get()
    return max_age is None or now - hit.entry.created_at <= max_age


def too_old(looked: Looked, now: float) -> Looked:
    """A hit older than the request's max-age becomes a miss, the old entry kept as its stale-if-error answer."""
    hit = looked.hit
    if hit is None or fresh_enough(hit, now):
        return looked
    return Looked(looked.key, stale=lambda: Hit(hit.entry, "stale", hit.decision), decision=looked.decision)
