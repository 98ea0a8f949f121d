"""The sidecar's HTTP connections (#18 items 3, 4, 5): raw sockets against a real uvicorn with ``protocol_class``.

- What the HTTP parser refuses is a 400 in OpenAI's error shape, not uvicorn's plain text.
- Header size and count limits (431), a header and a body read timeout (408; the connection is
  closed and nothing stays held): a body that never ends no longer holds its connection open.
- A key sent in the query string never reaches the access log (``semcache serve``'s real log,
  captured from a child process).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2
import pytest

from conftest import WordEmbedder
from semcache import MatchPolicy, SemanticCache
from semcache.config import Settings
from semcache.server import create_app
from semcache.server.protocol import protocol_class, redact_query
from semcache.testing.mock import create_app as create_mock
from semcache.testing.processes import free_port, stop_process
from semcache.testing.serving import running_server

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent
TIMEOUTS = {"header_timeout": 1.0, "body_timeout": 1.0}
CHAT = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("protocol"))
    with running_server(create_mock()) as mock:
        settings = Settings(cache_dir=directory, upstream_base_url=mock + "/v1", max_attempts=1, **TIMEOUTS)
        with SemanticCache(directory, embedder=WordEmbedder(), policy=MatchPolicy.cosine(0.9)) as cache:
            with running_server(create_app(settings, cache=cache, environ={}), http=protocol_class(settings)) as url:
                host, port = url.removeprefix("http://").split(":")
                yield url, (host, int(port))


def exchange(address, data: bytes, *, pause: float | None = None, timeout: float = 10.0) -> tuple[bytes, float]:
    """Send ``data`` on a fresh connection, read until the server closes it; return (what came back, seconds)."""
    started = time.monotonic()
    with socket.create_connection(address, timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):  # refused mid-send: read what it answered
            pass
        received = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
    return received, time.monotonic() - started


def parse(raw: bytes) -> tuple[int, dict, dict]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.lower().split(": ", 1) for line in lines[1:])
    return status, headers, json.loads(body)


def assert_openai_error(raw: bytes, status: int, code: str) -> dict:
    got, headers, body = parse(raw)
    assert got == status and headers["content-type"] == "application/json" and headers["connection"] == "close", raw[:300]
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code and error["message"], error
    return error


MALFORMED = {
    "bad method": b"GE(T / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    "bad content-length": b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: abc\r\n\r\n",
    "two content-lengths": b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
    "header folding": b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\r\n  folded\r\n\r\n",
    "bare LF": b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n",
    "space before colon": b"GET /healthz HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n",
    "bad chunk size": b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    "bad version": b"GET /healthz HTTP/9.9\r\nHost: 127.0.0.1\r\n\r\n",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_what_the_parser_refuses_is_a_400_in_openais_shape(sidecar, name):
    """Before: ``400`` with ``text/plain`` ``Invalid HTTP request received.``"""
    _, address = sidecar
    raw, _ = exchange(address, MALFORMED[name])
    error = assert_openai_error(raw, 400, "invalid_http_request")
    assert error["type"] == "invalid_request_error" and error["param"] is None


def test_an_http2_preface_and_a_tls_hello_get_the_same_400(sidecar):
    """An HTTP/2 client (prior knowledge) or a TLS client on the plain port cannot read an HTTP/1.1 answer: it sees
    its connection fail. What it gets is still the JSON 400, and the server stays up."""
    url, address = sidecar
    for data in (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", bytes.fromhex("16030100a5010000a10303") + os.urandom(32)):
        raw, seconds = exchange(address, data)
        assert_openai_error(raw, 400, "invalid_http_request")
        assert seconds < 5
    assert httpx2.get(url + "/healthz").status_code == 200


def test_too_many_headers_is_a_431(sidecar):
    """Before: 2,000 headers were accepted."""
    _, address = sidecar
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(2000))
    raw, _ = exchange(address, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n" + headers + b"\r\n")
    assert "more than 100 headers" in assert_openai_error(raw, 431, "request_header_fields_too_large")["message"]


@pytest.mark.parametrize("size", [70 * 1024, 1024 * 1024])
def test_a_header_past_the_size_limit_is_a_431(sidecar, size):
    """Before: a 1 MB header was accepted (and buffered whole)."""
    _, address = sidecar
    raw, _ = exchange(address, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
    assert_openai_error(raw, 431, "request_header_fields_too_large")


def test_a_header_that_never_ends_is_cut_off_at_the_limit_plus_one_read(sidecar):
    """Sent without an end: refused once the limit (and one read of slack) is passed, not buffered without
    bound. The client is cut off long before it could send 64 MB (socket buffers hold a few MB at most)."""
    _, address = sidecar
    total = 64 * 1024 * 1024
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: ")
        sent, refused = 0, b""
        try:
            while sent < total:
                sock.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            refused = sock.recv(65536)
        except ConnectionResetError:
            pass
    assert sent < total and sent >= 64 * 1024  # cut off, after the limit
    assert refused == b"" or b"431" in refused.split(b"\r\n", 1)[0]


def test_a_chunked_body_that_never_ends_is_a_408_and_holds_nothing(sidecar):
    """Before: a chunked body that never ends held its connection (and the request's task) indefinitely."""
    url, address = sidecar
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"mod\r\n")
    raw, seconds = exchange(address, head)
    error = assert_openai_error(raw, 408, "request_timeout")
    assert "body" in error["message"] and 0.9 <= seconds < 5
    answer = httpx2.post(url + "/v1/chat/completions", content=CHAT, headers={"content-type": "application/json",
                                                                              "authorization": "Bearer sk-x"})
    assert answer.status_code == 200  # the server goes on answering


