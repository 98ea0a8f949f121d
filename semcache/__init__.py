"""semcache: a semantic cache for LLM APIs — right answers on hits, paced quota on misses."""

from .config import Settings
from .decorator import CacheInfo, cached
from .embedding import Embedder, SentenceTransformerEmbedder
from .engine import Hit, Result, SemanticCache
from .errors import (
    AuthenticationFailed,
    BudgetExceeded,
    ConfigError,
    DailyLimitReached,
    EmbeddingError,
    QuotaExhausted,
    RateLimited,
    RequestError,
    SemcacheError,
    StoreError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from .keys import RequestKey, normalize
from .matching import Decision, MatchPolicy
from .storage import Entry

__version__ = "0.1.0"

__all__ = [
    "AuthenticationFailed",
    "BudgetExceeded",
    "CacheInfo",
    "ConfigError",
    "DailyLimitReached",
    "Decision",
    "Embedder",
    "EmbeddingError",
    "Entry",
    "Hit",
    "MatchPolicy",
    "QuotaExhausted",
    "RateLimited",
    "RequestError",
    "RequestKey",
    "Result",
    "SemanticCache",
    "SemcacheError",
    "SentenceTransformerEmbedder",
    "Settings",
    "StoreError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "cached",
    "normalize",
]
