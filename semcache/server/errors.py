"""Answer errors the way OpenAI does: ``{"error": {"message", "type", "param", "code"}}`` + status.

``error_response`` turns semcache's exceptions into that shape in one place, so every route
(and every SDK a client uses) sees the same statuses: 400 bad request (naming the field), 401
bad credentials, 403 a foreign Origin or Host, 404 an entry that does not exist, 413 body too large, 415 a body that is not JSON,
429 rate-limited or out of quota (``retry-after`` set), 502/504 upstream unreachable or silent, 503
the store (Redis) out of reach for a route that cannot do without it. (408 and 431, and the 400s
of requests that are not HTTP at all, are written by the connection itself: ``protocol.py``.)
"""

from __future__ import annotations

import logging
import math

from starlette.responses import JSONResponse

from ..errors import (
    AuthenticationFailed,
    BudgetExceeded,
    QuotaExhausted,
    RateLimited,
    RequestError,
    SemcacheError,
    StoreError,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamStatusError,
    UpstreamTimeout,
)

__all__ = ["BodyTooLarge", "NotFound", "Refused", "UnsupportedMediaType", "error_body", "error_response", "rate_limit_headers"]

log = logging.getLogger("semcache")


class BodyTooLarge(SemcacheError):
    """The request body is over ``max_body_bytes``."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"request body is larger than the limit of {limit} bytes")
        self.limit = limit


class UnsupportedMediaType(SemcacheError):
    """The request body is not declared ``application/json`` (415)."""


class NotFound(SemcacheError):
    """What the request names does not exist (404): an entry id given to feedback, say."""

    def __init__(self, message: str, *, param: str | None = None, code: str = "not_found") -> None:
        super().__init__(message)
        self.param, self.code = param, code


class Refused(SemcacheError):
    """The request came from an Origin or for a Host the sidecar does not serve (403)."""

    def __init__(self, message: str, *, code: str) -> None:
        super().__init__(message)
        self.code = code


def _printable(text: object) -> str | None:
    # A message may quote an upstream answer (a lone surrogate cannot be encoded as UTF-8), and a
    # compatible server's error code may be a number: the shape promises str or null.
    return None if text is None else str(text).encode("utf-8", "replace").decode("utf-8")


def error_body(message: str, type_: str = "invalid_request_error", *, param: str | None = None, code: str | None = None) -> dict:
    """Return OpenAI's error body."""
    return {"error": {"message": _printable(message), "type": type_, "param": _printable(param), "code": _printable(code)}}


def rate_limit_headers(retry_after: float, *, rpm: int | None = None, tpm: int | None = None) -> dict[str, str]:
    """Return the headers that make clients back off: ``retry-after`` (whole seconds), ``-ms``, ``x-ratelimit-*``."""
    wait = max(0.0, retry_after)
    reset = f"{max(1, math.ceil(wait * 1000))}ms"
    headers = {
        "retry-after": str(max(1, math.ceil(wait))),
        "retry-after-ms": str(max(1, math.ceil(wait * 1000))),
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": reset,
        "x-ratelimit-reset-tokens": reset,
    }
    if rpm is not None:
        headers["x-ratelimit-limit-requests"] = str(rpm)
    if tpm is not None:
        headers["x-ratelimit-limit-tokens"] = str(tpm)
    return headers


def _json(status: int, body: dict, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(exc: BaseException, *, rpm: int | None = None, tpm: int | None = None) -> JSONResponse:
    """Return the OpenAI-shaped response for an exception (500 for one semcache did not expect)."""
    if isinstance(exc, RequestError):
        return _json(400, error_body(str(exc), param=exc.field, code="invalid_value"))
    if isinstance(exc, BodyTooLarge):
        return _json(413, error_body(str(exc), code="request_too_large"))
    if isinstance(exc, UnsupportedMediaType):
        return _json(415, error_body(str(exc), param="content-type", code="unsupported_media_type"))
    if isinstance(exc, NotFound):
        return _json(404, error_body(str(exc), param=exc.param, code=exc.code))
    if isinstance(exc, Refused):
        return _json(403, error_body(str(exc), "permission_error", code=exc.code))
    if isinstance(exc, RateLimited):
        return _json(429, error_body(str(exc), "requests", code=exc.code or "rate_limit_exceeded"),
                     rate_limit_headers(exc.retry_after, rpm=rpm, tpm=tpm))
    if isinstance(exc, QuotaExhausted):
        return _json(429, error_body(str(exc), "insufficient_quota", code="insufficient_quota"))
    if isinstance(exc, BudgetExceeded):
        return _json(429, error_body(str(exc), "insufficient_quota", code="budget_exceeded"))
    if isinstance(exc, AuthenticationFailed):
        status = exc.status_code if exc.status_code in (401, 403) else 401
        return _json(status, error_body(str(exc), "authentication_error" if status == 401 else "permission_error",
                                        code=exc.code or "invalid_api_key"))
    if isinstance(exc, UpstreamTimeout):
        return _json(504, error_body(str(exc), "upstream_error", code="upstream_timeout"))
    if isinstance(exc, UpstreamConnectionError):
        return _json(502, error_body(str(exc), "upstream_error", code="upstream_unreachable"))
    if isinstance(exc, UpstreamStatusError):
        # The provider's own verdict on a request (400, 404, 422) is the client's to see; the rest is ours.
        status = exc.status_code if exc.status_code and 400 <= exc.status_code < 500 else 502
        type_ = "invalid_request_error" if status < 500 else "upstream_error"
        return _json(status, error_body(str(exc), type_, code=exc.code))
    if isinstance(exc, UpstreamError):
        return _json(502, error_body(str(exc), "upstream_error", code=exc.code))
    if isinstance(exc, StoreError):  # the shared store (Redis) is out of reach: an admin route, or the stats
        return _json(503, error_body(str(exc), "server_error", code="store_unavailable"), {"retry-after": "1"})
    log.exception("semcache sidecar: unexpected error", exc_info=exc)
    return _json(500, error_body("the semcache sidecar failed to answer; see its log", "server_error", code="internal_error"))
