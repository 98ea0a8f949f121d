"""``make demo-cluster``: two sidecar replicas on one Redis, in front of the bundled mock upstream.

Everything runs here, on loopback, with no API key and no system service: a ``redis-server`` of
the demo's own (a temporary directory, a free port, ``maxmemory-policy noeviction``), the mock
OpenAI upstream with a tight RPM limit, and two ``semcache serve --store redis://...`` processes
(the packaged model, default settings). The generated workload (repeats, paraphrases, near
misses) goes through the official openai SDK, alternating between the two replicas. It prints
what the replicas shared: answers fetched upstream by one replica and then served by the other,
the combined upstream calls against the one limit they pace under, and the 429s (none).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

from ..testing.processes import free_port, stop_process

__all__ = ["local_redis", "main"]


@contextlib.contextmanager
def local_redis(directory: str | os.PathLike, *, persistence: bool = False) -> Iterator[str]:
    """Start a ``redis-server`` of our own in ``directory`` on a free loopback port; yield its URL; stop it.

    It runs with the settings the README recommends for semcache: ``maxmemory-policy noeviction``
    and, with ``persistence``, the append-only file (``appendfsync everysec``). Raises
    ``RuntimeError`` when ``redis-server`` is not installed (``make redis-server`` installs it).
    """
    binary = shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/sbin/redis-server", "/usr/local/bin/redis-server") if os.access(p, os.X_OK)), None)
    if binary is None:
        raise RuntimeError("redis-server is not installed: run `make redis-server` (Debian's package, as root) or "
                           "`sudo apt-get install redis-server` / `brew install redis`")
    import redis

    port = free_port()
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory), "--save", "",
            "--protected-mode", "no", "--maxmemory-policy", "noeviction", "--logfile", "redis.log"]
    args += ["--appendonly", "yes", "--appendfsync", "everysec"] if persistence else ["--appendonly", "no"]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1, socket_connect_timeout=1)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {process.returncode}; see {directory}/redis.log")
            with contextlib.suppress(redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                if client.ping():
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within 10 s; see {directory}/redis.log")
            time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        stop_process(process, 10)


class _Replica:
    """``semcache serve --store URL`` as a process of its own."""

    def __init__(self, name: str, store: str, upstream: str, rpm: int, directory: Path) -> None:
        self.name = name
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        directory.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "DEMO_UPSTREAM_KEY": "sk-mock"}
        command = [sys.executable, "-m", "semcache.cli", "serve", "--store", store, "--port", str(self.port),
                   "--cache-dir", str(directory), "--upstream-base-url", upstream, "--upstream-api-key-env",
                   "DEMO_UPSTREAM_KEY", "--no-pass-through-key", "--shared-cache", "--rpm", str(rpm), "--log-level", "warning"]
        self.log_path = directory / "sidecar.log"
        self.log = self.log_path.open("wb")
        self.process = subprocess.Popen(command, env=env, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 240.0) -> None:
        import httpx2

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.flush()
                raise RuntimeError(f"replica {self.name} exited with {self.process.returncode}:\n"
                                   + self.log_path.read_text(errors="replace")[-2000:])
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"replica {self.name} did not start within {timeout:.0f} s (log: {self.log_path})")

    def stop(self) -> None:
        stop_process(self.process)
        self.log.close()


def _busiest_minute(times: list[float]) -> int:
    times, best, start = sorted(times), 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 60:
            start += 1
        best = max(best, end - start + 1)
    return best


class _Arrivals:
    """Wrap the mock upstream: the time of every chat request that reached it."""

    def __init__(self, app) -> None:
        self.app, self.times = app, []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/v1/chat/completions":
            self.times.append(time.monotonic())
        await self.app(scope, receive, send)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m semcache.tools.cluster_demo", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=150, help="requests to replay (default 150)")
    parser.add_argument("--rpm", type=int, default=30, help="the mock upstream's requests-per-minute limit (default 30)")
    parser.add_argument("--latency-ms", type=float, default=100, help="the mock upstream's latency per answer")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--show", type=int, default=16, help="print this many requests one by one")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    import httpx2
    import openai

    from semcache.testing.mock import create_app as create_mock
    from semcache.testing.serving import running_server
    from semcache.tools.workload import generate

    workload = generate(args.requests, seed=args.seed)
    print(f"semcache cluster demo: a redis-server of its own, the mock upstream at {args.rpm} RPM, and two sidecar\n"
          f"replicas (semcache serve --store redis://...) sharing one cache and one quota. {len(workload)} requests\n"
          "alternate between the replicas. Starting Redis and the replicas (each loads the model) ...", flush=True)
    mock = _Arrivals(create_mock(rpm=args.rpm, latency_ms=args.latency_ms, seed=args.seed))
    with tempfile.TemporaryDirectory(prefix="semcache-cluster-demo-") as tmp, local_redis(tmp) as redis_url, \
            running_server(mock) as mock_url:
        replicas = [_Replica(name, redis_url, mock_url + "/v1", args.rpm, Path(tmp) / name) for name in ("A", "B")]
        try:
            for replica in replicas:
                replica.wait_ready()
            clients = [openai.OpenAI(base_url=r.url + "/v1", api_key="sk-demo-user", max_retries=0, timeout=180)
                       for r in replicas]
            fetched_by: dict[int, str] = {}  # entry id -> the replica whose miss stored it
            intent_of: dict[int, str] = {}
            served = {"A": {"miss": 0, "hit": 0}, "B": {"miss": 0, "hit": 0}}
            across = wrong = refused = 0
            started = time.monotonic()
            for n, request in enumerate(workload):
                name, client = ("A", clients[0]) if n % 2 == 0 else ("B", clients[1])
                try:
                    raw = client.chat.completions.with_raw_response.create(**request.body)
                except openai.RateLimitError:
                    refused += 1
                    continue
                status, entry = raw.headers.get("x-semcache", "?"), int(raw.headers.get("x-semcache-entry-id", "0") or 0)
                served[name]["hit" if status == "hit" else "miss"] += 1
                if status == "miss" and entry:
                    fetched_by[entry], intent_of[entry] = name, request.intent
                elif status == "hit":
                    across += fetched_by.get(entry, name) != name
                    wrong += intent_of.get(entry, request.intent) != request.intent
                if n < args.show:
                    note = f"  (fetched by {fetched_by[entry]})" if status == "hit" and fetched_by.get(entry, name) != name else ""
                    print(f"  [{n + 1:3d}] replica {name}: {status:<4} {request.text}{note}", flush=True)
                elif n == args.show:
                    print("  ... (the rest quietly)", flush=True)
            elapsed = time.monotonic() - started
            for client in clients:
                client.close()
            upstream = httpx2.get(mock_url + "/mock/stats").json()
        finally:
            for replica in replicas:
                replica.stop()
    calls = upstream["by_route"].get("/v1/chat/completions", 0)
    print(f"""
Done in {elapsed:.1f} s.

What the two replicas shared, on {len(workload)} requests:
  replica A                      {served['A']['hit']} hits, {served['A']['miss']} misses
  replica B                      {served['B']['hit']} hits, {served['B']['miss']} misses
  hits of answers the OTHER
    replica fetched upstream     {across}  (one cache: an answer stored by A is a hit on B, and back)
  upstream calls, both replicas  {calls}, at most {_busiest_minute(mock.times)} in any 60 s (the one limit: {args.rpm} RPM)
  429s from the upstream         {upstream['responses_429']}  (the replicas pace under one shared limiter in Redis)
  429s to the callers            {refused}
  wrong answers served           {wrong}
""")
    return 0 if refused == 0 and upstream["responses_429"] == 0 and wrong == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
