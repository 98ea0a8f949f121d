"""Sidecar replicas on one Redis: separate processes, a real redis-server on loopback, the bundled
mock upstream (which counts what reaches it), the official openai SDK as the client.

Most replicas run ``tests/cluster_sidecar.py`` (``semcache serve``'s app with the fake
``WordEmbedder`` and ``MatchPolicy.cosine(0.9)``: what is shared is the point, not the model);
one test runs two ``semcache serve`` processes with the real default configuration.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx2
import openai
import pytest

from redis_server import fresh_prefix, redis_server, start_redis  # noqa: F401  (fixtures)
from semcache import MatchPolicy
from semcache.storage.redis import RedisStore
from semcache.testing.mock import create_app as create_mock
from semcache.testing.processes import free_port, stop_process
from semcache.testing.serving import running_server
from semcache.tools.doctor import diagnose

pytestmark = [pytest.mark.server, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("cluster_sidecar.py")
ROOT = Path(__file__).resolve().parent.parent
ADMIN = "cluster-admin-token"
FRANCE = "what is the capital city of france"
FRANCE_PLEASE = "what is the capital city of france please"
SPAIN = "what is the capital city of spain"
SPAIN_PLEASE = "what is the capital city of spain please"


def _unique() -> str:
    """A question that shares no word with any other (so the fake embedder never matches it)."""
    return " ".join(uuid.uuid4().hex[:10] for _ in range(4))


@dataclass
class Answer:
    status: int
    semcache: str | None = None  # x-semcache: hit | miss | ...
    match: str | None = None  # x-semcache-match: exact | semantic
    entry_id: int | None = None
    content: str | None = None
    code: str | None = None  # the error's code
    retry_after: str | None = None


class Replica:
    """One sidecar process on ``store`` (a Redis URL); ``settings`` become its SEMCACHE_* variables."""

    def __init__(self, directory: Path, *, store: str, prefix: str, upstream: str, real_model: bool = False,
                 **settings) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("SEMCACHE_", "OPENAI_"))}
        # This checkout's semcache, not another one installed in the environment (the script's own folder
        # comes first on its sys.path, not the repository root).
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
        env.update({"HF_HUB_OFFLINE": "1", "MOCK_KEY": "sk-mock", "SEMCACHE_ADMIN_TOKEN": ADMIN,
                    "SEMCACHE_UPSTREAM_API_KEY_ENV": "MOCK_KEY", "SEMCACHE_PASS_THROUGH_KEY": "false",
                    "SEMCACHE_SHARED_CACHE": "true", "SEMCACHE_PORT": str(self.port),
                    "SEMCACHE_CACHE_DIR": str(self.directory / "cache"), "SEMCACHE_UPSTREAM_BASE_URL": upstream,
                    "SEMCACHE_STORE": store, "SEMCACHE_STORE_PREFIX": prefix})
        if os.environ.get("SEMCACHE_ONNX_CACHE"):  # the test session's exported graphs
            env["SEMCACHE_ONNX_CACHE"] = os.environ["SEMCACHE_ONNX_CACHE"]
        if real_model:
            command = [sys.executable, "-m", "semcache.cli", "serve", "--log-level", "warning"]
        else:
            policy = self.directory / "policy.json"
            MatchPolicy.cosine(0.9).save(policy)
            env["SEMCACHE_POLICY"] = str(policy)
            command = [sys.executable, str(SCRIPT)]
        env.update({f"SEMCACHE_{name.upper()}": str(value) for name, value in settings.items()})
        self.log = (self.directory / "replica.log").open("wb")
        self.process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT)
        self.client = openai.OpenAI(base_url=self.url + "/v1", api_key="sk-caller", max_retries=0, timeout=30)

    def wait_ready(self, timeout: float = 60.0) -> "Replica":
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"replica exited with {self.process.returncode}: {self.log_tail()}")
            with contextlib.suppress(httpx2.HTTPError):
                if httpx2.get(self.url + "/readyz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.05)
        raise AssertionError(f"replica not ready after {timeout}s: {self.log_tail()}")

    def log_tail(self) -> str:
        self.log.flush()
        return (self.directory / "replica.log").read_text(errors="replace")[-3000:]

    def ask(self, text: str) -> Answer:
        try:
            raw = self.client.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
        except openai.APIStatusError as exc:
            error = exc.response.json().get("error", {})
            return Answer(exc.status_code, code=error.get("code"), retry_after=exc.response.headers.get("retry-after"))
        entry = raw.headers.get("x-semcache-entry-id")
        return Answer(raw.status_code, raw.headers.get("x-semcache"), raw.headers.get("x-semcache-match"),
                      int(entry) if entry else None, raw.parse().choices[0].message.content)

    def delete(self, **query) -> int:
        answer = httpx2.delete(self.url + "/semcache/entries", params=query, headers={"Authorization": f"Bearer {ADMIN}"})
        assert answer.status_code == 200, answer.text
        return answer.json()["deleted"]

    def stats(self) -> httpx2.Response:
        return httpx2.get(self.url + "/semcache/stats", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=10)

    def stop(self) -> None:
        stop_process(self.process)
        self.client.close()
        self.log.close()

    def kill(self) -> None:
        self.process.kill()  # SIGKILL: no shutdown, no flush, mid-write
        self.process.wait()


@pytest.fixture
def replicas(tmp_path):
    """``replicas(n, store=..., prefix=..., upstream=..., **settings)``: n replicas started side by side, ready."""
    started: list[Replica] = []

    def start(n: int = 2, *, each: list[dict] | None = None, timeout: float = 60.0, **common) -> list[Replica]:
        group = [Replica(tmp_path / f"replica{len(started) + i}", **{**common, **((each or [{}] * n)[i])}) for i in range(n)]
        started.extend(group)
        for replica in group:
            replica.wait_ready(timeout)
        return group

    yield start
    for replica in started:
        replica.stop()


@contextlib.contextmanager
def mock_upstream(**options):
    """The mock upstream in this process; yields (its /v1 URL, a function returning chat calls and 429s so far)."""
    with running_server(create_mock(**options)) as url:
        def counts() -> tuple[int, int]:
            stats = httpx2.get(url + "/mock/stats").json()
            return stats["by_route"].get("/v1/chat/completions", 0), stats["responses_429"]

        yield url + "/v1", counts


@pytest.fixture(scope="module")
def slow_mock():
    with mock_upstream(latency_ms=300) as found:
        yield found


@pytest.fixture(scope="module")
def pair(redis_server, slow_mock, tmp_path_factory):  # noqa: F811
    """Two replicas A and B on the module's Redis, in front of a mock answering in 300 ms."""
    base = tmp_path_factory.mktemp("pair")
    prefix = fresh_prefix()
    group = [Replica(base / name, store=redis_server.url, prefix=prefix, upstream=slow_mock[0]) for name in "ab"]
    try:
        for replica in group:
            replica.wait_ready()
        yield group
    finally:
        for replica in group:
            replica.stop()


