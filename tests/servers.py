"""Servers for tests: ``from servers import running_server, Sidecars`` (or ``from tests.servers import ...``).

``running_server`` lives in ``semcache.testing.serving`` (the demo and the benchmarks use it too).
"""

from __future__ import annotations

from typing import Any

from semcache import SemanticCache
from semcache.config import Settings
from semcache.server import create_app
from semcache.testing.serving import running_server

__all__ = ["Sidecars", "running_server"]


class Sidecars:
    """Sidecar apps on loopback, each on a ``SemanticCache`` of its own; ``close`` stops them, newest first.

    ``start(settings, environ=..., upstream=..., **cache_options)`` returns the base URL; ``len`` counts
    those started (a fixture names each one's cache directory by it); ``apps`` holds the apps.
    """

    def __init__(self) -> None:
        self.apps: list[Any] = []
        self._running: list[tuple[Any, SemanticCache]] = []

    def __len__(self) -> int:
        return len(self._running)

    def start(self, settings: Settings, *, environ: dict, upstream: Any = None, **cache_options: Any) -> str:
        cache = SemanticCache(settings.cache_dir, **cache_options)
        app = create_app(settings, cache=cache, upstream=upstream, environ=environ)
        server = running_server(app)
        self._running.append((server, cache))
        self.apps.append(app)
        return server.__enter__()

    def close(self) -> None:
        for server, cache in reversed(self._running):
            server.__exit__(None, None, None)
            cache.close()
        self._running.clear()
