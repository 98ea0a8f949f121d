"""Sidecar replicas on one Redis (scale-out): one quota, shared answers, per-replica speed, start-up.

    python -m benchmarks.bench_cluster [--smoke] [--out DIR] [--rpm N]

Everything runs on loopback against a ``redis-server`` this script starts (a temporary
directory, no persistence, ``maxmemory-policy noeviction``) and the bundled mock upstream:

1. **One quota.** Two and three replicas (``semcache serve``'s app as separate processes, the
   fake word embedder: the quota is the point, not the model) in front of a mock (a process of
   its own, as a provider is, timing arrivals on its own clock) that allows
   ``--rpm`` requests a minute (a token bucket like OpenAI's). A burst of 2 x rpm distinct misses
   is sent at once, round-robin over the replicas, through the openai SDK; the replicas' ``deadline``
   is 120 s, so the burst's second half waits for the next minute (under the default 60 s it is
   refused at once with 429 and ``Retry-After``, issue 18). Shared: the replicas
   pace under one ``RedisRateLimiter``. Local: the same replicas, each with its own directory
   and its own limiter at the same rpm (what N independent replicas do). Counted at the mock
   (every arrival and its status, timed): attempts and admissions in the busiest 60-second
   window, 429s it sent; counted at the callers: answers and 429s. The two shared runs go side
   by side (each waits out the minute after its first rpm calls), then the two local ones. The
   shared limiter's window is 60 s plus ``shared_limiter_margin`` (2 s): on this machine the
   burst's first admitted calls reached the mock up to ~1.5 s later than the next minute's did,
   and with an exact 60 s the mock's token bucket saw one call too many.
2. **Write -> hit on another replica.** Replica A answers a miss (stores it); as soon as A's
   answer arrives the same question is sent to replica B: the time from A's answer to B's hit
   (and for a paraphrase, B's semantic hit). Target: p99 <= 50 ms.
3. **Per-replica hit throughput vs the disk store**, and **semantic hits vs the batched-embedding
   bound**: two sidecars in this process, one on the Redis store and one on a local directory
   (the single-process default), both with the real packaged model behind ``BatchingEmbedder``
   and the default ``MatchPolicy()`` at threshold 0.95 (as ``bench_server``); the load comes from
   a separate process (``bench_server.run_phase``: raw HTTP/1.1, N keep-alive connections).
   Each phase runs disk, Redis, Redis, disk (the machine's other load falls on both alike) and
   each store's best of its two runs counts. Targets: Redis hit
   throughput >= 0.8x the disk store's (exact and semantic); semantic hits >= 0.5x the model's
   batched bound (texts/s of ``embed`` on batches of 32, measured before and between the phases
   of this run: the best of those, as the machine is shared and its load varies).
4. **Start-up with and without a snapshot** at 50,000 entries (384-dim vectors, one partition,
   so past the IVF threshold): time to open a cache on the Redis store until its index is ready,
   from a full scan vs from the replica's snapshot file plus a replay of 1,000 newer writes.

Results: ``cluster.json`` and ``cluster.png``. ``--smoke`` shrinks every part to seconds (and
uses the fake embedder throughout, two replicas only): it checks the script, not the numbers.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

from benchmarks.common import machine_info, summarize, write_json  # noqa: E402
from semcache.testing.processes import free_port, stop_process  # noqa: E402
from semcache.tools.cluster_demo import local_redis  # noqa: E402

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parent.parent
WINDOW_S = 60.0
_WORD = re.compile(r"\w+")


class WordVectors:
    """A deterministic embedder for replicas whose model is not the point: a bag of random word directions."""

    def __init__(self, dim: int = 64, model_id: str = "bench-words") -> None:
        self.dim, self.model_id = dim, model_id

    def embed(self, texts):
        rows = []
        for text in texts:
            v = np.zeros(self.dim)
            for word in _WORD.findall(text.lower()) or ["<empty>"]:
                seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little")
                v += np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        return np.asarray(rows, np.float32).reshape(len(texts), self.dim)


def _unique(words: int = 4) -> str:
    """A question that shares no word with any other, so the fake embedder never matches it by accident."""
    return " ".join(uuid.uuid4().hex[:10] for _ in range(words))


# -- processes: redis-server and replicas -------------------------------------------------------


class Replica:
    """``python -m benchmarks.bench_cluster --replica``: the sidecar with the fake embedder, as a process."""

    def __init__(self, directory: Path, upstream: str, **settings) -> None:
        import openai

        from semcache import MatchPolicy

        directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        policy = directory / "policy.json"
        MatchPolicy.cosine(0.9).save(policy)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SEMCACHE_")}
        env.update({"MOCK_KEY": "sk-mock", "SEMCACHE_UPSTREAM_API_KEY_ENV": "MOCK_KEY", "SEMCACHE_PASS_THROUGH_KEY": "false",
                    "SEMCACHE_SHARED_CACHE": "true", "SEMCACHE_PORT": str(self.port), "SEMCACHE_POLICY": str(policy),
                    "SEMCACHE_CACHE_DIR": str(directory / "cache"), "SEMCACHE_UPSTREAM_BASE_URL": upstream})
        env.update({f"SEMCACHE_{k.upper()}": str(v) for k, v in settings.items() if v is not None})
        self.log = (directory / "replica.log").open("wb")
        self.process = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_cluster", "--replica"], env=env, cwd=ROOT,
                                        stdout=self.log, stderr=subprocess.STDOUT)
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="sk-bench", max_retries=0, timeout=300)

    def wait_ready(self, timeout: float = 120.0) -> None:
        import httpx2

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"replica exited with {self.process.returncode}; see {self.log.name}")
            with suppress(httpx2.HTTPError):
                if httpx2.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return
            time.sleep(0.05)
        raise RuntimeError(f"replica not ready after {timeout}s; see {self.log.name}")

    def ask(self, text: str) -> tuple[int, str | None, float]:
        """(status, x-semcache, seconds) of one chat request; a 429 or 5xx is a status, not an exception."""
        import openai

        started = time.perf_counter()
        try:
            raw = self.client.chat.completions.with_raw_response.create(model="gpt-4o-mini",
                                                                       messages=[{"role": "user", "content": text}])
        except openai.APIStatusError as exc:
            return exc.status_code, None, time.perf_counter() - started
        return raw.status_code, raw.headers.get("x-semcache"), time.perf_counter() - started

    def stop(self) -> None:
        stop_process(self.process)
        self.client.close()
        self.log.close()


def serve_replica() -> None:
    """The ``--replica`` mode: settings from SEMCACHE_*, the fake embedder, uvicorn until SIGTERM."""
    import uvicorn

    from semcache.config import Settings
    from semcache.server import create_app

    settings = Settings.load(environ=os.environ)
    app = create_app(settings, environ=os.environ, embedder=WordVectors())
    uvicorn.run(app, host="127.0.0.1", port=settings.port, log_level="warning", lifespan="on")


@contextmanager
def replicas(n: int, directory: Path, upstream: str, **settings) -> Iterator[list[Replica]]:
    group = [Replica(directory / f"r{i}", upstream, **settings) for i in range(n)]
    try:
        for replica in group:
            replica.wait_ready()
        yield group
    finally:
        for replica in group:
            replica.stop()


# -- 1. one quota ----------------------------------------------------------------------------------


class Arrivals:
    """ASGI middleware around the mock: the wall-clock time and status of every chat request that
    reached it, served as JSON at ``GET /bench/arrivals``."""

    def __init__(self, app) -> None:
        self.app = app
        self.events: list[tuple[float, int]] = []

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and scope["path"] == "/bench/arrivals":
            from starlette.responses import JSONResponse

            return await JSONResponse(self.events)(scope, receive, send)
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            return await self.app(scope, receive, send)
        arrived, status = time.time(), [0]

        async def record(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self.app(scope, receive, record)
        self.events.append((arrived, status[0]))


def busiest_window(times: list[float], window: float = WINDOW_S) -> int:
    """The most events in any ``window`` seconds."""
    times, best, start = sorted(times), 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


def serve_mock(port: int, rpm: int) -> None:
    """The ``--mock`` mode: the mock upstream at ``rpm`` with its arrivals recorded, as a process of its
    own (like a provider: its clock is not disturbed by the callers' threads in this process)."""
    import uvicorn

    from semcache.testing.mock import create_app as create_mock

    uvicorn.run(Arrivals(create_mock(rpm=rpm)), host="127.0.0.1", port=port, log_level="warning")


@contextmanager
def mock_process(rpm: int, log: Path) -> Iterator[str]:
    import httpx2

    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "benchmarks.bench_cluster", "--mock", str(port), str(rpm)], cwd=ROOT,
                                   stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                with suppress(httpx2.HTTPError):
                    if httpx2.get(url + "/bench/arrivals", timeout=1).status_code == 200:
                        break
                time.sleep(0.05)
            yield url
        finally:
            stop_process(process, 10)


