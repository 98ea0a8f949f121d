"""``@semcache.cached(...)``: put a semantic cache in front of a function that calls an LLM.

The request is read from the call's arguments: ``messages=`` (a chat request) or ``prompt=``
(a completion), plus every other argument of a plain JSON type (model, temperature, ...), which
all join the partition, so a different model or temperature never shares an answer. Arguments
of other types (a client object, a callback) are not part of the key. A custom ``key=`` function
may build the request instead.

On a hit the cached return value comes back without calling the function; on a miss the
function runs and its return value (a string, a dict, an openai response object) is stored.
With ``client=`` (a semcache upstream client), the function's body is not called at all: its
arguments are the request, sent through the paced client on a miss, and the response body is
returned.
"""

from __future__ import annotations

import functools
import inspect
import threading
from dataclasses import dataclass
from typing import Any, Callable

from .engine import SemanticCache

__all__ = ["CacheInfo", "cached"]

_JSON = (str, int, float, bool, type(None), list, dict, tuple)
_SKIP = frozenset({"self", "cls"})


@dataclass(frozen=True)
class CacheInfo:
    """What one decorated function's cache did, counted in this process."""

    hits: int
    misses: int
    bypasses: int
    stale: int
    entries: int


def cached(func: Callable | None = None, /, *, cache: SemanticCache | None = None, directory: str | None = None,
           key: Callable[..., Any] | None = None, client: Any = None, tenant: str | None = None,
           threshold: float | None = None, **cache_options: Any) -> Callable[[Callable], Callable]:
    """Return a decorator caching an LLM-calling function (sync or async).

    ``cache``: a SemanticCache to use (else one is opened lazily in ``directory``, default
    ``.semcache``, with ``cache_options``). ``key(*args, **kwargs)`` returns the request (a chat
    request dict or a prompt string). Per call, ``semcache_bypass=True`` skips the cache.
    Raises ``TypeError`` when used without parentheses, or on a function it cannot key.
    """
    if func is not None:
        raise TypeError("use @semcache.cached() with parentheses (it takes keyword options), not @semcache.cached")
    if cache is not None and (directory is not None or cache_options):
        raise TypeError("pass either cache= or directory=/cache options to semcache.cached, not both")

    def decorate(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"semcache.cached() decorates functions, got {type(fn).__name__}")
        signature = inspect.signature(fn)
        params = signature.parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if key is None and not ({"messages", "prompt"} & set(params)) and not takes_any:
            raise TypeError(
                f"semcache.cached() cannot key {fn.__qualname__}{signature}: it needs a 'messages' or 'prompt' "
                "parameter, or key=lambda *args, **kwargs: request"
            )
        state = _State(cache, directory, cache_options, client)

        def request_of(args, kwargs) -> Any:
            if key is not None:
                return key(*args, **kwargs)
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = dict(bound.arguments)
            for p in params.values():
                if p.kind is inspect.Parameter.VAR_KEYWORD:
                    arguments.update(arguments.pop(p.name, {}))
                elif p.kind is inspect.Parameter.VAR_POSITIONAL:
                    arguments.pop(p.name, None)
            request = {k: v for k, v in arguments.items() if k not in _SKIP and isinstance(v, _JSON)}
            if "messages" not in request and "prompt" not in request:
                raise TypeError(f"{fn.__qualname__} was called without 'messages' or 'prompt': nothing to key")
            return request

        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args, semcache_bypass: bool = False, **kwargs):
                request = request_of(args, kwargs)
                kind = _kind(request)
                call = state.async_call(fn, args, kwargs, kind)
                result = await state.get().acomplete(request, call, tenant=tenant, kind=kind, no_cache=semcache_bypass,
                                                     no_store=semcache_bypass, threshold=threshold)
                state.count(result.status)
                return result.response
            wrapper = async_wrapper
        else:
            @functools.wraps(fn)
            def sync_wrapper(*args, semcache_bypass: bool = False, **kwargs):
                request = request_of(args, kwargs)
                kind = _kind(request)
                call = state.sync_call(fn, args, kwargs, kind)
                result = state.get().complete(request, call, tenant=tenant, kind=kind, no_cache=semcache_bypass,
                                              no_store=semcache_bypass, threshold=threshold)
                state.count(result.status)
                return result.response
            wrapper = sync_wrapper

        wrapper.cache_info = state.info  # type: ignore[attr-defined]
        wrapper.cache_clear = state.clear  # type: ignore[attr-defined]
        wrapper.cache = state.get  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _kind(request: Any) -> str:
    return "completions" if isinstance(request, str) or (isinstance(request, dict) and "prompt" in request) else "chat"


class _State:
    """The lazily opened cache of one decorated function and its local counters."""

    def __init__(self, cache: SemanticCache | None, directory: str | None, options: dict, client: Any) -> None:
        self._cache, self._directory, self._options, self._client = cache, directory, options, client
        self._lock = threading.Lock()
        self._counts = {"hit": 0, "miss": 0, "bypass": 0, "stale": 0}

    def get(self) -> SemanticCache:
        # Opened on first call, not at import: loading the model takes seconds.
        if self._cache is None:
            with self._lock:
                if self._cache is None:
                    self._cache = SemanticCache(self._directory or ".semcache", **self._options)
        return self._cache

    def sync_call(self, fn, args, kwargs, kind: str):
        client = self._client
        if client is not None:  # the function's arguments are the request; its body is not run
            return lambda request: client.call(request, kind=kind).body
        return lambda request: fn(*args, **kwargs)

    def async_call(self, fn, args, kwargs, kind: str):
        client = self._client
        if client is not None:
            async def call(request):
                return (await client.acall(request, kind=kind)).body
            return call
        return lambda request: fn(*args, **kwargs)

    def count(self, status: str) -> None:
        with self._lock:
            self._counts[status] += 1

    def info(self) -> CacheInfo:
        c = self._counts
        entries = len(self._cache) if self._cache is not None else 0
        return CacheInfo(c["hit"], c["miss"], c["bypass"], c["stale"], entries)

    def clear(self) -> None:
        """Delete every entry of this function's cache and reset its counters."""
        self.get().clear()
        with self._lock:
            self._counts = dict.fromkeys(self._counts, 0)
