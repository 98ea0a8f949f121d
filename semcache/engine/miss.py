"""The miss path of ``SemanticCache``, written once for ``complete`` and ``acomplete``.

Look up; on a miss, in a single flight (and a lease in the store for other processes): take an
answer that just landed, else fetch it (the caller's function or the upstream) and store it;
when the upstream fails, serve a stale answer if one can stand in. ``flow`` runs the plan:
inline for ``complete``, with blocking steps in worker threads for ``acomplete``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Callable, Mapping

from ..errors import SemcacheError, UpstreamError
from ..keys import RequestKey
from .flow import Fetch, Flight, Work, arun, run
from .outcome import ENVIRONMENTAL, Hit, Looked, Result
from .request_options import fresh_enough, request_options, too_old

__all__ = ["MissPath"]

log = logging.getLogger("semcache")

FLIGHT_POLL = 0.02  # seconds between a waiting process's looks for the answer another one is fetching


class MissPath:
    """``complete`` / ``acomplete`` and their steps; mixed into ``SemanticCache`` (which provides
    ``key``, ``_look``, ``_tally``, ``_entry``, ``_touch``, ``insert``, ``sync`` and the store)."""

    def complete(self, request: Mapping[str, Any] | str, call: Callable[[Any], Any] | None = None, *,
                 tenant: str | None = None, kind: str = "chat", no_cache: bool = False, no_store: bool = False,
                 threshold: float | None = None, ttl: float | None = ..., max_age: float | None = None) -> Result:
        """Answer a request from the cache, or by ``call(request)`` (default: the upstream) and store it.

        Concurrent misses of one exact key make one call, and it is stored before the followers
        are answered, so no request arriving meanwhile calls upstream again. Raises the
        ``UpstreamError`` of a failed call when no stale answer can stand in. ``ttl``: seconds the
        answer this request stores lives (default: the cache's); ``max_age``: no entry older is served.
        """
        key = self.key(request, tenant=tenant, kind=kind)
        if call is None:
            upstream = self._upstream()
            call = lambda req: upstream.call(req, kind=kind, tenant=key.tenant).body  # noqa: E731
        with request_options(ttl, max_age):
            return self._tally(run(self._plan(request, key, kind, no_cache, no_store, threshold), call, self._flights))

    async def acomplete(self, request: Mapping[str, Any] | str, call: Callable[[Any], Any] | None = None, *,
                        tenant: str | None = None, kind: str = "chat", no_cache: bool = False, no_store: bool = False,
                        threshold: float | None = None, ttl: float | None = ..., max_age: float | None = None) -> Result:
        """Async ``complete``: lookups, stores and counter writes run in worker threads, never on
        the event loop; ``call`` may be a coroutine function."""
        key = self.key(request, tenant=tenant, kind=kind)
        if call is None:
            upstream = self._upstream()

            async def fetch(req):
                return (await upstream.acall(req, kind=kind, tenant=key.tenant)).body
        else:
            async def fetch(req):
                value = call(req)
                return await value if asyncio.iscoroutine(value) else value
        with request_options(ttl, max_age):
            return self._tally(await arun(self._plan(request, key, kind, no_cache, no_store, threshold), fetch, self._flights))

    def _upstream(self) -> Any:
        if self.upstream is None:
            raise SemcacheError("no upstream configured: pass call= or build the cache with upstream=")
        return self.upstream

    def _plan(self, request, key: RequestKey, kind: str, no_cache: bool, no_store: bool, threshold: float | None):
        """The request's path, once for ``complete`` and ``acomplete`` (``flow`` runs it)."""
        looked = Looked(key) if no_cache else (yield Work(self._look, (key, threshold)))
        looked = too_old(looked, self._timer())  # Cache-Control: max-age: an older hit is a miss (its entry stale)
        if looked.hit is not None:
            return looked.result(None)
        status = "bypass" if no_cache else "miss"

        def fetch_and_store():
            token = None
            if not no_cache:
                landed, token = yield Work(self._claim, (key,))
                if landed is not None and fresh_enough(landed, self._timer()):
                    return Result(landed.response, "hit", key, landed, landed.entry.id)
            try:
                response = yield Fetch(request)
                if no_store:
                    return Result(response, status, key, decision=looked.decision)
                entry_id, error = yield Work(self._store, (request, response, key, kind))
                return Result(response, status, key, entry_id=entry_id, decision=looked.decision, store_error=error)
            finally:
                if token is not None:  # after the store: a process that waited finds the entry
                    yield Work(self._release, (key, token))

        try:
            # no-cache callers neither join nor lead a flight: they asked for their own answer
            answer, shared = yield Flight(None if no_cache else (key.exact_key, no_store), fetch_and_store)
        except UpstreamError as exc:
            stale = (yield Work(looked.stale)) if looked.stale is not None and self.stale_if_error else None
            if stale is None:
                raise
            log.warning("upstream failed (%s); serving a stale answer for entry %s", type(exc).__name__, stale.entry.id)
            return looked.stale_result(stale)
        return looked.merge(answer, shared)

    def _claim(self, key: RequestKey) -> tuple[Hit | None, str | None]:
        """Before calling upstream for a miss: return (the answer another process or flight just
        stored, None), or (None, a lease token) to call, or (None, None) to call without one.

        The lease makes identical misses in *other* processes (sidecar replicas, workers on one
        directory) wait for this call's answer instead of calling too; within a process the
        single flight already does. A waiter calls itself once the lease is free (the holder
        failed) or after ``flight_wait`` seconds (the holder is slow or died; its lease expires).
        """
        landed = self._landed(key)
        if landed is not None or self.flight_wait is None or not hasattr(self.store, "acquire_lease"):
            return landed, None
        deadline = time.monotonic() + self.flight_wait
        while True:
            try:
                token = self.store.acquire_lease(f"flight:{key.exact_key}", max(self.flight_wait, 1.0))
            except ENVIRONMENTAL:  # no lease to be had: call, as without other processes
                return None, None
            if token is not None:  # the holder may have stored just before letting go
                landed = self._landed(key)
                if landed is not None:
                    self._release(key, token)
                    return landed, None
                return None, token
            if time.monotonic() >= deadline:
                return None, None
            time.sleep(FLIGHT_POLL)
            landed = self._landed(key)
            if landed is not None:
                return landed, None

    def _release(self, key: RequestKey, token: str) -> None:
        try:
            self.store.release_lease(f"flight:{key.exact_key}", token)
        except ENVIRONMENTAL as exc:  # it expires on its own
            log.warning("semcache could not release a flight lease: %s: %s", type(exc).__name__, exc)

    def _landed(self, key: RequestKey) -> Hit | None:
        """The answer a flight for this exact key stored after our lookup missed, if one did.

        A follower that looked up just before the leader stored, and joined just after the
        leader's flight ended, would otherwise start a second flight: a second upstream call.
        It counts as the exact hit it turned out to be.
        """
        try:
            self.sync()
            entry_id = self._mirror.exact.get(key.exact_key)
            entry = self._entry(entry_id) if entry_id is not None else None
        except ENVIRONMENTAL:  # the lookup already failed open once; go upstream
            return None
        now = self._timer()
        if entry is None or entry.expired(now) or not self._belongs(entry, None, entry_id, exact_key=key.exact_key):
            return None
        return self._touch(Hit(entry, "exact"), now)

    def _store(self, request, response, key: RequestKey, kind: str) -> tuple[int | None, str | None]:
        """Store an answer, best effort: return (entry id, None), or (None, the error's name)."""
        try:
            return self.insert(request, response, kind=kind, key=key).id, None
        except Exception as exc:  # storing is best effort: the caller still gets the answer
            log.warning("semcache could not store an answer: %s: %s", type(exc).__name__, exc)
            return None, type(exc).__name__