# -- what replicas share ---------------------------------------------------------------------------


def test_an_answer_fetched_by_one_replica_is_a_hit_on_the_other(pair, slow_mock):
    a, b = pair
    _, counts = slow_mock
    calls = counts()[0]
    fetched = a.ask(FRANCE)
    assert (fetched.status, fetched.semcache) == (200, "miss") and fetched.entry_id
    exact = b.ask(FRANCE)
    assert (exact.semcache, exact.match, exact.entry_id, exact.content) == ("hit", "exact", fetched.entry_id, fetched.content)
    semantic = b.ask(FRANCE_PLEASE)
    assert (semantic.semcache, semantic.match, semantic.entry_id) == ("hit", "semantic", fetched.entry_id)
    theirs = b.ask(SPAIN)
    assert theirs.semcache == "miss" and a.ask(SPAIN_PLEASE).entry_id == theirs.entry_id
    assert counts()[0] - calls == 2  # one upstream call per question, whichever replica asked


def test_an_invalidation_on_one_replica_is_never_served_by_the_other(pair, slow_mock):
    a, b = pair
    question = _unique()
    old = a.ask(question)
    assert b.ask(question).entry_id == old.entry_id  # B holds it: index, metadata, recent copy
    assert a.delete(id=old.entry_id) == 1
    again = b.ask(question)
    assert again.semcache == "miss" and again.entry_id not in (None, old.entry_id)
    assert a.ask(question).entry_id == again.entry_id  # and A serves B's new answer, not the old one
    assert a.delete(all="true") >= 1
    after = b.ask(question)
    assert after.semcache == "miss" and after.entry_id not in (old.entry_id, again.entry_id)


