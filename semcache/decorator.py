"""``@semcache.cached(...)``: put a semantic cache in front of a function that calls an LLM.

The request is read from the call's arguments: ``messages=`` (a chat request) or ``prompt=``
(a completion), plus every other argument, which all join the partition, so a different model
or temperature never shares an answer. An argument must be JSON (str, int, float, bool, None,
lists, str-keyed dicts), a dataclass or a pydantic model whose fields hold the same, or be
named in ``ignore=``; anything else raises ``TypeError`` at call time, naming it, because an
argument left out of the key silently would let calls differing only in it share an answer.
A custom ``key=`` function may build the request instead.

Each decorated function has a **namespace**, its module and qualified name unless
``namespace=`` says otherwise. It joins the partition through the tenant: the engine sees the
tenant ``"<tenant>|<namespace>"``, so two functions never share an answer, semantic matching
stays within one function, and ``cache_clear`` finds exactly this function's entries (those
of this tenant and namespace, from any process).

On a hit the cached return value comes back without calling the function; on a miss the
function runs and its return value (a string, a dict, an openai response object) is stored.
With ``client=`` (a semcache upstream client), the function's body is not called at all: its
arguments are the request, sent through the paced client on a miss, and the response body is
returned.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import inspect
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from .engine import SemanticCache
from .errors import RequestError
from .keys import normalize

__all__ = ["CacheInfo", "cached"]

_SELF = frozenset({"self", "cls"})
_SEPARATOR = "|"  # tenant + "|" + namespace; a namespace never holds one, so the pair reads back uniquely
_RESERVED = "semcache:decorator"  # what the decorator adds to a keyed request; no Python argument has this name
_MAX_DEPTH = 64


@dataclass(frozen=True)
class CacheInfo:
    """What one decorated function's cache did, counted in this process (``entries``: stored ones)."""

    hits: int
    misses: int
    bypasses: int
    stale: int
    entries: int


def cached(func: Callable | None = None, /, *, cache: SemanticCache | None = None, directory: str | None = None,
           key: Callable[..., Any] | None = None, client: Any = None, tenant: str | None = None,
           threshold: float | None = None, namespace: str | None = None, ignore: str | Iterable[str] = (),
           **cache_options: Any) -> Callable[[Callable], Callable]:
    """Return a decorator caching an LLM-calling function (sync or async).

    ``cache``: a SemanticCache to use (else one is opened lazily in ``directory``, default
    ``.semcache``, with ``cache_options``). ``key(*args, **kwargs)`` returns the request (a chat
    request dict or a prompt string). ``namespace``: the name this function's entries are kept
    under (default: its module and qualified name); functions given the same one share answers.
    ``ignore``: names of arguments that never change the answer (a client, a logger), left out
    of the key. Per call, ``semcache_bypass=True`` skips the cache.
    Raises ``TypeError`` when used without parentheses, or on a function it cannot key or name;
    ``ValueError`` for an empty namespace or one containing ``|``.
    """
    if func is not None:
        raise TypeError("use @semcache.cached() with parentheses (it takes keyword options), not @semcache.cached")
    if cache is not None and (directory is not None or cache_options):
        raise TypeError("pass either cache= or directory=/cache options to semcache.cached, not both")
    if namespace is not None:
        _check_namespace(namespace)
    ignored = frozenset((ignore,) if isinstance(ignore, str) else ignore)
    if key is not None and ignored:
        raise TypeError("pass key= or ignore= to semcache.cached, not both: key= builds the whole request")

    def decorate(fn: Callable) -> Callable:
        if not callable(fn):
            raise TypeError(f"semcache.cached() decorates functions, got {type(fn).__name__}")
        name = namespace if namespace is not None else _namespace_of(fn)
        signature = inspect.signature(fn)
        params = signature.parameters
        takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
        if key is None and not ({"messages", "prompt"} & set(params)) and not takes_any:
            raise TypeError(
                f"semcache.cached() cannot key {name}{signature}: it needs a 'messages' or 'prompt' "
                "parameter, or key=lambda *args, **kwargs: request"
            )
        if "semcache_bypass" in params:
            raise TypeError(f"{name} has a parameter named 'semcache_bypass', which semcache.cached() takes per call")
        for arg in sorted(ignored):
            if arg in ("messages", "prompt"):
                raise TypeError(f"semcache.cached() cannot ignore {arg!r}: it is what the cache matches on")
            if arg not in params and not takes_any:
                raise TypeError(f"ignore= names {arg!r}, which is not a parameter of {name}{signature}")
        request_of = _Keyer(name, signature, _is_method(fn), key, ignored, plain=client is not None)
        state = _State(cache, directory, cache_options, client, tenant, name)

        if _is_async(fn):
            @functools.wraps(fn)
            async def async_wrapper(*args, semcache_bypass: bool = False, **kwargs):
                keyed, sent = request_of(args, kwargs)
                kind = _kind(keyed)
                # Opening loads the model (seconds): never on the event loop.
                engine = state.opened()
                if engine is None:
                    engine = await asyncio.to_thread(state.get)
                tenant_ = state.tenant(engine)
                call = state.async_call(fn, args, kwargs, sent, kind, tenant_)
                result = await engine.acomplete(keyed, call, tenant=tenant_, kind=kind, no_cache=semcache_bypass,
                                                no_store=semcache_bypass, threshold=threshold)
                state.count(result.status)
                return result.response
            wrapper = async_wrapper
        else:
            @functools.wraps(fn)
            def sync_wrapper(*args, semcache_bypass: bool = False, **kwargs):
                keyed, sent = request_of(args, kwargs)
                kind = _kind(keyed)
                engine = state.get()
                tenant_ = state.tenant(engine)
                call = state.sync_call(fn, args, kwargs, sent, kind, tenant_)
                result = engine.complete(keyed, call, tenant=tenant_, kind=kind, no_cache=semcache_bypass,
                                         no_store=semcache_bypass, threshold=threshold)
                state.count(result.status)
                return result.response
            wrapper = sync_wrapper

        wrapper.cache_info = state.info  # type: ignore[attr-defined]
        wrapper.cache_clear = state.clear  # type: ignore[attr-defined]
        wrapper.cache = state.get  # type: ignore[attr-defined]
        return wrapper

    return decorate


