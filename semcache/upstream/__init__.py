"""Reach the provider at a pace it accepts: client, limiter, retries, budget, pricing, mock.

``build_upstream(settings, api_key, ...)`` makes the client the CLI, the sidecar and the
benchmarks use; ``api_key_from`` and ``budget_from_settings`` read the rest of the settings.
"""

from __future__ import annotations

from typing import Mapping

from ..errors import ConfigError
from .budget import BudgetGuard
from .client import Endpoint, FunctionUpstream, OpenAIUpstream, Upstream, UpstreamResponse, translate_error
from .headers import RateLimitInfo, parse_ratelimit_headers
from .limiter import Limiter, RateLimiter, Reservation
from .pricing import Price, Pricing
from .retry import RetryPolicy
from .singleflight import SingleFlight

__all__ = [
    "BudgetGuard",
    "Endpoint",
    "FunctionUpstream",
    "Limiter",
    "OpenAIUpstream",
    "Price",
    "Pricing",
    "RateLimitInfo",
    "RateLimiter",
    "Reservation",
    "RetryPolicy",
    "SingleFlight",
    "Upstream",
    "UpstreamResponse",
    "api_key_from",
    "budget_from_settings",
    "build_upstream",
    "parse_ratelimit_headers",
    "translate_error",
]


def api_key_from(settings, environ: Mapping[str, str]) -> str:
    """Return the provider key from the environment variable ``settings.upstream_api_key_env`` names."""
    key = environ.get(settings.upstream_api_key_env)
    if not key:
        raise ConfigError(f"no upstream API key: set the environment variable {settings.upstream_api_key_env}")
    return key


def budget_from_settings(settings, *, pricing: Pricing | None = None, stats=None, ledger=None) -> BudgetGuard | None:
    """Return the budget guard the settings ask for, or None when no budget is configured.

    ``ledger`` (the cache's store) keeps the spending across restarts and processes."""
    limits = (settings.budget_tokens_per_day, settings.budget_usd_per_day, settings.budget_tokens_per_month, settings.budget_usd_per_month)
    if all(limit is None for limit in limits):
        return None
    return BudgetGuard(*limits, alert_fraction=settings.budget_alert_fraction, pricing=pricing, stats=stats, ledger=ledger)


def build_upstream(settings, api_key: str, *, stats=None, pricing: Pricing | None = None, budget: BudgetGuard | None = None,
                   http=None) -> OpenAIUpstream:
    """Return the paced client for ``settings.upstream_base_url`` with ``api_key`` and the settings' limits."""
    return OpenAIUpstream(
        Endpoint(settings.upstream_base_url, api_key), rpm=settings.rpm, tpm=settings.tpm,
        retry=RetryPolicy(max_attempts=settings.max_attempts, deadline=settings.deadline), budget=budget,
        fallback_models=settings.fallback_models, stats=stats,
        pricing=pricing or (Pricing.from_file(settings.pricing) if settings.pricing else None),
        timeout=settings.upstream_timeout, async_http_client=http,
    )
