"""SemanticCache: the engine that wires keys, embedder, index, store, match policy and stats.

Lookup: normalize → sync the index from the change log (one counter read when nothing changed)
→ exact tier (no embedding) → embed the query (LRU) → search the partition's index → the
match policy verifies the candidates → a hit returns the stored response. A failure of the
embedder, index or store during a lookup *fails open*: the request is treated as a miss and
the failure is counted (``lookup_errors``) and logged; a failure that is a programming error
(a ``TypeError``, say) fails open too but is logged at error level and counted apart
(``lookup_bugs``), so it cannot hide as a lower hit rate.

Every request ends in one ``Result`` that ``outcome.tally`` counts. Hits and counters are
kept in memory and written by a background flusher every ``flush_interval`` seconds (and at
close), so neither a hit nor a count ever waits on a disk write.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any, Callable, Mapping

import numpy as np

from ..embedding.base import CachingEmbedder, Embedder
from ..embedding.sentence import SentenceTransformerEmbedder
from ..errors import ConfigError, RequestError, StoreError
from ..keys import RequestKey, normalize
from ..matching.policy import Candidate, Decision, MatchPolicy
from ..stats import Flusher, Stats
from ..storage.disk import DiskStore
from ..storage.entry import Entry
from ..storage.index import PartitionedIndex
from ..storage.mirror import Mirror
from ..storage.protocols import Store
from ..upstream.pricing import Pricing
from ..upstream.tokens import estimate_usage, usage_of
from .hits import HitBook
from .learning import Learning, LearningSettings
from .miss import MissPath
from .outcome import ENVIRONMENTAL, Hit, Looked, Result, Stale, tally
from .request_options import store_ttl
from .language_routes import LanguageRoutes, with_multilingual
from .singleflight import SingleFlight

__all__ = ["Hit", "Result", "SemanticCache"]

log = logging.getLogger("semcache")

DAY = 86_400.0
# Answer vectors kept apart from the query LRU: an entry's answer is embedded when it is stored
# (its answer group) and again whenever a later entry or a label compares against it; in the
# shared LRU the stream of query texts evicted it first. 4,096 vectors are about 7 MB.
ANSWER_VECTORS = 4096


class SemanticCache(MissPath):
    """A semantic cache in a directory: exact and semantic tiers over one store.

    ``ttl`` (seconds; None or 0 = never) is absolute unless ``sliding_ttl``; expired entries are
    never served fresh, and are kept ``stale_ttl`` longer for stale-if-error. ``max_entries`` /
    ``max_bytes`` cap the size, evicting least-recently-used first. ``timer`` is wall-clock time
    (``time.time``), passed in so tests control expiry. ``store`` replaces the directory's
    ``DiskStore`` (any ``storage.protocols.Store``). ``flight_wait``: how long a miss waits for
    the answer another process is already fetching for the same request (None: never waits).
    ``recent_bytes``: this process's copy of the entries it stored or served lately, which
    answers hits while the store cannot be read (a Redis outage). ``snapshot``: a file this
    process's index is saved to (``save_snapshot``, and at ``close``) and started from (stores
    with an epoch: Redis), see ``storage.mirror``. ``language_routes``: a model and policy per
    language (``engine.language_routes``); without an ``embedder`` or ``language_routes``, the
    packaged model answers English and, with the multilingual extra, multilingual-e5-small Chinese.
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
        flight_wait: float | None = 30.0,
        recent_bytes: int = 64 * 1024**2,
        snapshot: str | None = None,
        timer: Callable[[], float] = time.time,
        learning: LearningSettings | None = None,
        language_routes: LanguageRoutes | None = None,
    ) -> None:
        routes = language_routes
        policy = policy if policy is not None else routes.routes[0].policy if routes is not None else MatchPolicy()
        if routes is None and embedder is None:
            embedder = SentenceTransformerEmbedder()
            routes = with_multilingual(embedder, policy)
        self.language_routes = routes
        inner = routes if routes is not None else embedder
        self.embedder = CachingEmbedder(inner, embed_cache_size) if embed_cache_size else inner
        self.policy = routes.routes[0].policy if routes is not None else policy
        self.store = store if store is not None else DiskStore(directory)
        try:
            self.store.bind(self.embedder.model_id, self.embedder.dim)
        except Exception as exc:
            if store is None:  # ours: a refused directory must not leak its open SQLite handle
                self.store.close()
            if isinstance(exc, ConfigError) and "languages(" in str(exc):
                raise ConfigError(f"{exc} (the models answering each language differ: open it with the same "
                                  "routing -- the multilingual extra and 'multilingual' setting -- as the "
                                  "processes that built it)") from None
            raise
        self.upstream = upstream
        # 0 means "never", as in Settings (and as every TTL knob of this kind reads).
        self.ttl, self.sliding_ttl, self.stale_ttl = ttl or None, sliding_ttl, stale_ttl
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self.top_k = top_k
        self.semantic_max_temperature = semantic_max_temperature
        self.stale_if_error = stale_if_error
        self.tenant = tenant
        self.flight_wait = flight_wait
        self.pricing = pricing or Pricing()
        self._timer = timer
        self._stats = Stats(self.store)
        self._mirror = Mirror(self.store, self.embedder.dim, model_id=self.embedder.model_id, recent_bytes=recent_bytes,
                              snapshot=snapshot)
        self._lock = threading.RLock()
        self._hits = HitBook()
        self._last_sweep = 0.0
        self._flights = SingleFlight()
        self.learning = Learning(learning if learning is not None else LearningSettings(), store=self.store,
                                 embed=CachingEmbedder(inner, ANSWER_VECTORS).embed, read_entry=self._readable,
                                 neighbours=self._neighbours,
                                 start_threshold=lambda: self.policy.threshold)
        self.sync()
        self._flusher = Flusher(self.flush, flush_interval, name="semcache-flush")

    def __repr__(self) -> str:
        return f"SemanticCache({self.store!r}, entries={len(self._mirror)}, embedder={self.embedder!r})"

    def __len__(self) -> int:
        self.sync()
        return len(self._mirror)

    def __enter__(self) -> "SemanticCache":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the flusher, write pending hits and counters, save the index snapshot (if any), close the store."""
        self._flusher.stop()
        try:
            self.flush()
        finally:
            self.save_snapshot()
            self._mirror.close()
            self.store.close()

    def save_snapshot(self) -> bool:
        """Save this process's index to the ``snapshot`` file, best effort; return whether it was written."""
        if self._mirror.snapshot_path is None:
            return False
        try:
            return self._mirror.save_snapshot()
        except Exception as exc:  # a snapshot only makes the next start faster: never fail for it
            log.warning("semcache could not save the index snapshot %s: %s: %s", self._mirror.snapshot_path,
                        type(exc).__name__, exc)
            return False

    def sync(self) -> None:
        """Apply the store's new change records to this process's index (rebuild if too far behind)."""
        self._mirror.sync()

    @property
    def size(self) -> tuple[int, int]:
        """(entries, approximate bytes) as this process last synced them from the store (reads nothing)."""
        return len(self._mirror), self._mirror.bytes

    @property
    def index(self) -> PartitionedIndex:
        """This process's vector index: derived from the store, read it, never write it."""
        return self._mirror.index

    # -- lookup ------------------------------------------------------------------------------

    def key(self, request: Mapping[str, Any] | str, *, tenant: str | None = None, kind: str = "chat") -> RequestKey:
        """Return the keys of a request (raises ``RequestError`` for a malformed one)."""
        return normalize(request, tenant=self.tenant if tenant is None else tenant, kind=kind,
                         semantic_max_temperature=self.semantic_max_temperature)

    def lookup(self, request: Mapping[str, Any] | str, *, tenant: str | None = None, kind: str = "chat",
               threshold: float | None = None) -> Hit | None:
        """Return the cached answer for a request, or None on a miss. Counts the request."""
        return self.probe(request, tenant=tenant, kind=kind, threshold=threshold)[0]

    def probe(self, request: Mapping[str, Any] | str, *, tenant: str | None = None, kind: str = "chat",
              threshold: float | None = None) -> tuple[Hit | None, Decision | None]:
        """Look up (and count) like ``lookup``, also returning the policy's decision on a miss:
        the closest candidate it rejected and why (None when the semantic tier did not run)."""
        key = self.key(request, tenant=tenant, kind=kind)
        looked = self._look(key, threshold)
        result = looked.result(None)
        self._tally(result)
        return result.hit, result.decision

    # Told how long each lookup took: ``lookup_observer(outcome, seconds)``, outcome "exact", "semantic",
    # "miss" or "error" (the sidecar's latency histogram). None: nobody listens.
    lookup_observer: Callable[[str, float], None] | None = None

    def _look(self, key: RequestKey, threshold: float | None) -> "Looked":
        """Look a key up; never raises but ``RequestError`` (anything else fails open, recorded)."""
        observer = self.lookup_observer
        if observer is None:
            return self._look_safe(key, threshold)
        started = time.perf_counter()
        looked = self._look_safe(key, threshold)
        observer(looked.hit.kind if looked.hit is not None else "error" if looked.error else "miss", time.perf_counter() - started)
        return looked

    def _look_safe(self, key: RequestKey, threshold: float | None) -> "Looked":
        try:
            return self._look_unsafe(key, threshold)
        except RequestError:
            raise
        except ENVIRONMENTAL as exc:  # fail open: the cache must never make an answer worse
            log.warning("semcache lookup failed, going upstream: %s: %s", type(exc).__name__, exc)
            return Looked(key, error=type(exc).__name__)
        except Exception as exc:  # a bug: still fail open, but loudly
            log.error("semcache lookup bug, going upstream: %s: %s", type(exc).__name__, exc, exc_info=exc)
            return Looked(key, error=type(exc).__name__, bug=True)

    def _look_unsafe(self, key: RequestKey, threshold: float | None) -> "Looked":
        self.sync()
        now = self._timer()
        stale: Stale | None = None
        entry_id = self._mirror.exact.get(key.exact_key)
        if entry_id is not None:
            entry = self._entry(entry_id)
            if entry is not None and self._belongs(entry, None, entry_id, exact_key=key.exact_key):
                if not entry.expired(now):
                    return Looked(key, hit=self._touch(Hit(entry, "exact"), now))
                stale = functools.partial(Hit, entry, "stale")
        if not self._semantic(key):
            return Looked(key, stale=stale)
        vector = self.embedder.embed([key.query_text])[0]
        sims, ids = self._mirror.index.search(key.partition, vector, self.top_k)
        candidates, expired = [], {}
        for sim, found in zip(sims.tolist(), ids.tolist()):
            meta = self._mirror.meta.get(found)
            if meta is None or meta.partition != key.partition:
                continue
            candidate = Candidate(found, meta.query_text, sim, rejected=meta.rejected)
            if meta.expires_at is not None and now >= meta.expires_at:
                expired[found] = candidate
            else:
                candidates.append(candidate)
        policy = self._policy_for(key.query_text)
        learned = self.learning.threshold(key) if threshold is None else None
        threshold = learned if threshold is None else threshold
        policy = policy if threshold is None else policy.with_threshold(threshold)
        decision = policy.decide(key.query_text, candidates)
        decision, gap = self.learning.decide(key, decision, [(c.entry_id, c.similarity, self._group(c.entry_id))
                                                             for c in candidates],
                                             groups=self._answer_groups(key.query_text))
        if decision.hit:
            entry = self._entry(decision.entry_id)
            meta = self._mirror.meta.get(decision.entry_id)
            if entry is not None and not entry.expired(now) and self._belongs(entry, meta, decision.entry_id):
                # The same request, stored by an identical one while this one waited for the model: an
                # exact hit, not a semantic one of similarity 1.0 (#18 item 7).
                hit = Hit(entry, "exact") if entry.exact_key == key.exact_key else Hit(entry, "semantic", decision)
                if hit.kind == "semantic":
                    self.learning.served(key, decision, gap)
                return Looked(key, hit=self._touch(hit, now), decision=decision)
        if stale is None and self.stale_if_error:
            stale = functools.partial(self._stale_candidate, key.query_text, decision, expired, policy)
        return Looked(key, stale=stale, decision=decision)

    def _group(self, entry_id: int) -> int | None:
        meta = self._mirror.meta.get(entry_id)
        return None if meta is None else meta.answer_group

    def _neighbours(self, partition: str, vector: np.ndarray, k: int) -> tuple[list[int], list[float], list[int | None]]:
        """The stored entries nearest a vector in a partition: (ids, cosines, answer groups)."""
        sims, ids = self._mirror.index.search(partition, vector, k)
        ids = [i for i in ids.tolist() if i >= 0]
        return ids, sims.tolist()[:len(ids)], [self._group(i) for i in ids]

    def _semantic(self, key: RequestKey) -> bool:
        """Whether the semantic tier may answer (and index) this request: its sampling allows it and
        the policy reads its language; otherwise only the exact tier does."""
        return key.semantic and self._policy_for(key.query_text) is not None

    def _answer_groups(self, query_text: str) -> bool:
        """Whether the answer groups decide this query's hits (its route's choice; see ``LanguageRoute``)."""
        return self.language_routes is None or self.language_routes.answer_groups_for(query_text)

    def _policy_for(self, query_text: str) -> MatchPolicy | None:
        """The policy of the route that answers ``query_text`` (None: no model reads its language)."""
        if self.language_routes is not None:
            return self.language_routes.policy_for(query_text)
        return self.policy if self.policy.reads(query_text) else None

    def _stale_candidate(self, query_text: str, decision: Decision, expired: dict,
                         policy: MatchPolicy) -> Hit | None:
        """Pick an answer to serve only if upstream fails: an expired entry that passes the hit rule itself.

        Never a near miss (issue #17, #18): a candidate under the threshold, or failing a check, is
        another question, and an answer to another question is worse than the upstream's error.
        """
        if decision.hit:  # a fresh match whose entry expired, or could not be read fresh, since the search
            entry = self._readable(decision.entry_id)
            if entry is not None and self._belongs(entry, self._mirror.meta.get(decision.entry_id), decision.entry_id):
                return Hit(entry, "stale", decision)
        if expired:
            old = policy.decide(query_text, list(expired.values()))
            if old.hit:
                entry = self._readable(old.entry_id)
                if entry is not None and self._belongs(entry, self._mirror.meta.get(old.entry_id), old.entry_id):
                    return Hit(entry, "stale", old)
        return None

    @staticmethod
    def _belongs(entry: Entry, meta: Any, entry_id: int, *, exact_key: str | None = None) -> bool:
        """Whether the entry read is the one the index matched (same id, partition, query, exact key).

        The index and its metadata are this process's view; the entry comes from the store or from
        this process's recent copies. Should they ever disagree (an id that names another entry
        after a store went back in time, a copy kept across an outage), the entry is another
        question's answer and is never served: the lookup is a miss instead.
        """
        same = entry.id == entry_id and (exact_key is None or entry.exact_key == exact_key)
        if same and meta is not None:
            same = (entry.partition, entry.query_text, entry.exact_key) == (meta.partition, meta.query_text, meta.exact_key)
        if not same:
            log.warning("semcache: entry %d read for a lookup is not the entry the index matched; not serving it", entry_id)
        return same

    def _readable(self, entry_id: int) -> Entry | None:
        """The entry for a stale answer, or None when it cannot be read (then the upstream's error stands)."""
        try:
            return self._mirror.read(entry_id)
        except ENVIRONMENTAL as exc:
            log.warning("semcache could not read a stale answer: %s: %s", type(exc).__name__, exc)
            return None

    def _entry(self, entry_id: int) -> Entry | None:
        """Read an entry with this process's unflushed sliding expiry applied (a recent copy while
        the store cannot be read)."""
        entry = self._mirror.read(entry_id)
        return None if entry is None else self._hits.expiry(entry)

    def _touch(self, hit: Hit, now: float) -> Hit:
        extend = now + self.ttl if self.sliding_ttl and self.ttl is not None else None
        expires = self._hits.touch(hit.entry, now, extend_to=extend)
        meta = self._mirror.meta.get(hit.entry.id)
        if meta is not None:
            meta.last_used, meta.expires_at = now, expires
        return hit

    def flush(self) -> None:
        """Write pending hit counts, recency and sliding expiries, then the counters, to the store."""
        pending = self._hits.drain()
        if pending:
            updates = []
            try:
                # One batched read where the store has it (Redis: one round trip, not one per entry hit).
                get_many = getattr(self.store, "get_many", None)
                current = get_many(pending) if get_many is not None else {i: self.store.get(i) for i in pending}
                for entry_id, hits in pending.items():
                    entry = current.get(entry_id)
                    if entry is not None:
                        updates.append(entry.with_(hits=entry.hits + hits.count, last_hit_at=hits.last,
                                                   expires_at=hits.expires_at))
                self.store.update(updates)
            except StoreError:
                self._hits.restore(pending)  # kept for the next flush rather than lost
                raise
        self._stats.flush()
        self.learning.flush()

    def _tally(self, result: Result) -> Result:
        tally(self._stats, result, self.pricing)
        return result

    # -- insert, evict, expire ---------------------------------------------------------------

    def insert(self, request: Mapping[str, Any] | str, response: Any, *, tenant: str | None = None, kind: str = "chat",
               usage: tuple[int, int] | None = None, model: str | None = None, ttl: float | None = ...,
               key: RequestKey | None = None) -> Entry:
        """Store a response for a request and return the entry. ``usage`` = (prompt, completion) tokens.

        ``ttl`` overrides the cache's (None or 0 = never). Raises ``StoreError`` for a response
        that cannot be stored (JSON values and pydantic models can).
        """
        key = key or self.key(request, tenant=tenant, kind=kind)
        prompt_tokens, completion_tokens = usage if usage is not None else usage_of(response)
        if usage is None and isinstance(response, str) and not completion_tokens:
            prompt_tokens, completion_tokens = estimate_usage(request, response)
        embedding = self.embedder.embed([key.query_text])[0] if self._semantic(key) else None
        now = self._timer()
        ttl = store_ttl(self.ttl) if ttl is ... else (ttl or None)  # the request's (Cache-Control: max-age), else ours
        entry = Entry.create(
            response=response, id=self.store.next_id(), partition=key.partition, exact_key=key.exact_key,
            query_text=key.query_text, embedding=embedding, model=model or key.model, tenant=key.tenant,
            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, created_at=now,
            expires_at=None if ttl is None else now + ttl,
        )
        entry = entry.with_(size=entry.payload_bytes() + len(key.query_text.encode()) + 4 * self.embedder.dim)
        if embedding is not None and self._answer_groups(key.query_text):
            try:
                entry = entry.with_(answer_group=self.learning.group_of(entry.id, key.partition, embedding, response))
            except ENVIRONMENTAL as exc:  # an entry without a group is its own: stricter, never wrong
                log.warning("semcache could not judge a new answer against its neighbours: %s: %s", type(exc).__name__, exc)
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
            ids += self._mirror.in_partition(partition)
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

    def feedback(self, target: Any, correct: bool, *, query_text: str | None = None, tenant: str | None = None,
                 kind: str = "chat") -> bool:
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
            hit = self._look(key, None).hit
            entry_id, query = (hit.entry.id if hit else None), query or key.query_text
        if entry_id is None or correct:
            return entry_id is not None
        entry = self.store.get(entry_id)
        if entry is None or query is None:
            return False
        self._learn_feedback(entry, query, getattr(target, "decision", None) or getattr(getattr(target, "hit", None), "decision", None))
        if query == entry.query_text:  # the stored answer itself is wrong: drop it
            self.store.delete([entry_id])
        else:
            self.store.update([entry.with_(rejected=entry.rejected + (query,))])
        self.sync()
        return True

    def _learn_feedback(self, entry: Entry, query: str, decision: Decision | None) -> None:
        """A wrong semantic answer is a label for calibration: at the cosine it was served at."""
        if query == entry.query_text or entry.embedding is None:
            return
        similarity = decision.similarity if decision is not None else float(
            np.dot(self.embedder.embed([query])[0], np.asarray(entry.embedding, np.float32)))
        self.learning.feedback(entry.tenant, entry.partition, similarity, False)

    # -- stats -------------------------------------------------------------------------------

    def record(self, counter: str, amount: float = 1, *, tenant: str = "", model: str = "") -> None:
        """Count an event in this cache's persisted stats (used by the upstream client and server)."""
        self._stats.incr(counter, amount, tenant=tenant, model=model)

    @property
    def stats_recorder(self) -> Stats:
        return self._stats

    def stats(self) -> dict:
        """Return counters (total, by tenant, by model) and the cache's size.

        Pending counters are written first, so what this returns is what the store holds: a
        crash afterwards can never make a later snapshot show less.
        """
        self.sync()
        self.flush()
        snapshot = self._stats.snapshot()
        snapshot["cache"] = {
            "directory": getattr(self.store, "directory", None),
            "entries": len(self._mirror),
            "bytes": self._mirror.bytes,
            "partitions": len(self._mirror.index.partitions()),
            "model": self.embedder.model_id,
            "policy": self.policy.to_dict(),
        }
        if self.language_routes is not None:
            snapshot["cache"]["language_routes"] = self.language_routes.describe()
        snapshot["learning"] = self.learning.report(["", self.tenant, *snapshot.get("by_tenant", {})], own=self.tenant)
        budget = getattr(self.upstream, "budget", None)
        if budget is not None:
            snapshot["budget"] = budget.state()
        return snapshot