def _check_namespace(namespace: Any) -> None:
    if not isinstance(namespace, str):
        raise TypeError(f"namespace must be a non-empty string, got {type(namespace).__name__}")
    if not namespace:
        raise ValueError("namespace must be a non-empty string")
    if _SEPARATOR in namespace:
        raise ValueError(f"namespace cannot contain {_SEPARATOR!r} (it separates the tenant from the namespace): "
                         f"{namespace!r}")


def _namespace_of(fn: Callable) -> str:
    """Return ``module.qualname`` of a function, or raise ``TypeError`` when that does not name it alone."""
    qualname = getattr(fn, "__qualname__", None)
    if not isinstance(qualname, str):  # a callable object, a functools.partial: its class is shared
        raise TypeError(f"semcache.cached() cannot name a {type(fn).__name__} object: pass namespace='...'")
    if qualname.endswith("<lambda>"):
        raise TypeError(f"semcache.cached() cannot name a lambda: every lambda in {fn.__module__} is "
                        f"'{qualname}'; pass namespace='...'")
    name = f"{fn.__module__}.{qualname}"
    _check_namespace(name)
    return name


def _is_method(fn: Callable) -> bool:
    """Whether ``fn`` is defined in a class body (its first parameter then is ``self`` or ``cls``)."""
    owner, _, _ = getattr(fn, "__qualname__", "").rpartition(".")
    return bool(owner) and not owner.endswith("<locals>")


def _is_async(fn: Callable) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None))


def _kind(request: Any) -> str:
    return "completions" if isinstance(request, str) or (isinstance(request, dict) and "prompt" in request) else "chat"


@functools.lru_cache(maxsize=256)
def _engine_drops(field: str) -> bool:
    """Whether ``keys.normalize`` leaves a request field out of the key (``user``, ``stream``, ...).

    Those API fields never change a provider's answer, but a decorated function's argument of
    that name may change its own, so outside ``client=`` it is keyed under ``_RESERVED``.
    Asked of ``normalize`` itself, so the list is never copied here.
    """
    if field in ("messages", "prompt"):
        return False
    try:
        probed = normalize({"prompt": "q", field: "q"})
    except RequestError:
        return False
    return probed.partition == normalize({"prompt": "q"}).partition


