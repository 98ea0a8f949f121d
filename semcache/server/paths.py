"""One path, one route: ``/v1/chat/completions/`` is served as ``/v1/chat/completions`` (#18 item 8).

Starlette answers a path with a trailing slash by a 307 redirect with an empty body; a client
that does not follow redirects for a POST (or re-sends it without its body) then sees an empty
answer. OpenAI's own API serves both spellings, so the sidecar drops one trailing slash before
routing: every route, its checks (Host, Origin) and its answer are the same as without it.
The passthrough route ``/v1/models/{id}`` is the exception: its raw path is checked as written
(``guard.model_id``), so ``/v1/models/`` stays an empty id (400), never a rewritten path.
"""

from __future__ import annotations

from typing import Any

__all__ = ["TrailingSlash"]


class TrailingSlash:
    """ASGI middleware: route ``/a/b/`` as ``/a/b`` (one slash dropped; ``/`` itself untouched)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if (scope["type"] == "http" and len(path) > 1 and path.endswith("/") and not path.endswith("//")
                and not path.startswith("/v1/models")):
            scope = dict(scope, path=path[:-1])
            raw = scope.get("raw_path")
            if isinstance(raw, bytes) and raw.endswith(b"/"):
                scope["raw_path"] = raw[:-1]
        await self.app(scope, receive, send)