def test_identical_concurrent_misses_on_two_replicas_make_one_upstream_call(pair, slow_mock):
    a, b = pair
    _, counts = slow_mock
    question = _unique()
    calls = counts()[0]
    start = threading.Barrier(2)

    def ask(replica: Replica) -> Answer:
        start.wait()
        return replica.ask(question)

    with ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(ask, (a, b)))
    assert counts()[0] - calls == 1  # the second replica waited on the first one's lease
    assert sorted(x.semcache for x in answers) == ["hit", "miss"]
    assert answers[0].content == answers[1].content and answers[0].entry_id == answers[1].entry_id


def test_two_replicas_under_a_burst_stay_within_one_rpm_limit(redis_server, replicas):  # noqa: F811
    with mock_upstream(rpm=6) as (upstream, counts):
        a, b = replicas(2, store=redis_server.url, prefix=fresh_prefix(), upstream=upstream, rpm=6, deadline=2)
        questions = [_unique() for _ in range(16)]
        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(lambda i: (a, b)[i % 2].ask(questions[i]), range(len(questions))))
        calls, refused_upstream = counts()
    assert calls == 6 and refused_upstream == 0  # the provider saw its limit, never more, and sent no 429
    assert sum(x.status == 200 for x in answers) == 6
    held_back = [x for x in answers if x.status != 200]
    assert len(held_back) == 10 and {x.status for x in held_back} == {429}
    assert all(x.code == "local_rate_limit" and int(x.retry_after) >= 1 for x in held_back)
    assert 429 in {x.status for x in answers[0::2]} and 429 in {x.status for x in answers[1::2]}  # both held back


