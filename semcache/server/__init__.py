"""The sidecar: ``semcache serve``, an OpenAI-compatible caching proxy (see ``app.create_app``)."""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

import uvicorn

from ..config import Settings
from .app import create_app
from .protocol import protocol_class

__all__ = ["create_app", "ready_line", "serve"]


def serve(settings: Settings, *, environ: Mapping[str, str] | None = None, log_level: str = "info", app: Any = None,
          announce: Callable[[str], None] | None = None) -> None:
    """Serve the sidecar on ``settings.host:settings.port`` with uvicorn until interrupted.

    ``environ`` (default ``os.environ``) supplies the admin token and the sidecar's own upstream
    key (and, if set, the client keys), by the names in ``settings``. ``app``: one already built by
    ``create_app`` (else built here). ``announce``: called with ``ready_line`` once the sidecar
    answers; uvicorn's own start-up lines are then left out (its warnings and errors are not).
    Raises ``ConfigError`` when the model or the client keys cannot be loaded, or when the sidecar's
    own key would be served on a non-loopback address without client keys (``auth.check_exposure``;
    ``open`` allows it).
    """
    app = app if app is not None else create_app(settings, environ=environ)
    # The sidecar's own HTTP protocol: header limits, read timeouts, OpenAI-shaped 400s, an access log
    # without query-string secrets (protocol.py).
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on",
                            http=protocol_class(settings))
    server = _Server(config)
    if announce is None:
        server.run()
        return
    quiet = _StartupLines()
    logger = logging.getLogger("uvicorn.error")
    logger.addFilter(quiet)
    server.on_ready = lambda: (setattr(quiet, "ready", True), announce(ready_line(app, settings)))
    try:
        server.run()
    finally:
        logger.removeFilter(quiet)


class _StartupLines(logging.Filter):
    """Drop uvicorn's info lines until the sidecar is ready ("Started server process", "Waiting for
    application startup", ...): the ready line says it all. Warnings and errors always pass."""

    ready = False

    def filter(self, record: logging.LogRecord) -> bool:
        return self.ready or record.levelno >= logging.WARNING


class _Server(uvicorn.Server):
    """uvicorn's server, calling ``on_ready`` once it listens and the app's start-up is done."""

    on_ready: Callable[[], Any] | None = None

    async def startup(self, sockets=None) -> None:
        await super().startup(sockets=sockets)
        if self.started and not self.should_exit and self.on_ready is not None:
            self.on_ready()


def ready_line(app: Any, settings: Settings) -> str:
    """Return the one line ``semcache serve`` prints when it answers: address, upstream, model, store, policy."""
    sidecar = app.state.sidecar
    cache = sidecar.cache
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    embedder = getattr(cache.embedder, "inner", cache.embedder)
    backend = getattr(getattr(embedder, "inner", embedder), "backend", None)
    model = f"{cache.embedder.model_id}" + (f" ({backend})" if backend else "")
    store = (f"{_redacted(settings.store)} (prefix {settings.store_prefix})" if settings.store
             else f"{settings.cache_dir} ({len(cache.store):,} entries)")
    policy = cache.policy
    languages = ",".join(policy.languages) if policy.languages else "all"
    return (f"semcache ready on http://{host}:{settings.port}/v1 | upstream {_redacted(settings.upstream_base_url)} | "
            f"model {model} | store {store} | policy threshold {policy.threshold:g}, languages {languages}")


def _redacted(url: str) -> str:
    """Drop a password from a URL's user part (``redis://:secret@host`` -> ``redis://***@host``)."""
    parts = urlsplit(url)
    if parts.password is None and parts.username is None:
        return url
    netloc = "***@" + parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc))
