"""The sidecar's Prometheus metrics: what THIS process did, with labels, in a registry of its own.

Every number here is this process's own since it started, never the store's totals: with a
shared store (Redis, or several workers on one directory) each replica exports its own counts,
so ``sum()`` over the pods is the cluster's figure. The cluster-wide totals, persisted across
restarts, stay in ``GET /semcache/stats``. Rates and hit ratios are PromQL's job
(``rate(...)``), so no lifetime-ratio gauge is exported. docs/metrics.md lists every metric.

Three sources:

- instruments the sidecar updates as it answers (``Metrics.answered``: requests by route,
  tenant, model and result; request, upstream, lookup and embedding latency; HTTP statuses);
- ``Stats.process_counts()``: the engine's and the upstream client's counters (tokens and
  dollars saved and spent, attempts, retries, 429s, limiter waits, budget stops, errors),
  exported with their tenant and model;
- gauges read at scrape time (``semcache_info``, ``semcache_store_up``, the entries, the
  budgets). They read the store only where they must, each in its own ``try``: while the store
  is down ``/metrics`` still answers, with ``semcache_store_up 0``.

Label values a caller chooses (the model, the tenant of a pass-through key) are capped
(``LabelCap``): past the cap new values read ``other``, so a stream of invented model names or
keys cannot grow the scrape without bound. A tenant is its name from the client keys file, or
the short hash ``k-<8 hex>`` of a pass-through key: never a key.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any, Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from .. import __version__

__all__ = ["CONTENT_TYPE_LATEST", "LabelCap", "Metrics", "TimedEmbedder", "result_label", "route_label", "tenant_label"]

log = logging.getLogger("semcache")

# The answer routes and the sidecar's own: anything else is counted as "other" (a 404 scan must
# not make one series per path).
ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/embeddings", "/v1/messages",
          "/v1/messages/count_tokens", "/v1/models",
          "/semcache/stats", "/semcache/entries", "/semcache/feedback", "/semcache/ui", "/semcache/ui/login",
          "/semcache/ui/logout", "/metrics", "/healthz", "/readyz")
ROUTE_OF_KIND = {"chat": "/v1/chat/completions", "completions": "/v1/completions", "responses": "/v1/responses",
                 "embeddings": "/v1/embeddings", "messages": "/v1/messages"}

# Buckets in seconds. A lookup is ~0.1 ms (exact) to ~10 ms (embedding, index search, checks) on a CPU
# (benchmarks/results/lookup.json); an upstream call 0.1 s to a minute; a request either.
LOOKUP_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
EMBED_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
REQUEST_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
UPSTREAM_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)

MAX_TENANTS = 200
MAX_MODELS = 50

# Stats counters exported from this process's counts: metric name (without _total), HELP, and
# the counters it gathers with the extra label each sets. Tenant and model label every one.
_FROM_STATS: tuple[tuple[str, str, Mapping[str, Mapping[str, str]]], ...] = (
    ("semcache_tokens_saved", "Tokens not spent upstream because a cache hit served the stored answer (the entry's "
     "stored usage), by type: prompt or completion.",
     {"prompt_tokens_saved": {"type": "prompt"}, "completion_tokens_saved": {"type": "completion"}}),
    ("semcache_cost_saved_dollars", "US dollars not spent upstream thanks to cache hits (stored usage priced by the "
     "pricing table).", {"cost_saved_usd": {}}),
    ("semcache_upstream_calls", "Upstream calls that returned an answer (one per miss; retries are not calls).",
     {"upstream_calls": {}}),
    ("semcache_upstream_attempts", "HTTP attempts sent upstream, retries included.", {"upstream_attempts": {}}),
    ("semcache_upstream_retries", "Upstream attempts retried after a 408/409/429/5xx or a connection error.",
     {"retries": {}}),
    ("semcache_upstream_tokens", "Tokens spent upstream (the answers' usage), by type: prompt or completion.",
     {"upstream_prompt_tokens": {"type": "prompt"}, "upstream_completion_tokens": {"type": "completion"}}),
    ("semcache_cost_spent_dollars", "US dollars spent upstream (usage priced by the pricing table).",
     {"cost_spent_usd": {}}),
    ("semcache_upstream_rate_limited", "429 rate-limit answers received from the upstream (each retried after its "
     "retry-after; never passed to the caller while attempts remain).", {"rate_limited_429": {}}),
    ("semcache_upstream_quota_exhausted", "insufficient_quota answers from the upstream (billing: never retried; the "
     "caller gets the error, or a stale answer).", {"quota_exhausted": {}}),
    ("semcache_ratelimit_waits", "Upstream calls the client's own limiter held back to stay under rpm/tpm.",
     {"ratelimit_waits": {}}),
    ("semcache_ratelimit_wait_seconds", "Seconds upstream calls waited in the client's own limiter (rpm/tpm pacing).",
     {"ratelimit_wait_s": {}}),
    ("semcache_budget_alerts", "Budgets that crossed their alert fraction (budget_alert_fraction) this period; counted by "
     "the one process that noticed first.", {"budget_alerts": {}}),
    ("semcache_budget_stops", "Upstream calls refused because a token or dollar budget is spent (the sidecar answers "
     "from the cache only).", {"budget_stops": {}}),
    ("semcache_lookup_errors", "Lookups that failed and went upstream instead (fail open), by kind: environment (store, "
     "model, disk) or bug.", {"lookup_errors": {"kind": "environment"}, "lookup_bugs": {"kind": "bug"}}),
)


class LabelCap:
    """Return a label value as is for the first ``limit`` distinct values, then ``"other"`` for new ones."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._seen:
            return value
        with self._lock:
            if len(self._seen) >= self.limit:
                return "other"
            self._seen.add(value)
            return value