def quota_run(n: int, mode: str, rpm: int, burst: int, directory: Path, redis_url: str) -> dict:
    import httpx2

    (directory / f"{mode}{n}").mkdir(parents=True, exist_ok=True)
    with mock_process(rpm, directory / f"{mode}{n}" / "mock.log") as mock_url:
        # A deadline past the window: the burst's second half waits for the next minute, which is the
        # pacing measured here; under the default 60 s deadline it gets 429 + Retry-After at once (#18).
        settings = {"rpm": rpm, "deadline": 120}
        if mode == "shared":
            settings.update(store=redis_url, store_prefix=f"quota-{n}-{uuid.uuid4().hex[:6]}")
        with replicas(n, directory / f"{mode}{n}", mock_url + "/v1", **settings) as group:
            questions = [_unique() for _ in range(burst)]
            started = time.time()
            with ThreadPoolExecutor(burst) as pool:
                answers = list(pool.map(lambda i: group[i % n].ask(questions[i]), range(burst)))
            wall = time.time() - started
        events = [tuple(e) for e in httpx2.get(mock_url + "/bench/arrivals").json()]
    statuses: dict[str, int] = {}
    for status, _, _ in answers:
        statuses[str(status)] = statuses.get(str(status), 0) + 1
    admitted = [t for t, s in events if s == 200]
    return {"replicas": n, "limiter": mode, "rpm_limit": rpm, "burst": burst, "wall_s": round(wall, 2),
            "caller_statuses": statuses, "caller_429s": statuses.get("429", 0),
            "upstream_attempts": len(events), "upstream_admitted": len(admitted),
            "upstream_429s": sum(1 for _, s in events if s == 429),
            "busiest_60s_attempts": busiest_window([t for t, _ in events]),
            "busiest_60s_admitted": busiest_window(admitted),
            "arrivals_s": [[round(t - started, 3), s] for t, s in sorted(events)]}


