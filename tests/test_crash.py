"""A writer killed with SIGKILL mid-stream loses at most the entry it was writing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
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