def tenant_label(tenant: str) -> str:
    """A tenant as a label: its name (client keys file), ``k-<8 hex>`` for a key's hash, ``default`` for none."""
    if not tenant:
        return "default"
    if tenant.startswith("k-") and len(tenant) == 26:  # keys.tenant_from_api_key: a hash, shortened for reading
        return tenant[:10]
    return tenant[:64]


def route_label(path: str) -> str:
    """A request path as a label: one of ``ROUTES``, ``/v1/models/{model}``, or ``other``."""
    if path in ROUTES:
        return path
    return "/v1/models/{model}" if path.startswith("/v1/models/") else "other"


def result_label(result: Any) -> str:
    """What answered a request: exact/semantic (hits), stale, miss, follower (shared another miss's call), bypass."""
    if result.status == "hit":
        return result.hit.kind if result.hit is not None else "exact"
    if result.status in ("stale", "bypass"):
        return result.status
    return "follower" if result.shared else "miss"


class TimedEmbedder:
    """Wrap an ``Embedder``: every model call is observed by ``observe(seconds)`` (the embedding histogram)."""

    def __init__(self, inner: Any, observe: Callable[[float], None]) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self._observe = observe

    def __repr__(self) -> str:
        return repr(self.inner)

    def __getattr__(self, name: str) -> Any:  # the wrapped embedder's extras (its backend, its batch size)
        return getattr(self.inner, name)

    def embed(self, texts):
        started = time.perf_counter()
        try:
            return self.inner.embed(texts)
        finally:
            self._observe(time.perf_counter() - started)