def test_a_replica_killed_during_writes_loses_at_most_its_in_flight_answers(redis_server, replicas):  # noqa: F811
    prefix = fresh_prefix()
    with mock_upstream(latency_ms=5) as (upstream, counts):
        writer, reader = replicas(2, store=redis_server.url, prefix=prefix, upstream=upstream)
        answered: list[tuple[str, Answer]] = []
        stop = threading.Event()

        def write() -> None:
            while not stop.is_set():
                question = _unique()
                try:
                    answer = writer.ask(question)
                except openai.APIConnectionError:
                    return  # killed
                if answer.status == 200 and answer.semcache == "miss":
                    answered.append((question, answer))

        threads = [threading.Thread(target=write) for _ in range(4)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 30
        while len(answered) < 40 and time.monotonic() < deadline:
            time.sleep(0.01)
        writer.kill()  # SIGKILL, with four requests in flight
        stop.set()
        for thread in threads:
            thread.join(30)
        assert len(answered) >= 40
        store = RedisStore.from_url(redis_server.url, prefix=prefix)
        try:
            report = diagnose(store)
            assert report.healthy, report.as_dict()  # no corrupt record, dangling pointer, orphan, or log gap
            assert report.log["replayable"] and report.log["agrees"]
            stored = {e.id: e for e in store.scan()}
        finally:
            store.close()
        ids = {answer.entry_id for _, answer in answered}
        assert ids <= set(stored)  # every answer a caller got was stored, whole
        assert len(set(stored) - ids) <= 4  # at most the writes in flight when it died
        calls = counts()[0]
        for question, answer in answered:  # the survivor serves every one of them, unchanged
            hit = reader.ask(question)
            assert (hit.semcache, hit.entry_id, hit.content) == ("hit", answer.entry_id, answer.content)
        assert counts()[0] == calls


def test_a_redis_restarted_with_its_data_keeps_every_answer_and_still_expires_them(start_redis, replicas):  # noqa: F811
    server = start_redis(persistence=True)  # append-only file, fsync per write
    with mock_upstream() as (upstream, counts):
        a, b = replicas(2, store=server.url, prefix="p", upstream=upstream, ttl=5)
        written = time.monotonic()
        first = a.ask(FRANCE)
        assert b.ask(FRANCE).entry_id == first.entry_id
        server.restart(kill=True)  # a crash of Redis itself
        assert b.ask(FRANCE).entry_id == first.entry_id
        assert a.ask(FRANCE_PLEASE).entry_id == first.entry_id
        second = a.ask(SPAIN)
        assert second.semcache == "miss" and b.ask(SPAIN).entry_id == second.entry_id  # the log goes on
        assert counts()[0] == 2
        time.sleep(max(0.0, written + 5.5 - time.monotonic()))
        expired = b.ask(FRANCE)
        assert expired.semcache == "miss" and expired.entry_id != first.entry_id  # expired: never served
        assert a.ask(FRANCE).entry_id == expired.entry_id and counts()[0] == 3


def test_during_a_redis_outage_hits_are_served_and_misses_fail_closed_or_take_the_local_share(start_redis, replicas):  # noqa: F811
    server = start_redis(persistence=False)
    with mock_upstream() as (upstream, counts):
        closed, shared = replicas(2, store=server.url, prefix="p", upstream=upstream, rpm=4, deadline=2,
                                  each=[{}, {"redis_local_share": 0.5}])
        kept = closed.ask(FRANCE)
        assert shared.ask(FRANCE).entry_id == kept.entry_id
        doomed = closed.ask(SPAIN)
        assert shared.ask(SPAIN).entry_id == doomed.entry_id
        assert closed.delete(id=doomed.entry_id) == 1
        assert shared.ask(FRANCE).semcache == "hit"  # a lookup: the delete reaches its index
        calls = counts()[0]
        server.stop()

        for replica in (closed, shared):  # hits from the local index and the recent copies
            assert replica.ask(FRANCE).entry_id == kept.entry_id
            semantic = replica.ask(FRANCE_PLEASE)
            assert (semantic.semcache, semantic.match, semantic.entry_id) == ("hit", "semantic", kept.entry_id)
        refused = closed.ask(_unique())
        assert (refused.status, refused.code) == (429, "limiter_unavailable") and int(refused.retry_after) >= 1
        deleted = shared.ask(SPAIN)  # deleted before the outage: never the old entry
        assert (deleted.status, deleted.semcache, deleted.entry_id) == (200, "miss", None)  # fetched, not storable
        assert shared.ask(_unique()).status == 200
        over = shared.ask(_unique())  # the share is floor(4 x 0.5) = 2 calls a minute
        assert (over.status, over.code) == (429, "local_rate_limit")
        assert counts()[0] - calls == 2
        assert closed.ask(_unique()).code == "limiter_unavailable" and counts()[0] - calls == 2

        server.start()  # back, but empty: no persistence
        deadline = time.monotonic() + 15
        for replica in (closed, shared):
            while time.monotonic() < deadline:
                answer = replica.stats()
                if answer.status_code == 200 and answer.json()["cache"]["entries"] == 0:
                    break  # rebuilt from the empty store
                time.sleep(0.1)
            else:
                raise AssertionError(f"replica did not resync: {replica.log_tail()}")
        time.sleep(1.1)  # the shared limiter tries Redis again at most once a second (probe_interval)
        fresh = closed.ask(FRANCE)
        assert fresh.semcache == "miss" and fresh.entry_id > kept.entry_id  # no answer of the lost data survives
        assert shared.ask(FRANCE_PLEASE).entry_id == fresh.entry_id


def test_a_replica_with_another_embedding_model_refuses_to_start(redis_server, tmp_path):  # noqa: F811
    prefix = fresh_prefix()
    store = RedisStore.from_url(redis_server.url, prefix=prefix)
    store.bind("another-model", 384)
    from contracts import make_entry

    store.put(make_entry(store, "k"))
    store.close()
    replica = Replica(tmp_path / "r", store=redis_server.url, prefix=prefix, upstream="http://127.0.0.1:9/v1")
    try:
        assert replica.process.wait(60) == 2
        assert ("semcache: error: Redis store 'redis://127.0.0.1:" in replica.log_tail()
                and re.search(r"was built with model '(languages\(\*=)?another-model.*not '(languages\(\*=)?test-words", replica.log_tail()))
    finally:
        replica.stop()


@pytest.mark.model
def test_two_semcache_serve_processes_with_the_real_model_share_one_cache(redis_server, replicas):  # noqa: F811
    with mock_upstream() as (upstream, counts):
        prefix = fresh_prefix()
        # One after the other: the first exports the ONNX graph (cold, ~25 s) that the second then loads.
        [a] = replicas(1, store=redis_server.url, prefix=prefix, upstream=upstream, real_model=True, timeout=180)
        [b] = replicas(1, store=redis_server.url, prefix=prefix, upstream=upstream, real_model=True, timeout=180)
        first = a.ask("What is the capital of France?")
        assert first.semcache == "miss"
        shared = b.ask("What is the capital of France?")
        assert (shared.semcache, shared.entry_id, shared.content) == ("hit", first.entry_id, first.content)
        other = b.ask("What is the capital of Germany?")
        assert other.semcache == "miss" and a.ask("What is the capital of Germany?").entry_id == other.entry_id
        assert counts()[0] == 2