def test_a_body_shorter_than_its_content_length_is_a_408(sidecar):
    _, address = sidecar
    raw, seconds = exchange(address, b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                                     b"Content-Length: 500\r\n\r\n{\"model\":")
    assert_openai_error(raw, 408, "request_timeout") and seconds < 5


def test_headers_that_never_complete_are_a_408(sidecar):
    _, address = sidecar
    raw, seconds = exchange(address, b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
    assert "headers" in assert_openai_error(raw, 408, "request_timeout")["message"] and seconds < 5


def test_a_kept_alive_connection_whose_next_request_stalls_gets_its_408(sidecar):
    _, address = sidecar
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")  # never completed
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert_openai_error(received, 408, "request_timeout")


def test_a_keep_alive_connection_answers_several_requests_within_the_limits(sidecar):
    _, address = sidecar
    request = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    with socket.create_connection(address, timeout=10) as sock:
        for _ in range(3):
            sock.sendall(request)
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200") and b'"ok"' in answer
            time.sleep(0.6)  # idle between requests: no header timer runs while idle (uvicorn's keep-alive does)


# -- the access log ---------------------------------------------------------------------------------

@pytest.mark.parametrize("target, expected", [
    ("/v1/models?api_key=sk-secret&x=1", "/v1/models?api_key=[redacted]&x=1"),
    ("/a?API-KEY=sk-1&key=k&token=t&access_token=a&openai_api_key=o&keep=me",
     "/a?API-KEY=[redacted]&key=[redacted]&token=[redacted]&access_token=[redacted]&openai_api_key=[redacted]&keep=me"),
    ("/a?api%5Fkey=sk-2", "/a?api%5Fkey=[redacted]"),
    ("/healthz", "/healthz"),
    ("/a?key", "/a?key"),
])
def test_redact_query(target, expected):
    assert redact_query(target) == expected


def test_a_key_in_the_query_string_never_reaches_the_access_log(tmp_path):
    """Before: ``GET /v1/models?api_key=sk-...`` was written in clear by uvicorn's access log."""
    port = free_port()
    script = ("import sys; sys.path.insert(0, 'tests'); from conftest import WordEmbedder; from semcache.config import Settings; "
              "from semcache.server import create_app, serve; "
              f"s = Settings(port={port}, cache_dir={str(tmp_path / 'c')!r}, upstream_base_url='http://127.0.0.1:9/v1'); "
              "serve(s, log_level='info', app=create_app(s, environ={}, embedder=WordEmbedder()))")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SEMCACHE_", "OPENAI_"))}
    env.update(HF_HUB_OFFLINE="1", PYTHONPATH=str(ROOT))
    log_path = tmp_path / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if httpx2.get(url + "/healthz", timeout=1).status_code == 200:
                        break
                except httpx2.HTTPError:
                    time.sleep(0.1)
            httpx2.get(url + "/healthz?api_key=sk-secret-one&probe=1")
            httpx2.post(url + "/v1/chat/completions?key=sk-secret-two", content=b"{}", headers={"content-type": "application/json"})
            httpx2.get(url + "/semcache/stats?access_token=sk-secret-three")
        finally:
            stop_process(process)
    text = log_path.read_text(errors="replace")
    assert "GET /healthz?api_key=[redacted]&probe=1 HTTP/1.1" in text, text[-2000:]  # the access log is on, and redacted
    assert "sk-secret" not in text, text[-2000:]