class Metrics:
    """One sidecar's metrics: its instruments, its registry (never the process-global one), its scrape.

    ``watch(cache, budgets=, alerts=)`` binds the engine (its ``stats_recorder`` gives this
    process's counts); ``budgets()`` returns the budget guards to report as ``(tenant label,
    BudgetGuard)``; ``alerts()`` the counts of alerts raised and failed to deliver, by event.
    ``settings`` name the store for ``semcache_info``.
    """

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.cache: Any = None
        self._budgets: Callable[[], Iterable[tuple[str, Any]]] = lambda: ()
        self._alerts: Callable[[], tuple[Mapping[str, int], Mapping[str, int]]] | None = None
        self.tenants = LabelCap(MAX_TENANTS)
        self.models = LabelCap(MAX_MODELS)
        # The instruments live in ``_instruments``; the scraped ``registry`` shows them without their
        # ``_created`` series (one more series per counter and histogram that dashboards never read).
        r = self._instruments = CollectorRegistry(auto_describe=False)
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_WithoutCreated(r))
        self.requests = Counter(
            "semcache_requests", "Requests answered by this process, by route, tenant, model and result: exact and "
            "semantic are cache hits, stale an expired answer served because the upstream failed, miss an upstream "
            "call, follower a miss that shared an identical in-flight miss's call, bypass a Cache-Control: no-cache "
            "request, error an error answer.", ["route", "tenant", "model", "result"], registry=r)
        self.request_seconds = Histogram(
            "semcache_request_duration_seconds", "Seconds from a request's arrival to its answer's headers (a streamed "
            "miss: to its first chunk), by route and result.", ["route", "result"], buckets=REQUEST_BUCKETS, registry=r)
        self.http = Counter("semcache_http_responses", "HTTP responses sent, by route and status code (every route; "
                            "429 and 5xx are what callers saw).", ["route", "status"], registry=r)
        self.lookup_seconds = Histogram(
            "semcache_lookup_duration_seconds", "Seconds one cache lookup took (exact tier, then embedding, index search "
            "and match policy), by outcome: exact, semantic, miss or error.", ["outcome"], buckets=LOOKUP_BUCKETS,
            registry=r)
        self.upstream_seconds = Histogram(
            "semcache_upstream_duration_seconds", "Seconds one upstream call took, pacing waits and retries included "
            "(a stream: until its last chunk), by model and outcome: ok or error.", ["model", "outcome"],
            buckets=UPSTREAM_BUCKETS, registry=r)
        self.embed_seconds = Histogram(
            "semcache_embedding_duration_seconds", "Seconds one embedding model call took (a batch of concurrent "
            "lookups' texts).", buckets=EMBED_BUCKETS, registry=r)

    def watch(self, cache: Any, *, budgets: Callable[[], Iterable[tuple[str, Any]]] = lambda: (),
              alerts: Callable[[], tuple[Mapping[str, int], Mapping[str, int]]] | None = None) -> "Metrics":
        """Export ``cache``'s counts and state and time its lookups; return self."""
        self.cache, self._budgets, self._alerts = cache, budgets, alerts
        self.registry.register(_Collector(self))
        cache.lookup_observer = self._looked
        return self

    def timed(self, embedder: Any) -> TimedEmbedder:
        """Return ``embedder`` with its model calls observed by the embedding histogram."""
        return TimedEmbedder(embedder, self.embed_seconds.observe)

    def _looked(self, outcome: str, seconds: float) -> None:
        self.lookup_seconds.labels(outcome).observe(seconds)

    def model_label(self, body: Mapping[str, Any] | None) -> str:
        model = body.get("model") if isinstance(body, Mapping) else None
        return self.models(model[:64]) if isinstance(model, str) and model else "unknown"

    def answered(self, route: str, tenant: str | None, body: Mapping[str, Any] | None, result: str, seconds: float) -> None:
        """Count one answered request and its latency."""
        self.requests.labels(route, self.tenants(tenant_label(tenant)) if tenant is not None else "unknown",
                             self.model_label(body), result).inc()
        self.request_seconds.labels(route, result).observe(seconds)

    def upstream(self, body: Mapping[str, Any] | None, ok: bool, seconds: float) -> None:
        self.upstream_seconds.labels(self.model_label(body), "ok" if ok else "error").observe(seconds)

    def scrape(self) -> bytes:
        """Return the text exposition (blocking: the gauges may read the store; call it in a thread)."""
        return generate_latest(self.registry)

    def middleware(self, app: Any) -> "_CountResponses":
        return _CountResponses(app, self.http)


