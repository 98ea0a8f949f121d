"""Run an ASGI app on a loopback port in a background thread: ``with running_server(app) as url: ...``.

Used by ``make demo``, the benchmarks and the tests to run the mock upstream or the sidecar
in-process on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from typing import Iterator

import uvicorn

__all__ = ["running_server"]

_START_TIMEOUT_S = 10.0


@contextlib.contextmanager
def running_server(app, *, host: str = "127.0.0.1", port: int = 0, **options) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a background thread on a free port; yield its base URL.

    The socket is bound before the thread starts, so the port is known and no other process
    can take it. On exit the server finishes open requests, stops, and the thread is joined;
    an error inside the server thread is re-raised here. ``options`` go to ``uvicorn.Config``
    (``http=server.protocol.protocol_class(settings)``: the sidecar's own connections).
    """
    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP; without
    # it every response waits ~40 ms for a delayed ACK (measured: 44 ms vs 1 ms a request).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    port = sock.getsockname()[1]
    # log_config=None: uvicorn must not reconfigure the caller's logging. lifespan on: an app that
    # opens connections at startup (the sidecar) closes them at shutdown.
    config = uvicorn.Config(app, **{"lifespan": "on", "log_config": None, "access_log": False, "timeout_graceful_shutdown": 2,
                                    **options})
    server = uvicorn.Server(config)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # re-raised in the test's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"uvicorn-{port}", daemon=True)
    thread.start()
    try:
        for _ in range(int(_START_TIMEOUT_S / 0.01)):
            if server.started or failure or not thread.is_alive():
                break
            time.sleep(0.01)
        if not server.started:
            raise OSError(f"server on {host}:{port} did not start") from (failure[0] if failure else None)
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(_START_TIMEOUT_S)
        sock.close()
    if failure:
        raise failure[0]
