"""Several upstreams behind one cache: a routes table (model -> provider) and fallbacks per route.

A ``Route`` says where requests for some models go: a base URL that speaks OpenAI's API (OpenAI,
Gemini, DeepSeek, Qwen, Moonshot, Zhipu, a local server...) or Anthropic's Messages API, the
environment variable holding its key (never the key), its limits (rpm, tpm, rpd, tpd), its prices,
and an ordered list of fallback routes. ``RouteTable.match(model, kind)`` picks the first route one
of whose glob patterns matches the model; no match goes to the ``default`` route (the settings'
``upstream_base_url``). A Messages API request only goes to a route with ``api = "anthropic"``.

``RoutedUpstream`` answers from the route's upstream, else from its fallbacks in order, when the
failure is the provider's (5xx, 529 overloaded, timeouts, connection errors, a spent quota, a
per-day limit), never when it is the request's (400, 401, 404) or a per-minute 429 that the
client's own retries could not outwait. A route that answered a per-day limit is rested until the
wait it named is over: no call goes to it meanwhile (``Rests``), its fallbacks answer instead.
"""

from __future__ import annotations

import fnmatch
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Callable, Iterator, Mapping, Sequence

from ..errors import (
    ConfigError,
    DailyLimitReached,
    QuotaExhausted,
    RequestError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)
from ..stats import Stats
from .pricing import Price

__all__ = ["DEFAULT_ROUTE", "APIS", "Link", "Rests", "Route", "RouteTable", "RoutedUpstream", "falls_back"]

log = logging.getLogger("semcache")

DEFAULT_ROUTE = "default"
APIS = ("openai", "anthropic")
_LIMITS = ("rpm", "tpm", "rpd", "tpd")
_FIELDS = {"name", "models", "base_url", "api", "key_env", "pass_through_key", "fallbacks", "prices", *_LIMITS}


@dataclass(frozen=True)
class Route:
    """One provider: which models go there, how to reach it, how fast, at what price, and what next."""

    name: str
    models: tuple[str, ...]
    base_url: str
    api: str = "openai"
    key_env: str | None = None  # the environment variable that holds the key (the key itself is never here)
    pass_through_key: bool = False  # forward the caller's own key (only to a provider it is meant for)
    rpm: int | None = None
    tpm: int | None = None
    rpd: int | None = None
    tpd: int | None = None
    fallbacks: tuple[tuple[str, str | None], ...] = ()  # (route name, model to ask there; None: the same)
    prices: Mapping[str, Price] = field(default_factory=dict)

    def matches(self, model: str) -> bool:
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.models)

    def serves(self, kind: str) -> bool:
        """Whether this route can answer a ``kind`` request (the Messages API needs an Anthropic route)."""
        return kind != "messages" or self.api == "anthropic"


def _int(where: str, name: str, value: Any) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"{where}.{name} must be a positive integer, got {value!r}")
    return value


def _fallbacks(where: str, raw: Any) -> tuple[tuple[str, str | None], ...]:
    if not isinstance(raw, (list, tuple)):
        raise ConfigError(f"{where}.fallbacks must be a list of route names or {{route, model}} tables, got {raw!r}")
    out = []
    for i, item in enumerate(raw):
        if isinstance(item, str) and item:
            out.append((item, None))
        elif isinstance(item, Mapping) and isinstance(item.get("route"), str) and set(item) <= {"route", "model"}:
            model = item.get("model")
            if model is not None and not (isinstance(model, str) and model):
                raise ConfigError(f"{where}.fallbacks[{i}].model must be a model name, got {model!r}")
            out.append((item["route"], model))
        else:
            raise ConfigError(f"{where}.fallbacks[{i}] must be a route name or {{route = ..., model = ...}}, got {item!r}")
    return tuple(out)


