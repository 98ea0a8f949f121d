"""A writer killed with SIGKILL mid-stream loses at most the entry it was writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from conftest import WordEmbedder
from semcache import MatchPolicy, SemanticCache

TESTS = Path(__file__).parent
POLICY = MatchPolicy.cosine(0.9)

# Prints "<entry id> <i>" only after insert() returned, so every printed id was committed.
WRITER = """
import sys
from conftest import WordEmbedder
from semcache import MatchPolicy, SemanticCache

cache = SemanticCache(sys.argv[1], embedder=WordEmbedder(), policy=MatchPolicy.cosine(0.9))
i = int(sys.argv[2])
while True:
    entry = cache.insert(f"crash question number {i}", {"answer": i, "pad": "x" * (i % 7) * 500})
    print(entry.id, i, flush=True)
    i += 1
"""


def _write_then_kill(directory: Path, start: int, kill_after: int) -> dict[int, int]:
    """Run the writer until it reported ``kill_after`` entries, SIGKILL it; return {id: i} it reported."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(directory), str(start)],
                              stdout=subprocess.PIPE, text=True, env=env)
    reported = {}
    try:
        while len(reported) < kill_after:
            line = writer.stdout.readline()
            assert line, f"writer exited early with {writer.poll()}"
            entry_id, i = map(int, line.split())
            reported[entry_id] = i
        os.kill(writer.pid, signal.SIGKILL)
        for line in writer.stdout:  # lines already in the pipe were committed too
            entry_id, i = map(int, line.split())
            reported[entry_id] = i
    finally:
        writer.kill()
        writer.wait()
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    return reported


def test_sigkilled_writer_loses_at_most_the_entry_in_flight(tmp_path):
    directory = tmp_path / "crash"
    reported: dict[int, int] = {}
    for start, kill_after in ((0, 25), (1000, 40)):  # the second writer reopens a crashed directory
        reported.update(_write_then_kill(directory, start, kill_after))

        with SemanticCache(str(directory), embedder=WordEmbedder(), policy=POLICY) as cache:
            entries = {entry.id: entry for entry in cache.store.scan()}
            assert set(reported) <= set(entries)
            assert len(set(entries) - set(reported)) <= 2  # one in flight per killed writer
            assert cache.index.ids() == set(entries)
            for entry in entries.values():
                i = entry.response["answer"]
                assert entry.query_text == f"crash question number {i}"
                assert entry.embedding.shape == (WordEmbedder.dim,) and entry.embedding.dtype == np.float32
                assert abs(float(np.linalg.norm(entry.embedding)) - 1.0) < 1e-5
                assert entry.response["pad"] == "x" * (i % 7) * 500
                assert entry.partition and entry.exact_key and entry.created_at > 0 and entry.size > 0
                assert cache.store.get_exact(entry.exact_key).id == entry.id
            some = next(iter(reported.values()))
            assert cache.lookup(f"crash question number {some}").kind == "exact"


# Looks the same question up again and again (exact hits: counted, never written by the request),
# printing how many lookups returned; flushes counters every 0.2 s.
COUNTER = """
import sys, time
from conftest import WordEmbedder
from semcache import MatchPolicy, SemanticCache

cache = SemanticCache(sys.argv[1], embedder=WordEmbedder(), policy=MatchPolicy.cosine(0.9), flush_interval=0.2)
cache.insert("a counted question", {"answer": 1})
n = 0
while True:
    cache.lookup("a counted question")
    n += 1
    if n % 50 == 0:
        print(n, flush=True)
    if n == int(sys.argv[2]):
        print("idle", n, flush=True)
        time.sleep(3600)
    time.sleep(0.001)
"""


def _count_then_kill(directory: Path, stop_at: int, kill_at: int | None) -> int:
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=os.pathsep.join([str(TESTS), str(TESTS.parent)]))
    counter = subprocess.Popen([sys.executable, "-c", COUNTER, str(directory), str(stop_at)],
                               stdout=subprocess.PIPE, text=True, env=env)
    reported = 0
    try:
        for line in counter.stdout:
            if line.startswith("idle"):
                reported = int(line.split()[1])
                time.sleep(0.2 * 3)  # the README's bound: counts older than one flush interval are on disk
                break
            reported = int(line)
            if kill_at is not None and reported >= kill_at:
                break
        os.kill(counter.pid, signal.SIGKILL)
    finally:
        counter.kill()
        counter.wait()
        counter.stdout.close()
    return reported


def test_counters_survive_a_sigkill_once_a_flush_interval_has_passed(tmp_path):
    """Counts are written every flush_interval by a background thread: after an idle interval a
    kill -9 loses none of them, and a snapshot never shows less than one taken before the kill."""
    directory = tmp_path / "counted"
    reported = _count_then_kill(directory, stop_at=300, kill_at=None)
    with SemanticCache(str(directory), embedder=WordEmbedder(), policy=POLICY, flush_interval=None) as cache:
        total = cache.stats()["total"]
    assert reported == 300
    assert total["requests"] == total["exact_hits"] == 300


def test_a_sigkill_under_traffic_loses_at_most_the_last_interval_of_counts(tmp_path):
    directory = tmp_path / "busy"
    reported = _count_then_kill(directory, stop_at=10**9, kill_at=400)
    with SemanticCache(str(directory), embedder=WordEmbedder(), policy=POLICY, flush_interval=None) as cache:
        persisted = cache.stats()["total"]["requests"]
    # ~1 ms a lookup: one 0.2 s interval is at most a few hundred lookups; everything older is on disk.
    assert reported - 250 <= persisted <= reported + 50  # + lookups between the last print and the kill
