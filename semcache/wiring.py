"""Every "from settings" factory in one place: the embedder, the policy, the cache, the upstream.

The CLI, the sidecar and the tools build their parts here from one ``Settings``; the parts
themselves take explicit arguments and never read settings or the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

from .config import Settings
from .embedding.adapter import TUNED_ADAPTER
from .embedding.base import Embedder
from .embedding.sentence import SentenceTransformerEmbedder
from .engine import SemanticCache
from .errors import ConfigError
from .matching.policy import MatchPolicy
from .upstream.budget import BudgetGuard
from .upstream.pricing import Pricing

__all__ = [
    "api_key_from",
    "budget_from_settings",
    "build_upstream",
    "cache_from_settings",
    "embedder_from_settings",
    "policy_from_settings",
    "pricing_from_settings",
]


def embedder_from_settings(settings: Settings) -> SentenceTransformerEmbedder:
    """The embedder ``settings`` name: its model, with the adapter ``semcache tune`` left in the
    cache directory when ``adapter`` is "default" and there is one, else the shipped adapter."""
    adapter: str = settings.adapter
    tuned = Path(settings.cache_dir).expanduser() / TUNED_ADAPTER
    if adapter == "default" and tuned.is_file():
        adapter = str(tuned)
    return SentenceTransformerEmbedder(settings.model, adapter=adapter, backend=settings.embed_backend)


def policy_from_settings(settings: Settings) -> MatchPolicy:
    """Return the policy file's policy (or the default), with the threshold override applied."""
    policy = MatchPolicy.load(settings.policy) if settings.policy else MatchPolicy()
    return policy if settings.threshold is None else policy.with_threshold(settings.threshold)


def pricing_from_settings(settings: Settings) -> Pricing | None:
    """Return the pricing table the settings name, or None for the built-in one."""
    return Pricing.from_file(settings.pricing) if settings.pricing else None


def cache_from_settings(settings: Settings, *, embedder: Embedder | None = None, upstream: Any = None,
                        **overrides: Any) -> SemanticCache:
    """Build a cache from ``settings`` (the CLI and the sidecar do); ``overrides`` win."""
    options = dict(
        embedder=embedder if embedder is not None else embedder_from_settings(settings),
        policy=policy_from_settings(settings), upstream=upstream, ttl=settings.ttl,
        sliding_ttl=settings.sliding_ttl, stale_ttl=settings.stale_ttl, max_entries=settings.max_entries,
        max_bytes=settings.max_bytes, top_k=settings.top_k, semantic_max_temperature=settings.semantic_max_temperature,
        stale_if_error=settings.stale_if_error, tenant=settings.tenant, embed_cache_size=settings.embed_cache_size,
        pricing=pricing_from_settings(settings),
    )
    options.update(overrides)
    return SemanticCache(settings.cache_dir, **options)


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


def build_upstream(settings: Settings, api_key: str, *, stats=None, pricing: Pricing | None = None,
                   budget: BudgetGuard | None = None, http=None):
    """Return the paced client for ``settings.upstream_base_url`` with ``api_key`` and the settings' limits.

    Imports the openai SDK (only the paths that reach a provider do)."""
    from .upstream.client import Endpoint, OpenAIUpstream
    from .upstream.retry import RetryPolicy

    return OpenAIUpstream(
        Endpoint(settings.upstream_base_url, api_key), rpm=settings.rpm, tpm=settings.tpm,
        retry=RetryPolicy(max_attempts=settings.max_attempts, deadline=settings.deadline), budget=budget,
        fallback_models=settings.fallback_models, stats=stats,
        pricing=pricing or pricing_from_settings(settings),
        timeout=settings.upstream_timeout, async_http_client=http,
    )
