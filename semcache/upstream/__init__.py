"""Reach the provider at a pace it accepts: client, limiter, retries, budget, pricing, tokens.

The names below are imported on first use, so ``import semcache`` (or the engine reading
``semcache.upstream.pricing``) does not import the openai SDK; only the client does.
The factories that read settings live in ``semcache.wiring``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .budget import BudgetGuard
    from .client import Endpoint, FunctionUpstream, OpenAIUpstream, Upstream, UpstreamResponse, translate_error
    from .headers import RateLimitInfo, parse_ratelimit_headers
    from .limiter import Limiter, RateLimiter, Reservation
    from .pricing import Price, Pricing
    from .retry import RetryPolicy

_WHERE = {
    "BudgetGuard": "budget",
    "Endpoint": "client", "FunctionUpstream": "client", "OpenAIUpstream": "client", "Upstream": "client",
    "UpstreamResponse": "client", "translate_error": "client",
    "RateLimitInfo": "headers", "parse_ratelimit_headers": "headers",
    "Limiter": "limiter", "RateLimiter": "limiter", "Reservation": "limiter",
    "Price": "pricing", "Pricing": "pricing",
    "RetryPolicy": "retry",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'semcache.upstream' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
