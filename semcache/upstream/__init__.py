"""Reach the provider at a pace it accepts: client, limiter, retries, budget, pricing, mock.

``build_upstream(settings, environ, stats=...)`` makes the client the CLI and the sidecar use.
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
    "build_upstream",
    "parse_ratelimit_headers",
    "translate_error",
]


def build_upstream(settings, environ: Mapping[str, str], *, stats=None, api_key: str | None = None) -> OpenAIUpstream:
    """Build the paced client from ``Settings``; the key is read from ``environ`` (or given)."""
    key = api_key if api_key is not None else environ.get(settings.upstream_api_key_env)
    if not key:
        raise ConfigError(f"no upstream API key: set the environment variable {settings.upstream_api_key_env}")
    pricing = Pricing.from_file(settings.pricing) if settings.pricing else Pricing()
    budget = None
    limits = (settings.budget_tokens_per_day, settings.budget_usd_per_day, settings.budget_tokens_per_month, settings.budget_usd_per_month)
    if any(limit is not None for limit in limits):
        budget = BudgetGuard(*limits, alert_fraction=settings.budget_alert_fraction, pricing=pricing, stats=stats)
    return OpenAIUpstream(
        Endpoint(settings.upstream_base_url, key), rpm=settings.rpm, tpm=settings.tpm,
        retry=RetryPolicy(max_attempts=settings.max_attempts, deadline=settings.deadline), budget=budget,
        fallback_models=settings.fallback_models, stats=stats, pricing=pricing, timeout=settings.upstream_timeout,
    )
