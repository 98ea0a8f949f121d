"""The sidecar: ``semcache serve``, an OpenAI-compatible caching proxy (see ``app.create_app``)."""

from __future__ import annotations

from typing import Any, Mapping

from ..config import Settings
from .app import create_app

__all__ = ["create_app", "serve"]


def serve(settings: Settings, *, environ: Mapping[str, str] | None = None, log_level: str = "info", embedder: Any = None) -> None:
    """Serve the sidecar on ``settings.host:settings.port`` with uvicorn until interrupted.

    ``environ`` (default ``os.environ``) supplies the admin token and the sidecar's own upstream
    key (and, if set, the client keys), by the names in ``settings``. Raises ``ConfigError`` when
    the model or the client keys cannot be loaded, or when the sidecar's own key would be served on
    a non-loopback address without client keys (``auth.check_exposure``; ``open`` allows it).
    ``embedder``: the model (default: the settings'; tests pass a fake one).
    """
    import uvicorn

    from .protocol import protocol_class

    app = create_app(settings, environ=environ, embedder=embedder)
    # Header limits, read timeouts, OpenAI-shaped 400s and an access log without secrets (protocol.py).
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=log_level, lifespan="on",
                http=protocol_class(settings))