def _prices(where: str, raw: Any) -> dict[str, Price]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}.prices must be a table of model -> {{input, output}} (USD per 1M tokens), got {raw!r}")
    out = {}
    for model, price in raw.items():
        try:
            out[str(model)] = Price(float(price["input"]), float(price["output"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{where}.prices.{model} needs numeric 'input' and 'output' (USD per 1M tokens), got {price!r}") from exc
    return out


def parse_route(raw: Any, index: int) -> Route:
    """Return the ``Route`` of one ``[[routes]]`` table; raise ``ConfigError`` naming the field."""
    where = f"routes[{index}]"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table (name, models, base_url, ...), got {raw!r}")
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where} has unknown field {unknown[0]!r} (known: {', '.join(sorted(_FIELDS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name or name == DEFAULT_ROUTE:
        raise ConfigError(f"{where}.name must be a non-empty name other than {DEFAULT_ROUTE!r}, got {name!r}")
    where = f"routes[{index}] ({name})"
    models = raw.get("models")
    models = (models,) if isinstance(models, str) else models
    if not isinstance(models, (list, tuple)) or not models or not all(isinstance(m, str) and m for m in models):
        raise ConfigError(f"{where}.models must be a list of model names or glob patterns ('claude-*'), got {raw.get('models')!r}")
    base_url = raw.get("base_url")
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ConfigError(f"{where}.base_url must be an http(s) URL, got {base_url!r}")
    api = raw.get("api", "openai")
    if api not in APIS:
        raise ConfigError(f"{where}.api must be one of {APIS}, got {api!r}")
    key_env, through = raw.get("key_env"), raw.get("pass_through_key", False)
    if key_env is not None and not (isinstance(key_env, str) and key_env):
        raise ConfigError(f"{where}.key_env must name an environment variable, got {key_env!r}")
    if not isinstance(through, bool):
        raise ConfigError(f"{where}.pass_through_key must be true or false, got {through!r}")
    if key_env is None and not through:
        raise ConfigError(f"{where} needs key_env (the environment variable holding its key) or pass_through_key = true")
    limits = {name_: _int(where, name_, raw.get(name_)) for name_ in _LIMITS}
    return Route(name, tuple(models), base_url.rstrip("/"), api, key_env, through, **limits,
                 fallbacks=_fallbacks(where, raw.get("fallbacks", ())), prices=_prices(where, raw.get("prices", {})))


class RouteTable:
    """The routes in order, then the ``default`` route; ``match`` picks one for a model."""

    def __init__(self, routes: Sequence[Route], default: Route) -> None:
        self.routes = tuple(routes)
        self.default = default
        self.by_name = {r.name: r for r in (*self.routes, default)}
        if len(self.by_name) != len(self.routes) + 1:
            names = [r.name for r in self.routes]
            raise ConfigError(f"route names must be unique, got {sorted({n for n in names if names.count(n) > 1})}")
        for route in self.routes:
            for target, _ in route.fallbacks:
                if target not in self.by_name or target == route.name:
                    raise ConfigError(f"route {route.name!r} falls back to {target!r}, which is not another route "
                                      f"(routes: {', '.join(self.by_name)})")

    @classmethod
    def parse(cls, raw: Sequence[Any], default: Route) -> "RouteTable":
        """Build the table from the settings' ``routes``; raise ``ConfigError`` naming the field."""
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(f"setting 'routes' must be a list of tables ([[routes]] in TOML), got {raw!r}")
        return cls([parse_route(item, i) for i, item in enumerate(raw)], default)

    def __repr__(self) -> str:
        return f"RouteTable({', '.join(r.name for r in self.routes)}, default={self.default.base_url!r})"

    def match(self, model: Any, kind: str = "chat") -> Route:
        """Return the route for ``model``; raise ``RequestError`` when no route can answer a ``kind`` request."""
        name = model if isinstance(model, str) else ""
        for route in self.routes:
            if route.matches(name) and route.serves(kind):
                return route
        if self.default.serves(kind):
            return self.default
        raise RequestError(f"no route answers Anthropic's Messages API for model {name[:100]!r}: add a route with "
                           "api = \"anthropic\" whose models match it (see docs/providers.md)", field="model")

    def chain(self, route: Route, kind: str) -> list[tuple[Route, str | None]]:
        """Return the route and its fallbacks that can answer a ``kind`` request, in order."""
        links = [(route, None)] + [(self.by_name[name], model) for name, model in route.fallbacks]
        return [(r, m) for r, m in links if r.serves(kind)]

    def prices(self) -> dict[str, Price]:
        """Every route's price overrides, the first route's winning for a model priced twice."""
        out: dict[str, Price] = {}
        for route in reversed(self.routes):
            out.update(route.prices)
        return out


def falls_back(error: UpstreamError) -> bool:
    """Whether a failure is the provider's (try the next route), not the request's."""
    if isinstance(error, (DailyLimitReached, QuotaExhausted, UpstreamTimeout, UpstreamConnectionError)):
        return True
    return isinstance(error, UpstreamStatusError) and (error.status_code or 0) >= 500


class Rests:
    """Routes resting after a per-day limit: no call until the wait they named is over. Thread-safe."""

    def __init__(self, timer: Callable[[], float] = time.monotonic) -> None:
        self._timer = timer
        self._until: dict[str, float] = {}
        self._lock = threading.Lock()

    def rest(self, name: str, seconds: float) -> None:
        with self._lock:
            self._until[name] = max(self._until.get(name, 0.0), self._timer() + seconds)

    def left(self, name: str) -> float:
        """Seconds the route still rests (0.0: it may be called)."""
        with self._lock:
            return max(0.0, self._until.get(name, 0.0) - self._timer())


@dataclass(frozen=True)
class Link:
    """One step of a chain: the route's name, its upstream client, the model to ask there (None: the same)."""

    route: str
    upstream: Any
    model: str | None = None

    def body(self, request: dict) -> dict:
        return request if self.model is None else {**request, "model": self.model}


class RoutedUpstream:
    """An ``Upstream`` that tries its links in order while the failures are the providers' (``falls_back``)."""

    def __init__(self, links: Sequence[Link], *, rests: Rests | None = None, stats: Stats | None = None) -> None:
        if not links:
            raise ConfigError("a routed upstream needs at least one route")
        self.links = tuple(links)
        self.rests = rests or Rests()
        self.stats = stats

    def __repr__(self) -> str:
        return f"RoutedUpstream({' -> '.join(link.route for link in self.links)})"

    @property
    def budget(self) -> Any:
        return getattr(self.links[0].upstream, "budget", None)

    def _plan(self) -> tuple[list[Link], UpstreamError | None]:
        """The links to try (resting ones left out), and the failure to raise if none answers."""
        links, failure = [], None
        for link in self.links:
            left = self.rests.left(link.route)
            if left > 0:
                failure = failure or DailyLimitReached(
                    f"route {link.route!r} is over a per-day limit for {left:.0f}s more", retry_after=left)
            else:
                links.append(link)
        return links, failure

    def _failed(self, link: Link, error: UpstreamError, request: dict, tenant: str) -> UpstreamError:
        """Note a link's failure and return it; raise it unless the next route should try."""
        if not falls_back(error):
            raise error
        if isinstance(error, DailyLimitReached):
            self.rests.rest(link.route, error.retry_after)
        if self.stats is not None:
            self.stats.incr("route_fallbacks", 1, tenant=tenant, model=str(request.get("model", "")))
        log.warning("semcache route %r failed (%s); trying the next route", link.route, type(error).__name__)
        return error

    def call(self, request: dict, *, kind: str = "chat", tenant: str = "") -> Any:
        """Answer from the first route that can; raise the last failure."""
        links, failure = self._plan()
        for link in links:
            try:
                return link.upstream.call(link.body(request), kind=kind, tenant=tenant)
            except UpstreamError as exc:
                failure = self._failed(link, exc, request, tenant)
        raise failure  # type: ignore[misc]

    async def acall(self, request: dict, *, kind: str = "chat", tenant: str = "") -> Any:
        """Async ``call``."""
        links, failure = self._plan()
        for link in links:
            try:
                return await link.upstream.acall(link.body(request), kind=kind, tenant=tenant)
            except UpstreamError as exc:
                failure = self._failed(link, exc, request, tenant)
        raise failure  # type: ignore[misc]

    def stream(self, request: dict, *, kind: str = "chat", tenant: str = "") -> Iterator[dict]:
        """Yield the chunks of the first route whose stream opens; a failure after the first chunk is raised."""
        links, failure = self._plan()
        for link in links:
            chunks = link.upstream.stream(link.body(request), kind=kind, tenant=tenant)
            try:
                first = next(chunks)
            except StopIteration:
                return
            except UpstreamError as exc:
                failure = self._failed(link, exc, request, tenant)
                continue
            yield first
            yield from chunks
            return
        raise failure  # type: ignore[misc]

    async def astream(self, request: dict, *, kind: str = "chat", tenant: str = "") -> AsyncIterator[dict]:
        """Async ``stream``."""
        links, failure = self._plan()
        for link in links:
            chunks = link.upstream.astream(link.body(request), kind=kind, tenant=tenant)
            try:
                first = await chunks.__anext__()
            except StopAsyncIteration:
                return
            except UpstreamError as exc:
                failure = self._failed(link, exc, request, tenant)
                continue
            yield first
            async for chunk in chunks:
                yield chunk
            return
        raise failure  # type: ignore[misc]
