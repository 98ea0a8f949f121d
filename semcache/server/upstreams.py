"""Pick the upstream client for a caller: its own API key (pass-through) or the sidecar's.

``OpenAIUpstream`` holds one key per endpoint, so a caller's own key gets its own client, kept in
a small LRU by the key's hash (never the key itself as a name anywhere). Each of those clients
paces itself with its own limiter, which matches the provider: its RPM/TPM limits are per key.
With a Redis store that limiter is shared by every replica (``RedisRateLimiter``, named by a
hash of the key): N replicas pace under one quota, not N.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from typing import Any, Mapping

import httpx2

from ..config import Settings
from ..errors import AuthenticationFailed
from ..keys import tenant_from_api_key
from ..stats import Stats
from ..wiring import budget_from_settings, build_upstream
from ..upstream.pricing import Pricing

__all__ = ["UpstreamPool"]


class UpstreamPool:
    """Return the upstream for a caller's key; ``fixed`` (tests, embedding) answers every caller.

    With ``settings.pass_through_key`` a caller's bearer key is forwarded (one client per key
    hash, at most ``size``); otherwise, or when the caller sends none, the sidecar's own key
    (``own_key``, read from the environment variable ``settings.upstream_api_key_env``) is used.
    All clients share one connection pool, ``http``; ``aclose`` closes it (on the server's loop).
    """

    def __init__(self, settings: Settings, *, own_key: str | None, fixed: Any = None, stats: Stats | None = None,
                 pricing: Pricing | None = None, ledger: Any = None, store: Any = None, size: int = 64) -> None:
        self.settings = settings
        self._own_key = own_key
        self._fixed = fixed
        self._stats, self._pricing = stats, pricing
        self._store = store  # the cache's store: with Redis, the shared limiters live there
        self._budget = budget_from_settings(settings, pricing=pricing, stats=stats, ledger=ledger) if fixed is None else None
        self._size = size
        self._clients: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.http = httpx2.AsyncClient(limits=httpx2.Limits(max_connections=256, max_keepalive_connections=64),
                                       timeout=settings.upstream_timeout)

    @property
    def budget(self) -> Any:
        """The sidecar's own budget guard (``BudgetGuard``), or None when no budget is configured."""
        return self._budget

    async def aclose(self) -> None:
        """Close the connections to the upstream."""
        await self.http.aclose()

    def __repr__(self) -> str:
        return f"UpstreamPool(base_url={self.settings.upstream_base_url!r}, clients={len(self._clients)}, fixed={self._fixed!r})"

    def key_for(self, caller_key: str | None) -> str:
        """Return the API key a caller's request goes upstream with; raise ``AuthenticationFailed`` if none."""
        key = caller_key if caller_key and self.settings.pass_through_key else self._own_key
        if not key:
            raise AuthenticationFailed(
                "no API key for the upstream: send 'Authorization: Bearer <key>' or set the environment variable "
                f"{self.settings.upstream_api_key_env} for the sidecar", status_code=401, code="invalid_api_key")
        return key

    def for_caller(self, caller_key: str | None) -> Any:
        """Return the upstream client that answers this caller."""
        if self._fixed is not None:
            return self._fixed
        key = self.key_for(caller_key)
        name = tenant_from_api_key(key)
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self._clients[name] = build_upstream(self.settings, key, stats=self._stats, pricing=self._pricing, budget=self._budget,
                                                             http=self.http, store=self._store)
                while len(self._clients) > self._size:
                    self._clients.popitem(last=False)
            self._clients.move_to_end(name)
            return client


# What an API key can be: visible ASCII. Anything else cannot be sent on in a header (a byte
# over 0x7f made the upstream client raise UnicodeEncodeError: a 500) and is no key anyway.
_KEY = re.compile(r"[\x21-\x7e]{1,1024}")


def bearer(headers: Mapping[str, str]) -> str | None:
    """Return the bearer token of an ``Authorization`` header (or Azure's ``api-key``), else None.

    Raises ``AuthenticationFailed`` (401 ``invalid_api_key``) for a token that is not 1-1024
    visible ASCII characters; the message never repeats it.
    """
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        token = token.strip()
    else:
        token = headers.get("api-key") or ""
    if not token:
        return None
    if not _KEY.fullmatch(token):
        raise AuthenticationFailed("the API key has characters no API key has (visible ASCII only, at most 1024)",
                                   status_code=401, code="invalid_api_key")
    return token