class _Unkeyable(TypeError):
    """A value with no sound JSON form; ``path`` says where it is."""

    def __init__(self, path: str, why: str) -> None:
        super().__init__(f"{path} {why}")
        self.path, self.why = path, why


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _to_json(value: Any, path: str, types: dict[str, str] | None, depth: int = 0) -> Any:
    """Return ``value`` as JSON, or raise ``_Unkeyable``.

    ``types`` (None when only the JSON matters: the request goes to a client) collects, by
    path, the type of every value whose JSON it shares with another type (a tuple and a list,
    an IntEnum and an int, two model classes with the same fields): the function itself may
    treat them apart, so they must not share an answer.
    """
    if depth > _MAX_DEPTH:
        raise _Unkeyable(path, f"is nested deeper than {_MAX_DEPTH} levels")
    cls = type(value)
    if value is None or cls in (str, int, float, bool):
        return value
    if isinstance(value, (str, int, float)):  # enums, numpy.float64, ...: keyed as their value and type
        if types is not None:
            types[path] = _type_name(cls)
        return str.__str__(value) if isinstance(value, str) else int(value) if isinstance(value, int) else float(value)
    if isinstance(value, (list, tuple)):
        if cls is not list and types is not None:
            types[path] = _type_name(cls)
        return [_to_json(v, f"{path}[{i}]", types, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, dict):
        if cls is not dict and types is not None:
            types[path] = _type_name(cls)
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise _Unkeyable(path, f"has a key {k!r} of type {type(k).__name__}; JSON keys are strings")
            out[str.__str__(k)] = _to_json(v, f"{path}.{k}", types, depth + 1)
        return out
    if hasattr(value, "model_dump") and hasattr(cls, "model_validate") and hasattr(cls, "model_fields"):
        return _model_to_json(value, path, types, depth)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        names = [f.name for f in dataclasses.fields(value)]
        outside = sorted(set(getattr(value, "__dict__", {})) - set(names))
        if outside:
            raise _Unkeyable(path, f"is a dataclass {_type_name(cls)} with attribute {outside[0]!r} outside its "
                                   "fields, which the key would leave out")
        if types is not None:
            types[path] = _type_name(cls)
        return {n: _to_json(getattr(value, n), f"{path}.{n}", types, depth + 1) for n in names}
    raise _Unkeyable(path, f"is a {_type_name(cls)}, not a JSON value (str, int, float, bool, None, list, dict), "
                           "a dataclass or a pydantic model")


def _model_to_json(value: Any, path: str, types: dict[str, str] | None, depth: int) -> Any:
    """A pydantic model as its JSON dump, refused when some of its state is not in the dump."""
    cls = type(value)
    if getattr(value, "__pydantic_private__", None):
        raise _Unkeyable(path, f"is a pydantic model {_type_name(cls)} with private attributes, which the key "
                               "would leave out")
    excluded = sorted(n for n, f in cls.model_fields.items() if getattr(f, "exclude", None))
    if excluded:
        raise _Unkeyable(path, f"is a pydantic model {_type_name(cls)} with field {excluded[0]!r} excluded from its "
                               "dump, which the key would leave out")
    if types is not None:
        types[path] = _type_name(cls)
    return _to_json(value.model_dump(mode="json"), path, types, depth + 1)


class _Keyer:
    """Turn one call's arguments into (the request to key, the request a ``client=`` is sent)."""

    def __init__(self, name: str, signature: inspect.Signature, method: bool, key: Callable | None,
                 ignored: frozenset[str], *, plain: bool) -> None:
        self.name, self.signature, self.key, self.ignored = name, signature, key, ignored
        # With a client, the answer depends only on the JSON sent: types and the instance cannot change it.
        self.plain = plain
        first = next(iter(signature.parameters.values()), None)
        positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        self.owner = first.name if method and first is not None and first.name in _SELF and first.kind in positional \
            else None

    def __call__(self, args: tuple, kwargs: dict) -> tuple[Any, Any]:
        if self.key is not None:
            return self._from_key(args, kwargs)
        bound = self.signature.bind(*args, **kwargs)
        bound.apply_defaults()
        types: dict[str, str] | None = None if self.plain else {}
        request: dict[str, Any] = {}
        dropped: dict[str, Any] = {}  # arguments the engine would not key, keyed under _RESERVED instead
        extra: dict[str, Any] = {}
        for pname, value in bound.arguments.items():
            kind = self.signature.parameters[pname].kind
            if pname == self.owner:
                # self/cls is not keyed (instances of one class share answers); its class is, so a
                # subclass that overrides a prompt does not answer for its base class.
                if not self.plain:
                    extra["class"] = _type_name(value if isinstance(value, type) else type(value))
                continue
            if kind is inspect.Parameter.VAR_KEYWORD:
                items = list(value.items())
            elif kind is inspect.Parameter.VAR_POSITIONAL:
                items = [(pname, value)] if value else []
            else:
                items = [(pname, value)]
            for arg, v in items:
                if arg in self.ignored:
                    continue
                if arg == _RESERVED:
                    raise TypeError(f"{self.name}: an argument named {_RESERVED!r} is reserved by semcache.cached()")
                try:
                    converted = _to_json(v, arg, types)
                except _Unkeyable as exc:
                    raise TypeError(
                        f"{self.name}: semcache cannot key argument {arg!r}: {exc}. Pass ignore=({arg!r},) if it never "
                        "changes the answer, or key=lambda *args, **kwargs: request") from None
                if not self.plain and _engine_drops(arg):
                    dropped[arg] = converted
                else:
                    request[arg] = converted
        if "messages" not in request and "prompt" not in request:
            raise TypeError(f"{self.name} was called without 'messages' or 'prompt': nothing to key")
        if dropped:
            extra["arguments"] = dropped
        if types:
            extra["types"] = types
        return ({**request, _RESERVED: extra} if extra else request), request

    def _from_key(self, args: tuple, kwargs: dict) -> tuple[Any, Any]:
        raw = self.key(*args, **kwargs)
        if isinstance(raw, str):
            return str.__str__(raw), str.__str__(raw)
        if isinstance(raw, dict) and _RESERVED in raw:
            raise TypeError(f"{self.name}: key() returned a request with the field {_RESERVED!r}, "
                            "reserved by semcache.cached()")
        types: dict[str, str] | None = None if self.plain else {}
        try:
            request = _to_json(raw, "request", types)
        except _Unkeyable as exc:
            raise TypeError(f"{self.name}: key() returned a request semcache cannot key: {exc}") from None
        if isinstance(request, dict) and types:
            return {**request, _RESERVED: {"types": types}}, request
        return request, request


class _State:
    """The lazily opened cache of one decorated function, its namespace and its local counters."""

    def __init__(self, cache: SemanticCache | None, directory: str | None, options: dict, client: Any,
                 tenant: str | None, namespace: str) -> None:
        self._cache, self._directory, self._options, self._client = cache, directory, options, client
        self._tenant, self._namespace = tenant, namespace
        self._lock = threading.Lock()
        self._counts = {"hit": 0, "miss": 0, "bypass": 0, "stale": 0}

    def opened(self) -> SemanticCache | None:
        return self._cache

    def get(self) -> SemanticCache:
        # Opened on first call, not at import: loading the model takes seconds.
        if self._cache is None:
            with self._lock:
                if self._cache is None:
                    self._cache = SemanticCache(self._directory or ".semcache", **self._options)
        return self._cache

    def tenant(self, cache: SemanticCache) -> str:
        """The tenant the engine keys and counts this function's requests under: tenant|namespace."""
        base = cache.tenant if self._tenant is None else self._tenant
        return f"{base}{_SEPARATOR}{self._namespace}"

    def sync_call(self, fn, args, kwargs, sent, kind: str, tenant: str):
        client = self._client
        if client is not None:  # the function's arguments are the request; its body is not run
            return lambda request: client.call(sent, kind=kind, tenant=tenant).body

        def call(request):
            value = fn(*args, **kwargs)
            if inspect.isawaitable(value):
                if inspect.iscoroutine(value):
                    value.close()  # never awaited: close it rather than leak a warning
                raise TypeError(f"{self._namespace} returned a coroutine from a plain def: semcache.cached() would "
                                "store it and serve it twice; decorate an async def")
            return value
        return call

    def async_call(self, fn, args, kwargs, sent, kind: str, tenant: str):
        client = self._client
        if client is not None:
            async def call(request):
                return (await client.acall(sent, kind=kind, tenant=tenant)).body
            return call
        return lambda request: fn(*args, **kwargs)

    def count(self, status: str) -> None:
        with self._lock:  # a follower of an identical call in flight did not call the function: a hit here
            self._counts["hit" if status == "follower" else status] += 1

    def _own(self, cache: SemanticCache) -> list[int]:
        # The engine cannot select entries by tenant yet: read them all (cache_clear and
        # cache_info are rare; a lookup never does this).
        tenant = self.tenant(cache)
        return [entry.id for entry in cache.entries() if entry.tenant == tenant]

    def info(self) -> CacheInfo:
        """Counters of this process; ``entries``: this function's stored entries (0 until the cache is opened)."""
        c = dict(self._counts)
        entries = len(self._own(self._cache)) if self._cache is not None else 0
        return CacheInfo(c["hit"], c["miss"], c["bypass"], c["stale"], entries)

    def clear(self) -> None:
        """Delete this function's entries (its tenant and namespace; other entries stay) and reset its counters."""
        cache = self.get()
        cache.invalidate(self._own(cache))
        with self._lock:
            self._counts = dict.fromkeys(self._counts, 0)
