"""The sidecar's HTTP/1.1 connections: uvicorn's httptools protocol with limits, timeouts and OpenAI-shaped refusals.

uvicorn accepts any number of headers of any size, waits forever for a request's headers and
body, writes its own refusals as ``text/plain``, and logs every request's query string. A probe
of the sidecar (issue #18) sent a 1 MB header, 2,000 headers, and a chunked body that never ends
(it held its connection, and the request's task, indefinitely); a key sent as ``?api_key=...``
was written in clear to the access log. ``protocol_class(settings)`` returns uvicorn's
``HttpToolsProtocol`` with, per connection:

- **Header limits**: at most ``max_header_bytes`` (request line and headers together) and
  ``max_headers`` headers, else ``431`` (``request_header_fields_too_large``) and the connection
  closed. Bytes of headers still arriving count too, so a header that never ends is cut off at
  the limit (plus one read of slack: ``READ_SLACK``), not buffered.
- **Timeouts**: a request's headers must arrive within ``header_timeout`` seconds of its first
  byte (or of the connection), its body within ``body_timeout`` seconds of its headers; else
  ``408`` (``request_timeout``) when no answer has started, and the connection is closed: the
  request's task sees the client gone and ends. A slow client holds nothing past these bounds.
- **Refusals in OpenAI's error shape**: what the HTTP parser refuses (a bad method, a bad
  ``Content-Length``, header folding, a bare LF, ...) is answered ``400`` with
  ``{"error": {"message", "type": "invalid_request_error", "param": null, "code": "invalid_http_request"}}``
  instead of uvicorn's plain ``Invalid HTTP request received.``; ``Connection: close`` either way.
- **An access log without secrets**: the query string of each access-log line has the values of
  known key parameters (``SECRET_PARAMS``: ``api_key``, ``key``, ``token``, ``access_token``, ...)
  replaced by ``[redacted]``.

A client that does not speak HTTP/1.1 (an HTTP/2 preface, a TLS handshake sent to the plain
port) gets the same JSON 400, which it cannot read: it sees its connection fail.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from ..config import Settings

__all__ = ["READ_SLACK", "SECRET_PARAMS", "protocol_class", "redact_query"]

# Query parameters whose values are credentials (compared case-insensitively, "-" read as "_").
SECRET_PARAMS = frozenset({
    "api_key", "apikey", "key", "token", "access_token", "refresh_token", "id_token", "auth", "authorization",
    "password", "passwd", "pwd", "secret", "client_secret", "signature", "sig", "x_api_key", "session", "sessionid",
    "code", "jwt", "bearer", "credential", "credentials", "private_key",
})
REDACTED = "[redacted]"
# asyncio reads a socket at most 256 KiB at a time: the read that completes the headers may carry that
# much of the body, so bytes seen before the headers complete may exceed the header limit by one read.
READ_SLACK = 256 * 1024


def redact_query(target: str) -> str:
    """Return a request target (``/path?query``) with the values of ``SECRET_PARAMS`` replaced by ``[redacted]``."""
    path, sep, query = target.partition("?")
    if not sep:
        return target
    parts = []
    for piece in query.split("&"):
        name, eq, _ = piece.partition("=")
        decoded = parse_qsl(name + "=x", keep_blank_values=True)
        canonical = (decoded[0][0] if decoded else name).strip().lower().replace("-", "_")
        if canonical in SECRET_PARAMS or canonical.endswith(("_key", "_token", "_secret", "_password")):
            piece = f"{name}={REDACTED}" if eq else name
        parts.append(piece)
    return f"{path}?{'&'.join(parts)}"


class _RedactingAccessLog:
    """The ``uvicorn.access`` logger, with each line's request target redacted (``redact_query``)."""

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def info(self, msg: str, *args: Any, **kwargs: Any) -> None:
        # uvicorn logs '%s - "%s %s HTTP/%s" %d' with (client, method, target, version, status).
        if len(args) >= 3 and isinstance(args[2], str):
            args = (*args[:2], redact_query(args[2]), *args[3:])
        self._logger.info(msg, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._logger, name)