# -- 2. write on one replica -> hit on another -------------------------------------------------------


def propagation(redis_url: str, directory: Path, n: int) -> dict:
    from semcache.testing.mock import create_app as create_mock
    from semcache.testing.serving import running_server

    exact, semantic, misses = [], [], 0
    with running_server(create_mock()) as mock_url, \
            replicas(2, directory / "propagation", mock_url + "/v1", store=redis_url, store_prefix="propagation") as (a, b):
        for _ in range(3):  # warm both (connections, first requests)
            q = _unique()
            a.ask(q), b.ask(q)
        for i in range(n):
            question = _unique(8)  # 8 words: with " please" added, cosine 8/sqrt(72) = 0.94 >= 0.9
            status, kind, _ = a.ask(question)
            written = time.perf_counter()
            assert status == 200 and kind == "miss", (status, kind)
            status, kind, _ = b.ask(question if i % 2 == 0 else question + " please")
            (exact if i % 2 == 0 else semantic).append(time.perf_counter() - written)
            misses += kind != "hit"
    both = exact + semantic
    return {"writes": n, "not_a_hit": misses, "exact": summarize(exact), "semantic": summarize(semantic),
            "all": summarize(both),
            "how": "A answers a miss (stored before it answers); the moment its answer arrives the same question "
                   "(or, every other time, a paraphrase) goes to B: time from A's answer to B's hit, openai SDK included"}


# -- 3. per-replica hit throughput (Redis vs disk) and the batched-embedding bound ---------------------


