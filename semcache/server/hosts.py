"""Who may reach the sidecar from a browser: the Host and Origin checks, CORS, and JSON-only bodies.

A page on any web site can make a browser send requests to ``http://127.0.0.1:8080``: a "simple"
``text/plain`` POST needs no preflight and is sent even though the page cannot read the answer,
and a DNS-rebinding page can read it too, under its own name as ``Host``. Either way the
sidecar would spend its key for a stranger. So, by default:

- a request whose ``Host`` is not ``127.0.0.1``, ``localhost`` or ``[::1]`` (any port), the
  configured ``host``, or one of ``allowed_hosts`` gets 403 (requests without a ``Host``,
  which no browser sends, pass; ``/healthz`` and ``/readyz`` are exempt: probes address the
  machine by IP);
- a request with an ``Origin`` header gets 403 unless that origin is in ``allowed_origins``
  (callers that are not browsers send none);
- a preflight (``OPTIONS``) is refused the same way, and no ``Access-Control-Allow-*`` header
  is ever sent; with ``allowed_origins`` set, Starlette's ``CORSMiddleware`` answers those
  origins' preflights and adds the headers;
- an API body must be declared ``application/json`` (415 otherwise: a browser cannot send that
  without a preflight).

``"*"`` in ``allowed_hosts`` or ``allowed_origins`` allows any.

Why not Starlette's ``TrustedHostMiddleware`` (checked against starlette 1.10): it answers a
plain-text 400 "Invalid host header", where every sidecar error is OpenAI's JSON shape with a
code a client can act on (403 ``host_not_allowed``); it refuses a request without ``Host`` and
cannot exempt the probes' paths; and it redirects to ``www.`` names. Keeping those answers
would mean rewriting its ``__call__``, which is all it has, so the check stays here (~20 lines).
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from ..config import Settings
from .errors import Refused, UnsupportedMediaType, error_response

__all__ = ["HostOriginGuard", "cors", "require_json"]

_LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
_UNSPECIFIED = frozenset({"0.0.0.0", "::", ""})
_EXEMPT = frozenset({"/healthz", "/readyz"})
# What a browser page may read from an allowed origin's answers besides the safe headers.
EXPOSED = ["x-semcache", "x-semcache-match", "x-semcache-similarity", "x-semcache-score", "x-semcache-threshold",
           "x-semcache-entry-id", "retry-after", "retry-after-ms",
           "x-ratelimit-limit-requests", "x-ratelimit-limit-tokens", "x-ratelimit-remaining-requests",
           "x-ratelimit-reset-requests", "x-ratelimit-reset-tokens", "x-request-id"]


def host_name(value: str) -> str:
    """Return the name part of a ``Host`` header (``[::1]:8080`` -> ``::1``, ``Example.com:80`` -> ``example.com``)."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:value.find("]")] if "]" in value else value
    name, _, port = value.rpartition(":")
    return name if name and port.isdigit() else value.rstrip(":")


def _origin(value: str) -> str:
    return value.strip().lower().rstrip("/")


class HostOriginGuard:
    """ASGI middleware: answer 403 (OpenAI's error shape) to a foreign ``Host`` or ``Origin``, before any route."""

    def __init__(self, app: Any, *, hosts: Iterable[str], origins: Iterable[str]) -> None:
        self.app = app
        hosts = {host_name(h) for h in hosts}
        self.any_host = "*" in hosts
        self.hosts = frozenset(_LOCAL_HOSTS | (hosts - _UNSPECIFIED - {"*"}))
        origins = {_origin(o) for o in origins}
        self.any_origin = "*" in origins
        self.origins = frozenset(origins - {"*"})

    def refusal(self, path: str, headers: Mapping[str, str], scheme: str = "http") -> Refused | None:
        """Return why a request is refused, or None. A same-origin request (the review page's own
        form and script: ``Origin`` is this very ``scheme://host``, a host already allowed) passes."""
        host = headers.get("host")
        if host is not None and not self.any_host and path not in _EXEMPT and host_name(host) not in self.hosts:
            return Refused(f"this sidecar does not serve the host {host[:100]!r}; add it to allowed_hosts if it is its own name",
                           code="host_not_allowed")
        origin = headers.get("origin")
        same = host is not None and _origin(origin or "") == f"{scheme}://{host.strip().lower()}"
        if origin is not None and not self.any_origin and _origin(origin) not in self.origins and not same:
            return Refused(f"requests from the origin {origin[:100]!r} are not allowed; add it to allowed_origins to let "
                           "browser pages there call the sidecar", code="origin_not_allowed")
        return None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {}
            for name, value in scope.get("headers", ()):
                headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
            refused = self.refusal(scope.get("path", ""), headers, scope.get("scheme", "http"))
            if refused is not None:
                return await error_response(refused)(scope, receive, send)
        await self.app(scope, receive, send)


def cors(settings: Settings) -> list[Middleware]:
    """Return the CORS middleware for ``settings.allowed_origins`` (none when the list is empty: no CORS headers)."""
    if not settings.allowed_origins:
        return []
    return [Middleware(CORSMiddleware, allow_origins=list(settings.allowed_origins), allow_methods=["GET", "POST", "DELETE"],
                       allow_headers=["*"], expose_headers=EXPOSED, allow_credentials=False, max_age=600)]


def require_json(headers: Mapping[str, str]) -> None:
    """Raise ``UnsupportedMediaType`` unless the body is declared ``application/json`` (a UTF-8 charset allowed)."""
    declared = headers.get("content-type", "")
    media, *params = (p.strip().lower() for p in declared.split(";"))
    charset = next((p.partition("=")[2].strip('"') for p in params if p.startswith("charset=")), "utf-8")
    if media != "application/json" or charset not in ("utf-8", "utf8"):
        shown = declared[:100] or "none"
        raise UnsupportedMediaType(f"the request body must be 'Content-Type: application/json' (UTF-8), got {shown!r}")
