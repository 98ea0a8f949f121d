"""The exception tree of semcache.

Every error semcache raises on purpose is a ``SemcacheError``; foreign exceptions (the openai
SDK, diskcache, FAISS, sentence-transformers) are translated at one boundary each and chained
with ``raise ... from exc``.

    SemcacheError
    ├── ConfigError            a setting, policy file or cache directory that cannot be used
    ├── RequestError           a request semcache cannot key (names the field)
    ├── EmbeddingError         the embedder failed or returned the wrong shape
    ├── StoreError             the store cannot be read or written
    └── UpstreamError          the provider did not answer usefully
        ├── RateLimited            over the RPM/TPM limit; ``retry_after`` seconds
        │   └── DailyLimitReached      over a per-day limit (RPD/TPD): never retried in a loop
        ├── QuotaExhausted         insufficient_quota / billing: never retried
        ├── BudgetExceeded         semcache's own budget guard stopped the call
        ├── AuthenticationFailed   401/403 from the provider
        ├── UpstreamTimeout        no answer within the deadline
        ├── UpstreamConnectionError the provider could not be reached
        └── UpstreamStatusError    any other non-2xx answer, or a body that is not valid

A cache miss is not an error: lookups return ``None``.
"""

from __future__ import annotations

__all__ = [
    "AuthenticationFailed",
    "BudgetExceeded",
    "ConfigError",
    "DailyLimitReached",
    "EmbeddingError",
    "QuotaExhausted",
    "RateLimited",
    "RequestError",
    "SemcacheError",
    "StoreError",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamStatusError",
    "UpstreamTimeout",
]


class SemcacheError(Exception):
    """Base of every error semcache raises."""


class ConfigError(SemcacheError):
    """A setting, policy file, model path or cache directory cannot be used as given."""


class RequestError(SemcacheError, ValueError):
    """A request is malformed; the message names the field and what was expected."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class EmbeddingError(SemcacheError):
    """The embedder failed, or returned vectors of the wrong shape."""


class StoreError(SemcacheError):
    """The store could not be read or written."""


class UpstreamError(SemcacheError):
    """The upstream provider did not give a usable answer."""

    def __init__(self, message: str, *, status_code: int | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code


class RateLimited(UpstreamError):
    """Over the requests- or tokens-per-minute limit; ``retry_after`` is in seconds."""

    def __init__(self, message: str, *, retry_after: float, status_code: int | None = 429, code: str | None = "rate_limit_exceeded") -> None:
        super().__init__(message, status_code=status_code, code=code)
        self.retry_after = retry_after


class DailyLimitReached(RateLimited):
    """Over a requests- or tokens-per-day limit (RPD/TPD); ``retry_after`` is the wait the provider named.

    Retrying within a call cannot help (the wait is minutes to hours): it goes to a fallback
    route, or to a stale answer, or back to the caller with ``retry-after``."""


class QuotaExhausted(UpstreamError):
    """The account's quota or billing limit is spent; retrying cannot help."""


class BudgetExceeded(UpstreamError):
    """semcache's budget guard refused the call: the configured budget is spent."""


class AuthenticationFailed(UpstreamError):
    """The provider rejected the credentials (401/403)."""


class UpstreamTimeout(UpstreamError):
    """The provider did not answer within the deadline."""


class UpstreamConnectionError(UpstreamError):
    """The provider could not be reached (refused, reset, DNS)."""


class UpstreamStatusError(UpstreamError):
    """Any other non-2xx answer, or a 2xx answer whose body is not what the API promises."""