def throughput(redis_url: str, directory: Path, smoke: bool) -> dict:
    import multiprocessing

    from benchmarks.bench_server import batched_bound, paraphrase, questions, run_phase
    from semcache import MatchPolicy, SemanticCache
    from semcache.config import Settings
    from semcache.embedding.batching import BatchingEmbedder
    from semcache.server import create_app
    from semcache.storage.redis import RedisStore
    from semcache.testing.mock import create_app as create_mock
    from semcache.testing.serving import running_server

    if smoke:
        model = WordVectors(384)
    else:
        from semcache.embedding.sentence import SentenceTransformerEmbedder

        model = SentenceTransformerEmbedder()
    pool = questions()
    seeds = pool[: 60 if smoke else 300]
    probes = [paraphrase(q, 7) + " zz" for q in pool[-(64 if smoke else 192):]]
    bounds = [batched_bound(model, probes)]
    # smoke: the fake embedder's paraphrases score ~0.8, the model's >= 0.98 (bench_server)
    policy = MatchPolicy().with_threshold(0.75 if smoke else 0.95)  # the default's checks and languages, as bench_server
    exact_levels = (1, 8) if smoke else (1, 32)
    semantic_levels = (8,) if smoke else (16, 64)
    per_phase = 40 if smoke else 250  # semantic: 2 levels x 4 runs x 250 = 2,000 of the 3,000 paraphrases
    phases: list[dict] = []
    context = multiprocessing.get_context("spawn")
    with ExitStack() as stack:
        loadgen = stack.enter_context(ProcessPoolExecutor(1, mp_context=context))
        mock = stack.enter_context(running_server(create_mock()))
        urls = {}
        for name in ("disk", "redis"):
            store = RedisStore.from_url(redis_url, prefix="throughput") if name == "redis" else None
            cache = stack.enter_context(SemanticCache(str(directory / "disk-cache"), store=store,
                                                      embedder=BatchingEmbedder(model), policy=policy))
            settings = Settings(cache_dir=str(directory / "disk-cache"), upstream_base_url=mock + "/v1", shared_cache=True)
            urls[name] = stack.enter_context(running_server(create_app(settings, cache=cache, environ={"OPENAI_API_KEY": "sk"})))
        for name, url in urls.items():
            loadgen.submit(run_phase, url, ["warm up the sidecar"] * 4, 2, "miss").result()
            phases.append({"store": name, **loadgen.submit(run_phase, url, seeds, 8, "miss").result()})
        # Exact hits repeat the seeds; every semantic run gets paraphrases never asked before in the
        # run (10 templates a seed), so the caches' embedding LRU never answers for the model.
        used = iter(range(len(seeds) * 10))
        plan = []
        for c in exact_levels:
            texts = [seeds[i % len(seeds)] for i in range(per_phase)]
            plan.append(("exact", c, [texts] * 4))
        for c in semantic_levels:
            runs = [[paraphrase(seeds[i % len(seeds)], i // len(seeds)) for i in (next(used) for _ in range(per_phase))]
                    for _ in range(4)]
            plan.append(("semantic", c, runs))
        for expect, c, runs in plan:
            for name, texts in zip(("disk", "redis", "redis", "disk"), runs):  # ABBA: the machine's load falls on both alike
                phases.append({"store": name, **loadgen.submit(run_phase, urls[name], texts, c, expect).result()})
            if expect == "semantic":
                bounds.append(batched_bound(model, probes))
    best = max(bounds, key=lambda b: b["bound_rps"])
    return {"embedder": getattr(model, "model_id", "?"), "backend": getattr(model, "backend", "?"),
            "policy": policy.to_dict(), "batched_bound": {**best, "measurements_rps": [b["bound_rps"] for b in bounds]},
            "phases": phases}


def _best(phases: list[dict], store: str, expect: str) -> dict | None:
    rows = [p for p in phases if p["store"] == store and p["expect"] == expect]
    return max(rows, key=lambda p: p["throughput_rps"]) if rows else None


# -- 4. start-up with and without a snapshot -----------------------------------------------------------


def startup(redis_url: str, directory: Path, entries: int, later: int) -> dict:
    from semcache import MatchPolicy, SemanticCache
    from semcache.storage.entry import Entry
    from semcache.storage.redis import RedisStore

    embedder = WordVectors(384, "bench-384")
    prefix = "startup"
    writer = RedisStore.from_url(redis_url, prefix=prefix)
    writer.bind(embedder.model_id, embedder.dim)
    rng = np.random.default_rng(0)

    answer = {"choices": [{"message": {"role": "assistant", "content": "an answer " * 40}}]}

    def fill(count: int, tag: str) -> None:
        def entries():
            for i in range(count):
                vector = rng.standard_normal(384).astype(np.float32)
                vector /= np.linalg.norm(vector)
                text = f"question {tag} {i} about something"
                yield Entry.create(id=writer.next_id(), partition="p", exact_key=f"{tag}-{i}", query_text=text,
                                   embedding=vector, model="gpt-4o-mini", created_at=time.time(),
                                   expires_at=time.time() + 86400, response=answer, size=460 + len(text) + 4 * 384)

        writer.put_many(entries())

    began = time.perf_counter()
    fill(entries, "a")
    fill_s = time.perf_counter() - began
    policy = MatchPolicy.cosine(0.9)
    snapshot = directory / "index-snapshot.npz"

    def open_cache(**options) -> tuple[float, SemanticCache]:
        began = time.perf_counter()
        cache = SemanticCache(store=RedisStore.from_url(redis_url, prefix=prefix), embedder=embedder, policy=policy,
                              flush_interval=None, **options)
        return time.perf_counter() - began, cache

    scan_s, cache = open_cache(snapshot=str(snapshot))
    assert len(cache) == entries and cache._mirror.rebuilds == 1
    began = time.perf_counter()
    assert cache.save_snapshot()
    save_s = time.perf_counter() - began
    cache._mirror.close()
    fill(later, "b")  # written after the snapshot: replayed from the log
    snap_s, restored = open_cache(snapshot=str(snapshot))
    mirror = restored._mirror
    agrees = {i: m.exact_key for i, m in mirror.meta.items()} == {e.id: e.exact_key for e in writer.scan()}
    result = {"entries": entries, "written_after_snapshot": later, "fill_s": round(fill_s, 2),
              "open_from_scan_s": round(scan_s, 2), "open_from_snapshot_s": round(snap_s, 2),
              "speedup": round(scan_s / snap_s, 1), "snapshot_save_s": round(save_s, 2),
              "snapshot_bytes": snapshot.stat().st_size, "started_from_snapshot": mirror.snapshot_loaded,
              "rebuilds": mirror.rebuilds, "index_equals_store": agrees,
              "how": "time to construct SemanticCache on the Redis store until its index is ready (bind, then a full "
                     "HSCAN + decode + FAISS build, vs np.load of the snapshot + FAISS build + replay of the newer writes "
                     "+ a count check); one partition of 384-dim vectors, IVF past 10k"}
    restored._mirror.close()
    writer.close()
    return result


# -- the run ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="seconds, not minutes: checks the script, not the numbers")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory for cluster.json and cluster.png")
    parser.add_argument("--rpm", type=int, default=None, help="the mock's limit for the quota part (default 20; smoke 3)")
    parser.add_argument("--replica", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mock", nargs=2, type=int, metavar=("PORT", "RPM"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.replica:
        serve_replica()
        return {}
    if args.mock:
        serve_mock(*args.mock)
        return {}
    rpm = args.rpm or (3 if args.smoke else 20)
    burst = rpm if args.smoke else 2 * rpm  # smoke: within the limit, so nothing waits out the minute
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="semcache-bench-cluster-") as tmp:
        directory = Path(tmp)
        with local_redis(directory) as redis_url:
            print(f"[cluster] quota: 2 and 3 replicas, shared vs local limiters, rpm {rpm}, burst {burst}", flush=True)
            quota = []
            # The shared runs side by side, then the local ones (--smoke: all at once, nothing waits a
            # minute). All four at once put 14 processes on 2 cores: the replicas then sent the first
            # minute's admitted calls up to ~3 s late, and the mock saw them crowd into its window.
            for modes in ([("shared", "local")] if args.smoke else [("shared",), ("local",)]):
                runs = [(n, mode) for mode in modes for n in ((2,) if args.smoke else (2, 3))]
                with ThreadPoolExecutor(len(runs)) as pool:
                    quota += list(pool.map(lambda run: quota_run(*run, rpm, burst, directory, redis_url), runs))
            print("[cluster] write -> hit on another replica", flush=True)
            spread = propagation(redis_url, directory, 10 if args.smoke else 200)
            print("[cluster] hit throughput, Redis vs disk; semantic hits vs the batched bound", flush=True)
            speed = throughput(redis_url, directory, args.smoke)
            print("[cluster] start-up with and without a snapshot", flush=True)
            start = startup(redis_url, directory, 500 if args.smoke else 50_000, 50 if args.smoke else 1_000)
    result = summarize_run(args, rpm, quota, spread, speed, start, time.perf_counter() - started)
    out = write_json(args.out / "cluster.json", result)
    plot(result, args.out / "cluster.png")
    print(f"wrote {out}")
    for name, target in result["targets"].items():
        print(f"  {'PASS' if target['passed'] else 'FAIL'}  {name}: {target['measured']} (required {target['required']})")
    return result


def summarize_run(args, rpm: int, quota: list[dict], spread: dict, speed: dict, start: dict, seconds: float) -> dict:
    shared = [q for q in quota if q["limiter"] == "shared"]
    local = [q for q in quota if q["limiter"] == "local"]
    ratios = {}
    for expect in ("exact", "semantic"):
        disk, redis_ = _best(speed["phases"], "disk", expect), _best(speed["phases"], "redis", expect)
        ratios[expect] = {"disk_rps": disk["throughput_rps"], "redis_rps": redis_["throughput_rps"],
                          "ratio": round(redis_["throughput_rps"] / disk["throughput_rps"], 2),
                          "disk_p50_ms": disk["latency"]["p50_ms"], "redis_p50_ms": redis_["latency"]["p50_ms"],
                          "disk_p99_ms": disk["latency"]["p99_ms"], "redis_p99_ms": redis_["latency"]["p99_ms"],
                          "at_concurrency": [disk["concurrency"], redis_["concurrency"]]}
    semantic_rps = ratios["semantic"]["redis_rps"]
    bound = speed["batched_bound"]["bound_rps"]
    errors = sum(p["errors"] for p in speed["phases"])
    # Answers of a hit phase that were not hits: paraphrases the policy (the default's checks at 0.95)
    # does not match, a property of the texts, not of the store; reported for both stores.
    not_hits = {store: sum(v for p in speed["phases"] if p["store"] == store and p["expect"] != "miss"
                           for k, v in p["statuses"].items() if k not in ("exact", "semantic")) for store in ("disk", "redis")}
    targets = {
        "shared limiter: 0 caller-visible 429s (2 and 3 replicas)": {
            "measured": [q["caller_429s"] for q in shared], "required": "0 each",
            "passed": all(q["caller_429s"] == 0 for q in shared)},
        "shared limiter: busiest 60 s at the upstream <= the rpm limit, no upstream 429": {
            "measured": {"busiest_60s_attempts": [q["busiest_60s_attempts"] for q in shared],
                         "upstream_429s": [q["upstream_429s"] for q in shared]},
            "required": f"<= {rpm} each, 0 429s",
            "passed": all(q["busiest_60s_attempts"] <= rpm and q["upstream_429s"] == 0 for q in shared)},
        "comparison: the same replicas with local limiters exceed the limit (the shared one prevents it)": {
            "measured": {"busiest_60s_attempts": [q["busiest_60s_attempts"] for q in local],
                         "upstream_429s": [q["upstream_429s"] for q in local]},
            "required": f"> {rpm} attempts in some 60 s, or upstream 429s",
            "passed": all(q["busiest_60s_attempts"] > rpm or q["upstream_429s"] > 0 for q in local)},
        "write on one replica -> hit on another: p99 <= 50 ms": {
            "measured": spread["all"].get("p99_ms"), "required": "<= 50 ms, every one a hit",
            "passed": spread["all"].get("p99_ms", 1e9) <= 50 and spread["not_a_hit"] == 0},
        "per-replica exact-hit throughput on Redis >= 0.8x the disk store": {
            "measured": ratios["exact"]["ratio"], "required": ">= 0.8", "passed": ratios["exact"]["ratio"] >= 0.8},
        "per-replica semantic-hit throughput on Redis >= 0.8x the disk store": {
            "measured": ratios["semantic"]["ratio"], "required": ">= 0.8", "passed": ratios["semantic"]["ratio"] >= 0.8},
        "semantic-hit throughput of one sidecar >= 0.5x the batched-embedding bound": {
            "measured": round(semantic_rps / bound, 2), "required": ">= 0.5", "passed": semantic_rps / bound >= 0.5,
            "detail": f"{semantic_rps} req/s vs {bound} texts/s"},
        "throughput phases: no errors": {
            "measured": errors, "required": "0", "passed": errors == 0,
            "detail": f"hit-phase answers that were not hits (paraphrases the policy rejects): {not_hits}"},
    }
    return {
        "benchmark": "sidecar replicas on one Redis (benchmarks/bench_cluster.py)",
        "command": "python -m benchmarks.bench_cluster" + (" --smoke" if args.smoke else ""),
        "smoke": args.smoke,
        "quota": {"runs": quota, "compared": {
            f"{q['replicas']} replicas, {q['limiter']}": {k: q[k] for k in ("caller_429s", "upstream_attempts", "upstream_429s",
                                                                           "busiest_60s_attempts", "busiest_60s_admitted", "wall_s")}
            for q in quota}},
        "propagation": spread,
        "throughput": {**speed, "redis_vs_disk": ratios},
        "startup": start,
        "targets": targets,
        "total_seconds": round(seconds, 1),
        "machine": machine_info(),
    }


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    ax = axes[0][0]
    for run in result["quota"]["runs"]:
        times = [t for t, _ in run["arrivals_s"]]
        style = "-" if run["limiter"] == "shared" else "--"
        ax.step(sorted(times), range(1, len(times) + 1), style, where="post",
                label=f"{run['replicas']} replicas, {run['limiter']} limiter ({run['upstream_429s']} x 429)")
    limit = result["quota"]["runs"][0]["rpm_limit"]
    ax.axhline(limit, color="grey", linestyle=":")
    ax.set_title(f"calls reaching the upstream (limit {limit} a minute)")
    ax.set_xlabel("seconds since the burst of 2 x the limit")
    ax.set_ylabel("upstream attempts, 429s included")
    ax.legend(fontsize=8)
    ax = axes[0][1]
    spread = result["propagation"]
    labels = ["exact p50", "exact p99", "semantic p50", "semantic p99"]
    values = [spread["exact"].get("p50_ms", 0), spread["exact"].get("p99_ms", 0), spread["semantic"].get("p50_ms", 0),
              spread["semantic"].get("p99_ms", 0)]
    ax.bar(labels, values, color=["#4c72b0", "#4c72b0", "#55a868", "#55a868"])
    ax.axhline(50, color="grey", linestyle=":")
    ax.set_title("write on A -> hit on B (ms); target p99 50 ms")
    ax = axes[1][0]
    ratios = result["throughput"]["redis_vs_disk"]
    x = np.arange(2)
    ax.bar(x - 0.2, [ratios["exact"]["disk_rps"], ratios["semantic"]["disk_rps"]], 0.4, label="disk store (one process)")
    ax.bar(x + 0.2, [ratios["exact"]["redis_rps"], ratios["semantic"]["redis_rps"]], 0.4, label="Redis store (a replica)")
    ax.axhline(result["throughput"]["batched_bound"]["bound_rps"], color="grey", linestyle=":", label="batched-embedding bound")
    ax.set_xticks(x, ["exact hits", "semantic hits"])
    ax.set_ylabel("requests per second (best concurrency)")
    ax.set_title("hit throughput of one sidecar")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    start = result["startup"]
    ax.bar(["full scan", "snapshot + replay"], [start["open_from_scan_s"], start["open_from_snapshot_s"]], color=["#c44e52", "#4c72b0"])
    ax.set_ylabel("seconds until the index is ready")
    ax.set_title(f"replica start-up at {start['entries']:,} entries")
    fig.suptitle("semcache replicas on one Redis (2 CPU cores)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