class _WithoutCreated:
    """A collector that yields another registry's families without their ``_created`` samples."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def collect(self):
        for family in self.registry.collect():
            family.samples = [s for s in family.samples if not s.name.endswith("_created")]
            yield family


class _CountResponses:
    """ASGI middleware: count every HTTP response by route and status."""

    def __init__(self, app: Any, counter: Counter) -> None:
        self.app, self.counter = app, counter

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = route_label(scope.get("path", ""))

        async def counted(message: dict) -> None:
            if message["type"] == "http.response.start":
                self.counter.labels(route, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted)


class _Collector:
    """Families read at scrape time: this process's counts from ``Stats``, the info, the store, the budgets, alerts."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self):
        m = self.metrics
        yield from self._counts(m.cache.stats_recorder.process_counts())
        yield from self._state()
        if m._alerts is not None:
            raised, failed = m._alerts()
            for name, help_text, counts in (
                    ("semcache_alerts", "Alerts raised by this process, by event (budget_alert, budget_stop, "
                     "quota_exhausted, rate_limited): logged, and posted to alert_webhook_url when set; once per event "
                     "across the replicas sharing the store.", raised),
                    ("semcache_alert_failures", "Alerts whose webhook POST failed (timeout, refused, non-2xx), by event.",
                     failed)):
                family = CounterMetricFamily(name, help_text, labels=["event"])
                for event, value in sorted(counts.items()):
                    family.add_metric([event], float(value))
                yield family

    def _counts(self, counts: Mapping[tuple[str, str, str], float]):
        m = self.metrics
        by_counter: dict[str, dict[tuple[str, str], float]] = defaultdict(lambda: defaultdict(float))
        errors: dict[str, float] = defaultdict(float)
        for (tenant, model, counter), value in counts.items():
            if counter.startswith("errors."):
                errors[counter.removeprefix("errors.")[:64]] += value
            else:
                by_counter[counter][(m.tenants(tenant_label(tenant)), m.models(model[:64]) if model else "unknown")] += value
        for name, help_text, sources in _FROM_STATS:
            extra = sorted({k for labels in sources.values() for k in labels})
            family = CounterMetricFamily(name, help_text, labels=["tenant", "model", *extra])
            for counter, labels in sources.items():
                for (tenant, model), value in sorted(by_counter.get(counter, {}).items()):
                    family.add_metric([tenant, model, *(labels[k] for k in extra)], value)
            yield family
        family = CounterMetricFamily("semcache_errors", "Failures by exception class: lookups failed open, answers not "
                                     "stored, upstream errors (the caller got an error or a stale answer).", labels=["error"])
        for error, value in sorted(errors.items()):
            family.add_metric([error], value)
        yield family

    def _state(self):
        m = self.metrics
        cache, settings = m.cache, m.settings
        policy = cache.policy
        info = InfoMetricFamily("semcache", "The sidecar's build and setup: version, embedding model, store kind "
                                "(disk or redis), match policy and its threshold.")
        info.add_metric([], {"version": __version__, "model": str(cache.embedder.model_id),
                             "store": "redis" if settings.store else "disk", "policy": str(policy.to_dict().get("kind", "cosine")),
                             "threshold": f"{policy.threshold:g}", "embed_backend": settings.embed_backend})
        yield info
        up = 1.0
        try:
            cache.store.head()
        except Exception as exc:  # any failure: the store cannot be used now
            log.debug("semcache metrics: the store does not answer: %s: %s", type(exc).__name__, exc)
            up = 0.0
        yield GaugeMetricFamily("semcache_store_up", "1 when the store (cache directory or Redis) answered this scrape, "
                                "else 0 (hits then come from this process's recent entries; counts wait in memory).",
                                value=up)
        entries, size = cache.size
        yield GaugeMetricFamily("semcache_entries", "Entries in the cache, as this process last synced them from the "
                                "store (a shared store's size: take max() over replicas, not sum()).", value=float(entries))
        yield GaugeMetricFamily("semcache_entries_size_bytes", "Approximate bytes of the cached entries (answers, query "
                                "texts, vectors), as this process last synced them.", value=float(size))
        yield from self._budget_state()

    def _budget_state(self):
        spent = GaugeMetricFamily("semcache_budget_spent", "What a budget has spent (or holds reserved) this period, in "
                                  "its unit (tokens or usd, see the budget label); tenant 'all' is the sidecar's own budget.",
                                  labels=["tenant", "budget"])
        limit = GaugeMetricFamily("semcache_budget_limit", "A budget's limit for its period, in its unit.",
                                  labels=["tenant", "budget"])
        ratio = GaugeMetricFamily("semcache_budget_used_ratio", "Fraction of a budget spent this period (1 = spent: "
                                  "upstream calls are refused until the next period).", labels=["tenant", "budget"])
        for tenant, guard in self.metrics._budgets():
            try:
                state = guard.state()
            except Exception as exc:  # the ledger is the store: down with it
                log.debug("semcache metrics: budget state unavailable: %s: %s", type(exc).__name__, exc)
                continue
            for name, budget in state.items():
                if budget["limit"] is None:
                    continue
                spent.add_metric([tenant, name], float(budget["spent"]))
                limit.add_metric([tenant, name], float(budget["limit"]))
                ratio.add_metric([tenant, name], float(budget["fraction"] or 0.0))
        yield spent
        yield limit
        yield ratio
