"""A real ``redis-server`` for the Redis tests: started on a free loopback port in a temporary
directory, stopped (or killed, or restarted on the same port) by the test, never one already running.

Import the fixtures into a test module: ``from redis_server import redis_server, start_redis``.
``redis_server`` is one server per test module (tests keep apart with distinct key prefixes);
``start_redis(persistence=..., password=...)`` starts a server of the test's own, stopped after it.
Without ``redis-server`` on PATH the fixtures fail (never skip) and say how to install it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import redis

from semcache.testing.processes import free_port

__all__ = ["RedisServer", "fresh_prefix", "redis_server", "start_redis"]

INSTALL = ("redis-server is not installed: `make test` installs it (as root, with apt-get), or run "
           "`sudo apt-get install redis-server` (Debian/Ubuntu) / `brew install redis` (macOS)")


def _binary() -> str:
    found = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server") if os.access(p, os.X_OK)), None)
    if found is None:
        pytest.fail(INSTALL, pytrace=False)
    return found


class RedisServer:
    """One redis-server process on 127.0.0.1, its data and log in ``directory``.

    ``persistence`` turns on the append-only file with an fsync per write, so even a SIGKILL
    loses nothing acknowledged; without it a restart comes back empty.
    """

    def __init__(self, directory: Path, *, persistence: bool = False, password: str | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.persistence = persistence
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        """Start the server (on the same port as before, after a stop) and wait until it answers PING."""
        args = [_binary(), "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--logfile", "redis.log", "--daemonize", "no", "--save", "", "--protected-mode", "no",
                "--maxmemory-policy", "noeviction"]
        args += ["--appendonly", "yes", "--appendfsync", "always"] if self.persistence else ["--appendonly", "no"]
        if self.password:
            args += ["--requirepass", self.password]
        self.process = subprocess.Popen(args, cwd=self.directory, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        client = redis.Redis(host="127.0.0.1", port=self.port, password=self.password, socket_timeout=1, socket_connect_timeout=1)
        deadline = time.monotonic() + timeout
        try:
            while True:
                if self.process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with {self.process.returncode}: {self._log_tail()}")
                try:
                    if client.ping():
                        return self
                except redis.exceptions.BusyLoadingError:
                    pass
                except redis.exceptions.ConnectionError:
                    pass
                if time.monotonic() > deadline:
                    self.kill()
                    raise RuntimeError(f"redis-server did not answer within {timeout}s: {self._log_tail()}")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self) -> None:
        """Stop the server as an operator would (SIGTERM: it flushes its append-only file)."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """Kill the server at once (SIGKILL: a crash)."""
        self._end(signal.SIGKILL)

    def restart(self, *, kill: bool = False) -> None:
        self.kill() if kill else self.stop()
        self.start()

    def _end(self, sig: int) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(sig)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()

    def _log_tail(self) -> str:
        path = self.directory / "redis.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        if self.process is not None and self.process.stderr is not None and self.process.poll() is not None:
            text += self.process.stderr.read().decode(errors="replace")
        return text[-2000:] or "(no log)"


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    """One redis-server for the tests of a module; keep tests apart with ``fresh_prefix()``."""
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture
def start_redis(tmp_path):
    """Start redis-servers of this test's own: ``start_redis(persistence=True, password="...")``."""
    started = []

    def start(**options) -> RedisServer:
        server = RedisServer(tmp_path / f"redis{len(started)}", **options)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.kill()


def fresh_prefix() -> str:
    """A key prefix no other test uses."""
    return f"test-{uuid.uuid4().hex[:12]}"
