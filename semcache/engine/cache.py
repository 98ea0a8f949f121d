"""SemanticCache: the engine that wires keys, embedder, index, store, match policy and stats.

Lookup: normalize → sync the index from the change log (one counter read when nothing changed)
→ exact tier (no embedding) → embed the query (LRU) → search the partition's index → the
match policy verifies the candidates → a hit returns the stored response. Any failure of the
embedder, index or store during a lookup *fails open*: it is counted and logged, and the
request is treated as a miss.

Hits update counters and last-hit times in memory; they reach the store at the next flush
(every ``flush_interval`` seconds and at close), so a hit never waits on a disk write.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import pickle
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from ..embedding.base import CachingEmbedder, Embedder
from ..embedding.sentence import SentenceTransformerEmbedder
from ..errors import RequestError, SemcacheError, UpstreamError
from ..keys import RequestKey, normalize
from ..matching.policy import Candidate, Decision, MatchPolicy
from ..stats import Stats
from ..storage.disk import DiskStore
from ..storage.entry import Entry
from ..storage.index import PartitionedIndex
from ..storage.mirror import Mirror
from ..storage.protocols import Store
from ..upstream.pricing import Pricing
from ..upstream.tokens import estimate_usage, usage_of
from .singleflight import SingleFlight

__all__ = ["Hit", "Result", "SemanticCache"]

log = logging.getLogger("semcache")

DAY = 86_400.0


Stale = Callable[[], "Hit | None"]  # finds the stale-if-error answer, when it is needed


@dataclass(frozen=True)
class Hit:
    """A cached answer: ``kind`` is "exact", "semantic" or "stale"."""

    entry: Entry
    kind: str
    decision: Decision | None = None

    @property
    def response(self) -> Any:
        return self.entry.response

    @property
    def similarity(self) -> float:
        return 1.0 if self.decision is None else self.decision.similarity


@dataclass(frozen=True)
class Result:
    """What ``complete`` did: ``status`` is "hit", "miss", "bypass" or "stale"."""

    response: Any
    status: str
    key: RequestKey
    hit: Hit | None = None
    entry_id: int | None = None
    decision: Decision | None = None


class SemanticCache:
    """A semantic cache in a directory: exact and semantic tiers over one diskcache store.

    ``ttl`` (seconds, None = never) is absolute unless ``sliding_ttl``; expired entries are never
    served fresh, and are kept ``stale_ttl`` longer for stale-if-error. ``max_entries`` /
    ``max_bytes`` cap the size, evicting least-recently-used first. ``timer`` is wall-clock time
    (``time.time``), passed in so tests control expiry.
    """

    def __init__(
        self,
        directory: str = ".semcache",
        *,
        embedder: Embedder | None = None,
        policy: MatchPolicy | None = None,
        store: Store | None = None,
        upstream: Any = None,
        ttl: float | None = 7 * DAY,
        sliding_ttl: bool = False,
        stale_ttl: float | None = DAY,
        max_entries: int | None = 1_000_000,
        max_bytes: int | None = 4 * 1024**3,
        top_k: int = 5,
        semantic_max_temperature: float = 1.0,
        stale_if_error: bool = True,
        tenant: str = "",
        pricing: Pricing | None = None,
        flush_interval: float = 1.0,
        embed_cache_size: int = 1024,
        timer: Callable[[], float] = time.time,
    ) -> None:
        inner = embedder if embedder is not None else SentenceTransformerEmbedder()
        self.embedder = CachingEmbedder(inner, embed_cache_size) if embed_cache_size else inner
        self.policy = policy if policy is not None else MatchPolicy()
        self.store = store if store is not None else DiskStore(directory)
        try:
            self.store.bind(self.embedder.model_id, self.embedder.dim)
        except Exception:
            if store is None:  # ours: a refused directory must not leak its open SQLite handle
                self.store.close()
            raise
        self.upstream = upstream
        self.ttl, self.sliding_ttl, self.stale_ttl = ttl, sliding_ttl, stale_ttl
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.top_k = top_k
        self.semantic_max_temperature = semantic_max_temperature
        self.stale_if_error = stale_if_error
        self.tenant = tenant
        self.pricing = pricing or Pricing()
        self._timer = timer
        self._stats = Stats(self.store, flush_interval=flush_interval)
        self._flush_interval = flush_interval
        self._mirror = Mirror(self.store, self.embedder.dim)
        self._lock = threading.RLock()
        self._pending_hits: dict[int, tuple[int, float, float | None]] = {}
        self._last_flush = time.monotonic()
        self._last_sweep = 0.0
        self._flights = SingleFlight()
        self.sync()

    def __repr__(self) -> str:
        return f"SemanticCache({self.store!r}, entries={len(self._mirror.meta)}, embedder={self.embedder!r})"

    def __len__(self) -> int:
        self.sync()
        return len(self._mirror.meta)

    def __enter__(self) -> "SemanticCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Flush pending hits and counters, and close the store."""
        self.flush()
        self.store.close()

    def sync(self) -> None:
        """Apply the store's new change records to this process's index (rebuild if too far behind)."""
        self._mirror.sync()

    @property
    def index(self) -> PartitionedIndex:
        """This process's vector index: derived from the store, read it, never write it."""
        return self._mirror.index

    # -- lookup ------------------------------------------------------------------------------

    def key(self, request: Mapping[str, Any] | str, *, tenant: str | None = None, kind: str = "chat") -> RequestKey:
        """Return the keys of a request (raises ``RequestError`` for a malformed one)."""
        return normalize(request, tenant=self.tenant if tenant is None else tenant, kind=kind,
                         semantic_max_temperature=self.semantic_max_temperature)

    def lookup(self, request: Mapping[str, Any] | str, *, tenant: str | None = None, kind: str = "chat", threshold: float | None = None) -> Hit | None:
        """Return the cached answer for a request, or None on a miss. Counts the request."""
        return self.probe(request, tenant=tenant, kind=kind, threshold=threshold)[0]

    def probe(self, request: Mapping[str, Any] | str, *, tenant: str | None = None, kind: str = "chat",
              threshold: float | None = None) -> tuple[Hit | None, Decision | None]:
        """Look up (and count) like ``lookup``, also returning the policy's decision on a miss:
        the closest candidate it rejected and why (None when the semantic tier did not run)."""
        key = self.key(request, tenant=tenant, kind=kind)
        hit, _, decision = self._lookup(key, threshold)
        self._count_lookup(key, hit)
        return hit, (hit.decision if hit is not None else decision)

    def _count_lookup(self, key: RequestKey, hit: Hit | None) -> None:
        incr = self._stats.incr
        t, m = key.tenant, key.model
        incr("requests", tenant=t, model=m)
        if hit is None:
            incr("misses", tenant=t, model=m)
            return
        incr("exact_hits" if hit.kind == "exact" else "semantic_hits", tenant=t, model=m)
        self._count_saved(hit, key)

    def _count_saved(self, hit: Hit, key: RequestKey) -> None:
        entry, t, m = hit.entry, key.tenant, key.model
        self._stats.incr("requests_saved", tenant=t, model=m)
        self._stats.incr("prompt_tokens_saved", entry.prompt_tokens, tenant=t, model=m)
        self._stats.incr("completion_tokens_saved", entry.completion_tokens, tenant=t, model=m)
        self._stats.incr("cost_saved_usd", self.pricing.cost(entry.model or m, entry.prompt_tokens, entry.completion_tokens), tenant=t, model=m)

    def _lookup(self, key: RequestKey, threshold: float | None = None) -> tuple[Hit | None, Stale | None, Decision | None]:
        """Return (fresh hit, stale fallback, the policy's decision). Never raises but RequestError.

        The stale fallback is a function, called only if upstream then fails: finding it may
        read the store, which a miss that upstream answers must not pay for.
        """
        try:
            return self._lookup_unsafe(key, threshold)
        except RequestError:
            raise
        except Exception as exc:  # fail open: the cache must never make an answer worse
            log.warning("semcache lookup failed, going upstream: %s: %s", type(exc).__name__, exc)
            self._stats.incr("lookup_errors", tenant=key.tenant, model=key.model)
            self._stats.incr(f"errors.{type(exc).__name__}", tenant=key.tenant, model=key.model)
            return None, None, None

    def _lookup_unsafe(self, key: RequestKey, threshold: float | None) -> tuple[Hit | None, Stale | None, Decision | None]:
        self.sync()
        now = self._timer()
        stale: Stale | None = None
        entry_id = self._mirror.exact.get(key.exact_key)
        if entry_id is not None:
            entry = self._entry(entry_id)
            if entry is not None:
                if not entry.expired(now):
                    return self._touch(Hit(entry, "exact"), now), None, None
                stale = functools.partial(Hit, entry, "stale")
        if not key.semantic:
            return None, stale, None
        vector = self.embedder.embed([key.query_text])[0]
        sims, ids, vectors = self._mirror.index.search_with_vectors(key.partition, vector, self.top_k)
        candidates, expired = [], {}
        for sim, entry_id, stored in zip(sims.tolist(), ids.tolist(), vectors):
            meta = self._mirror.meta.get(entry_id)
            if meta is None or meta.partition != key.partition:
                continue
            candidate = Candidate(entry_id, meta.query_text, sim, stored, meta.rejected)
            if meta.expires_at is not None and now >= meta.expires_at:
                expired[entry_id] = candidate
            else:
                candidates.append(candidate)
        policy = self.policy if threshold is None else self.policy.with_threshold(threshold)
        decision = policy.decide(key.query_text, candidates, vector)
        if decision.hit:
            entry = self._entry(decision.entry_id)
            if entry is not None and not entry.expired(now):
                return self._touch(Hit(entry, "semantic", decision), now), None, decision
        if stale is None and self.stale_if_error:
            stale = functools.partial(self._stale_candidate, key.query_text, vector, decision, expired, policy)
        return None, stale, decision

    def _stale_candidate(self, query_text: str, vector: np.ndarray, decision: Decision, expired: dict, policy: MatchPolicy) -> Hit | None:
        """Pick an answer to serve only if upstream fails: an expired match, or a near miss."""
        if expired:
            old = policy.decide(query_text, list(expired.values()), vector)
            if old.hit:
                entry = self.store.get(old.entry_id)
                return None if entry is None else Hit(entry, "stale", old)
        near = decision.entry_id is not None and decision.score >= policy.threshold - policy.margin
        if near and all(c.passed for c in decision.checks):
            entry = self.store.get(decision.entry_id)
            return None if entry is None else Hit(entry, "stale", decision)
        return None

    def _entry(self, entry_id: int) -> Entry | None:
        """Read an entry with this process's unflushed sliding expiry applied (else a hit
        before the next flush would see the stored, older expiry and miss)."""
        entry = self.store.get(entry_id)
        pending = self._pending_hits.get(entry_id)
        if entry is None or pending is None or pending[2] == entry.expires_at:
            return entry
        return entry.with_(expires_at=pending[2])

    def _touch(self, hit: Hit, now: float) -> Hit:
        entry = hit.entry
        with self._lock:
            count, _, expires = self._pending_hits.get(entry.id, (0, now, entry.expires_at))
            if self.sliding_ttl and self.ttl is not None:
                expires = now + self.ttl
            self._pending_hits[entry.id] = (count + 1, now, expires)
            meta = self._mirror.meta.get(entry.id)
            if meta is not None:
                meta.last_used, meta.expires_at = now, expires
        if time.monotonic() - self._last_flush >= self._flush_interval:
            self.flush()
        return hit

    def flush(self) -> None:
        """Write pending hit counts (and sliding expiries) and stats counters to the store."""
        with self._lock:
            pending, self._pending_hits = self._pending_hits, {}
            self._last_flush = time.monotonic()
        updates = []
        for entry_id, (count, last, expires) in pending.items():
            entry = self.store.get(entry_id)
            if entry is not None:
                updates.append(entry.with_(hits=entry.hits + count, last_hit_at=last, expires_at=expires))
        if updates:
            self.store.update(updates, log=self.sliding_ttl)
        self._stats.flush()

    # -- insert, evict, expire ---------------------------------------------------------------

    def insert(self, request: Mapping[str, Any] | str, response: Any, *, tenant: str | None = None, kind: str = "chat",
               usage: tuple[int, int] | None = None, model: str | None = None, ttl: float | None = ...,
               key: RequestKey | None = None) -> Entry:
        """Store a response for a request and return the entry. ``usage`` = (prompt, completion) tokens."""
        key = key or self.key(request, tenant=tenant, kind=kind)
        prompt_tokens, completion_tokens = usage if usage is not None else usage_of(response)
        if usage is None and isinstance(response, str) and not completion_tokens:
            prompt_tokens, completion_tokens = estimate_usage(request, response)
        embedding = self.embedder.embed([key.query_text])[0] if key.semantic else None
        now = self._timer()
        ttl = self.ttl if ttl is ... else ttl
        entry = Entry(
            id=self.store.next_id(), partition=key.partition, exact_key=key.exact_key, query_text=key.query_text,
            embedding=embedding, response=response, model=model or key.model, tenant=key.tenant,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, created_at=now,
            expires_at=None if ttl is None else now + ttl,
            size=len(pickle.dumps(response, protocol=pickle.HIGHEST_PROTOCOL)) + len(key.query_text.encode()) + 4 * self.embedder.dim,
        )
        self.store.put(entry)
        self.sync()
        self._enforce_limits(now)
        return entry

    def _enforce_limits(self, now: float) -> None:
        """Drop entries past their stale bound, then evict least-recently-used down to 90% of the caps."""
        with self._lock:
            doomed: list[int] = []
            if now - self._last_sweep >= 60 or self._over_limits():
                self._last_sweep = now
                doomed = self._mirror.expired(now, grace=self.stale_ttl or 0.0)
            if self._over_limits():
                doomed += self._mirror.least_recently_used(
                    keep_entries=int(self.max_entries * 0.9) if self.max_entries else None,
                    keep_bytes=int(self.max_bytes * 0.9) if self.max_bytes else None, exclude=set(doomed))
        if doomed:
            self.store.delete(doomed)
            self.sync()

    def _over_limits(self) -> bool:
        return bool((self.max_entries and len(self._mirror) > self.max_entries)
                    or (self.max_bytes and self._mirror.bytes > self.max_bytes))

    def invalidate(self, entry_ids=None, *, partition: str | None = None) -> int:
        """Delete entries by id, or every entry of a partition; return how many were deleted."""
        self.sync()
        ids = list(entry_ids or [])
        if partition is not None:
            ids += [i for i, m in self._mirror.meta.items() if m.partition == partition]
        removed = self.store.delete(ids)
        self.sync()
        return removed

    def clear(self) -> None:
        """Delete every entry (counters are kept; ``reset_stats`` clears them)."""
        self.store.clear()
        self.sync()

    def reset_stats(self) -> None:
        self._stats.flush()
        self.store.reset_counters()

    def entries(self):
        """Yield every stored entry."""
        return self.store.scan()

    # -- feedback ----------------------------------------------------------------------------

    def feedback(self, target: Any, correct: bool, *, query_text: str | None = None, tenant: str | None = None, kind: str = "chat") -> bool:
        """Record whether a served answer was right; a wrong one is never served for that query again.

        ``target`` is a ``Result``, ``Hit``, ``Entry``, entry id, or the request that was answered
        (then the entry it hits now is the one marked). Returns False when nothing was marked.
        """
        entry_id, query = None, query_text
        if isinstance(target, Result):
            entry_id, query = target.entry_id, query or target.key.query_text
        elif isinstance(target, Hit):
            entry_id = target.entry.id
        elif isinstance(target, Entry):
            entry_id = target.id
        elif isinstance(target, int):
            entry_id = target
        else:
            key = self.key(target, tenant=tenant, kind=kind)
            hit, _, _ = self._lookup(key)
            entry_id, query = (hit.entry.id if hit else None), query or key.query_text
        if entry_id is None or correct:
            return False if entry_id is None else True
        entry = self.store.get(entry_id)
        if entry is None or query is None:
            return False
        if query == entry.query_text:  # the stored answer itself is wrong: drop it
            self.store.delete([entry_id])
        else:
            self.store.update([entry.with_(rejected=entry.rejected + (query,))], log=True)
        self.sync()
        return True

    # -- complete: lookup, then upstream on a miss -----------------------------------------------

    def complete(self, request: Mapping[str, Any] | str, call: Callable[[Any], Any] | None = None, *, tenant: str | None = None,
                 kind: str = "chat", no_cache: bool = False, no_store: bool = False, threshold: float | None = None) -> Result:
        """Answer a request from the cache, or by ``call(request)`` (default: the upstream) and store it.

        Concurrent misses of one exact key make one call, and it is stored before the followers
        are answered, so no request arriving meanwhile calls upstream again.
        """
        key = self.key(request, tenant=tenant, kind=kind)
        hit, stale, decision = self._begin(key, no_cache, threshold)
        if hit is not None:
            return Result(hit.response, "hit", key, hit, hit.entry.id, hit.decision)
        fetch = self._caller(call, key, kind)

        def fetch_and_store() -> Result:
            landed = None if no_cache else self._landed(key)
            if landed is not None:
                return landed
            return self._stored(request, fetch(request), key, kind, no_store, no_cache, decision)

        try:
            return self._flights.do((key.exact_key, no_store), fetch_and_store) if not no_cache else fetch_and_store()
        except UpstreamError as exc:
            return self._stale_or_raise(key, stale, exc)

    async def acomplete(self, request: Mapping[str, Any] | str, call: Callable[[Any], Any] | None = None, *, tenant: str | None = None,
                        kind: str = "chat", no_cache: bool = False, no_store: bool = False, threshold: float | None = None) -> Result:
        """Async ``complete``: lookups, stores and counter flushes run in worker threads, never on
        the event loop; ``call`` may be a coroutine function."""
        key = self.key(request, tenant=tenant, kind=kind)
        hit, stale, decision = await asyncio.to_thread(self._begin, key, no_cache, threshold)
        if hit is not None:
            return Result(hit.response, "hit", key, hit, hit.entry.id, hit.decision)
        if call is None:
            if self.upstream is None:
                raise SemcacheError("no upstream configured: pass call= or build the cache with upstream=")
            async def fetch(req):
                return (await self.upstream.acall(req, kind=kind, tenant=key.tenant)).body
        else:
            async def fetch(req):
                value = call(req)
                return await value if asyncio.iscoroutine(value) else value

        async def fetch_and_store() -> Result:
            landed = None if no_cache else await asyncio.to_thread(self._landed, key)
            if landed is not None:
                return landed
            response = await fetch(request)
            return await asyncio.to_thread(self._stored, request, response, key, kind, no_store, no_cache, decision)

        try:
            return await (self._flights.ado((key.exact_key, no_store), fetch_and_store) if not no_cache else fetch_and_store())
        except UpstreamError as exc:
            return await asyncio.to_thread(self._stale_or_raise, key, stale, exc)

    def _landed(self, key: RequestKey) -> Result | None:
        """The answer a flight for this exact key stored after our lookup missed, if one did.

        A follower that looked up just before the leader stored, and joined just after the
        leader's flight ended, would otherwise start a second flight: a second upstream call.
        Counted as the exact hit it turned out to be.
        """
        try:
            self.sync()
            entry_id = self._mirror.exact.get(key.exact_key)
            entry = self._entry(entry_id) if entry_id is not None else None
        except Exception:  # the lookup already failed open once; go upstream
            return None
        now = self._timer()
        if entry is None or entry.expired(now):
            return None
        hit = self._touch(Hit(entry, "exact"), now)
        self._stats.incr("misses", -1, tenant=key.tenant, model=key.model)
        self._stats.incr("exact_hits", tenant=key.tenant, model=key.model)
        self._count_saved(hit, key)
        return Result(hit.response, "hit", key, hit, entry.id, None)

    def _begin(self, key: RequestKey, no_cache: bool, threshold: float | None) -> tuple[Hit | None, Stale | None, Decision | None]:
        """Look up and count a request (or count it as bypassed); return (hit, stale fallback, decision)."""
        if no_cache:
            self._stats.incr("requests", tenant=key.tenant, model=key.model)
            self._stats.incr("bypasses", tenant=key.tenant, model=key.model)
            return None, None, None
        hit, stale, decision = self._lookup(key, threshold)
        self._count_lookup(key, hit)
        return hit, stale, decision

    def _caller(self, call, key: RequestKey, kind: str):
        if call is not None:
            return call
        if self.upstream is None:
            raise SemcacheError("no upstream configured: pass call= or build the cache with upstream=")
        return lambda req: self.upstream.call(req, kind=kind, tenant=key.tenant).body

    def _stale_or_raise(self, key: RequestKey, fallback: Stale | None, exc: UpstreamError) -> Result:
        stale = fallback() if fallback is not None and self.stale_if_error else None
        if stale is None:
            raise exc
        log.warning("upstream failed (%s); serving a stale answer for entry %s", type(exc).__name__, stale.entry.id)
        self._stats.incr("stale_serves", tenant=key.tenant, model=key.model)
        self._count_saved(stale, key)
        return Result(stale.response, "stale", key, stale, stale.entry.id, stale.decision)

    def _stored(self, request, response, key: RequestKey, kind: str, no_store: bool, no_cache: bool,
                decision: Decision | None = None) -> Result:
        status = "bypass" if no_cache else "miss"
        if no_store:
            return Result(response, status, key, decision=decision)
        try:
            entry = self.insert(request, response, kind=kind, key=key)
        except Exception as exc:  # storing is best effort: the caller still gets the answer
            log.warning("semcache could not store an answer: %s: %s", type(exc).__name__, exc)
            self._stats.incr(f"errors.{type(exc).__name__}", tenant=key.tenant, model=key.model)
            return Result(response, status, key, decision=decision)
        return Result(response, status, key, entry_id=entry.id, decision=decision)

    # -- stats -------------------------------------------------------------------------------

    def record(self, counter: str, amount: float = 1, *, tenant: str = "", model: str = "") -> None:
        """Count an event in this cache's persisted stats (used by the upstream client and server)."""
        self._stats.incr(counter, amount, tenant=tenant, model=model)

    @property
    def stats_recorder(self) -> Stats:
        return self._stats

    def stats(self) -> dict:
        """Return counters (total, by tenant, by model) and the cache's size."""
        self.sync()
        snapshot = self._stats.snapshot()
        snapshot["cache"] = {
            "directory": getattr(self.store, "directory", None),
            "entries": len(self._mirror.meta),
            "bytes": self._mirror.bytes,
            "partitions": len(self._mirror.index.partitions()),
            "model": self.embedder.model_id,
            "policy": self.policy.to_dict(),
        }
        budget = getattr(self.upstream, "budget", None)
        if budget is not None:
            snapshot["budget"] = budget.state()
        return snapshot