class _Refusal(Exception):
    """Raised inside a parser callback: the request is refused with ``status`` (httptools re-raises it wrapped)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def refusal_bytes(status: int, code: str, message: str) -> bytes:
    """A complete HTTP/1.1 response in OpenAI's error shape, closing the connection."""
    body = json.dumps({"error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}}).encode()
    head = b"".join([STATUS_LINE[status], b"content-type: application/json\r\n",
                     b"content-length: %d\r\n" % len(body), b"connection: close\r\n\r\n"])
    return head + body


class SidecarProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the limits of ``protocol_class``; its class attributes are the settings."""

    max_header_bytes = 64 * 1024
    max_headers = 100
    header_timeout = 10.0
    body_timeout = 30.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_logger = _RedactingAccessLog(self.access_logger)  # type: ignore[assignment]
        self._head_bytes = 0  # request line and headers parsed so far
        self._head_count = 0
        self._unparsed = 0  # bytes received since the request began, while its headers are incomplete
        self._in_head = True
        self._refusal: _Refusal | None = None
        self._timer: Any = None

    # -- timers ----------------------------------------------------------------------------
    def _arm(self, seconds: float, what: str) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, self._expired, what, seconds)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self, what: str, seconds: float) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        cycle = self.cycle
        answering = cycle is not None and cycle.response_started and not cycle.response_complete
        if not answering:  # (a kept-alive connection's previous cycle is complete: this request gets its 408 too)
            self.logger.warning("semcache sidecar: %s not received within %gs; closing the connection", what, seconds)
            self.transport.write(refusal_bytes(408, "request_timeout",
                                               f"the request's {what} did not arrive within {seconds:g} seconds"))
        self.transport.close()  # connection_lost tells the request's task its client is gone

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: Any) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(self.header_timeout, "headers")

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        if self._in_head:
            self._unparsed += len(data)
            if self._unparsed > self.max_header_bytes + READ_SLACK:
                self._refuse(_Refusal(431, "request_header_fields_too_large",
                                      f"the request's headers are larger than {self.max_header_bytes} bytes"))
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
        except httptools.HttpParserError as exc:
            refusal = self._refusal or _Refusal(400, "invalid_http_request", f"invalid HTTP request: {_reason(exc)}")
            self.logger.warning("semcache sidecar: refused a request: %s", refusal.message)
            self._refuse(refusal)

    def _refuse(self, refusal: _Refusal) -> None:
        self._disarm()
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # its task (if any) ends; nothing it sends reaches the wire
            self.cycle.message_event.set()
        if not self.transport.is_closing():
            self.transport.write(refusal_bytes(refusal.status, refusal.code, refusal.message))
            self.transport.close()

    def send_400_response(self, msg: str) -> None:  # what uvicorn itself would refuse: in OpenAI's shape too
        self._refuse(_Refusal(400, "invalid_http_request", msg))

    # -- parser callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = self._head_count = 0
        self._in_head = True
        self._unparsed = 0
        self._arm(self.header_timeout, "headers")

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        self._count(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_count += 1
        if self._head_count > self.max_headers:
            self._refusal = _Refusal(431, "request_header_fields_too_large",
                                     f"the request has more than {self.max_headers} headers")
            raise self._refusal
        self._count(len(name) + len(value) + 4)
        super().on_header(name, value)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > self.max_header_bytes:
            self._refusal = _Refusal(431, "request_header_fields_too_large",
                                     f"the request's headers are larger than {self.max_header_bytes} bytes")
            raise self._refusal

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._arm(self.body_timeout, "body")
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()


def _reason(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text.encode("ascii", "replace").decode("ascii")[:200]


def protocol_class(settings: Settings) -> type[SidecarProtocol]:
    """Return the HTTP protocol class for uvicorn (``uvicorn.Config(http=...)``) with ``settings``' limits."""
    return type("SidecarProtocol", (SidecarProtocol,), {
        "max_header_bytes": settings.max_header_bytes, "max_headers": settings.max_headers,
        "header_timeout": settings.header_timeout, "body_timeout": settings.body_timeout,
    })
