"""Pick the upstream client for a request: its route (by model), and the caller's key or the route's.

Every request goes to the route its model matches (``upstream.routes``; the ``default`` route is
``upstream_base_url``), then to that route's fallbacks. A caller's own key is forwarded only to a
route that allows it (``pass_through_key``: the default route by the setting of that name, a table
route only when it says so), never to another provider: an OpenAI key must not reach DeepSeek.

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
from ..wiring import budget_from_settings, build_upstream, routes_from_settings
from ..upstream.pricing import Pricing
from ..upstream.routes import Link, Rests, Route, RoutedUpstream

__all__ = ["UpstreamPool", "bearer", "route_key"]


class UpstreamPool:
    """Return the upstream for a caller's key; ``fixed`` (tests, embedding) answers every caller.

    With ``settings.pass_through_key`` a caller's bearer key is forwarded (one client per key
    hash, at most ``size``); otherwise, or when the caller sends none, the sidecar's own key
    (``own_key``, read from the environment variable ``settings.upstream_api_key_env``) is used.
    All clients share one connection pool, ``http``; ``aclose`` closes it (on the server's loop).
    ``environ`` holds the keys of the routes table (``key_env`` of each route), read once here.
    Raises ``ConfigError`` for a routes table that cannot be used.
    """

    def __init__(self, settings: Settings, *, own_key: str | None, fixed: Any = None, stats: Stats | None = None,
                 pricing: Pricing | None = None, ledger: Any = None, store: Any = None, size: int = 64,
                 environ: Mapping[str, str] | None = None) -> None:
        self.settings = settings
        self.routes = routes_from_settings(settings)
        self._route_keys = {r.name: (environ or {}).get(r.key_env) or None for r in self.routes.routes if r.key_env}
        self._rests = Rests()
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
        """Return the upstream client of the default route for this caller."""
        if self._fixed is not None:
            return self._fixed
        return self._client(self.routes.default, self.key_for(caller_key))

    def route_key(self, route: Route, caller_key: str | None) -> str | None:
        """Return the key a request to ``route`` goes with: the caller's where the route allows it, else the route's own."""
        if route is self.routes.default:
            return caller_key if caller_key and self.settings.pass_through_key else self._own_key
        if route.pass_through_key and caller_key:
            return caller_key
        return self._route_keys.get(route.name)

    def for_request(self, caller_key: str | None, model: Any, kind: str) -> Any:
        """Return the upstream that answers a ``kind`` request for ``model``: its route, then the route's fallbacks.

        Raises ``RequestError`` when no route answers the kind (a Messages API request without an
        Anthropic route), ``AuthenticationFailed`` when the route has no key. A fallback without a key is skipped.
        """
        if self._fixed is not None:
            return self._fixed
        route = self.routes.match(model, kind)
        links = []
        for target, other_model in self.routes.chain(route, kind):
            key = self.route_key(target, caller_key)
            if key is None and target is route:
                if route is self.routes.default:
                    self.key_for(caller_key)  # raises its own message
                raise AuthenticationFailed(
                    f"no API key for route {route.name!r}: set the environment variable {route.key_env} for the sidecar"
                    + (" or send the caller's key" if route.pass_through_key else ""), status_code=401, code="invalid_api_key")
            if key is not None:
                links.append(Link(target.name, self._client(target, key), other_model))
        return RoutedUpstream(links, rests=self._rests, stats=self._stats)

    def _client(self, route: Route, key: str) -> Any:
        """Return the paced client of ``route`` with ``key`` (one per route and key hash, at most ``size``)."""
        name = route.name + ":" + tenant_from_api_key(key)
        with self._lock:
            client = self._clients.get(name)
            if client is None:
                client = self._clients[name] = build_upstream(self.settings, key, stats=self._stats, pricing=self._pricing, budget=self._budget,
                                                             http=self.http, store=self._store, route=route)
                while len(self._clients) > self._size:
                    self._clients.popitem(last=False)
            self._clients.move_to_end(name)
            return client


def route_key(settings: Settings, environ: Mapping[str, str]) -> str | None:
    """Return a key the routes table gives the sidecar (the first route's whose ``key_env`` is set), else None."""
    for route in routes_from_settings(settings).routes:
        if route.key_env and environ.get(route.key_env):
            return environ[route.key_env]
    return None


# What an API key can be: visible ASCII. Anything else cannot be sent on in a header (a byte
# over 0x7f made the upstream client raise UnicodeEncodeError: a 500) and is no key anyway.
_KEY = re.compile(r"[\x21-\x7e]{1,1024}")


def bearer(headers: Mapping[str, str]) -> str | None:
    """Return the bearer token of an ``Authorization`` header (or Azure's ``api-key``, Anthropic's ``x-api-key``), else None.

    Raises ``AuthenticationFailed`` (401 ``invalid_api_key``) for a token that is not 1-1024
    visible ASCII characters; the message never repeats it.
    """
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        token = token.strip()
    else:
        token = headers.get("api-key") or headers.get("x-api-key") or ""
    if not token:
        return None
    if not _KEY.fullmatch(token):
        raise AuthenticationFailed("the API key has characters no API key has (visible ASCII only, at most 1024)",
                                   status_code=401, code="invalid_api_key")
    return token
