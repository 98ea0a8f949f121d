"""Two processes sharing one cache directory see each other's writes and deletions."""

from __future__ import annotations

import multiprocessing

import pytest

from conftest import WordEmbedder
from semcache import MatchPolicy, SemanticCache

POLICY = MatchPolicy.cosine(0.9)
FRANCE = "what is the capital city of france"
FRANCE_PLEASE = "what is the capital city of france please"
SPAIN = "what is the capital city of spain"
SPAIN_PLEASE = "what is the capital city of spain please"


def _peer(directory: str, commands, replies) -> None:
    """Run in a spawned process: apply commands to its own SemanticCache, reply with the outcome."""
    with SemanticCache(directory, embedder=WordEmbedder(), policy=POLICY) as cache:
        replies.put("ready")
        for op, arg in iter(commands.get, None):
            if op == "insert":
                replies.put(cache.insert(arg, {"answer": arg}).id)
            elif op == "lookup":
                hit = cache.lookup(arg)
                replies.put(None if hit is None else (hit.kind, hit.entry.id))
            elif op == "invalidate":
                replies.put(cache.invalidate([arg]))


@pytest.fixture
def peer(tmp_path):
    """A second process with its own cache on ``tmp_path/shared``; call it with (op, arg)."""
    context = multiprocessing.get_context("spawn")
    commands, replies = context.Queue(), context.Queue()
    process = context.Process(target=_peer, args=(str(tmp_path / "shared"), commands, replies), daemon=True)
    process.start()
    assert replies.get(timeout=60) == "ready"

    def ask(op, arg):
        commands.put((op, arg))
        return replies.get(timeout=30)

    yield ask
    commands.put(None)
    process.join(timeout=30)
    if process.is_alive():
        process.kill()
    assert process.exitcode == 0


def test_writes_and_deletions_propagate_between_processes(peer, tmp_path):
    with SemanticCache(str(tmp_path / "shared"), embedder=WordEmbedder(), policy=POLICY) as cache:
        theirs = peer("insert", FRANCE)
        assert cache.lookup(FRANCE).entry.id == theirs
        semantic = cache.lookup(FRANCE_PLEASE)
        assert semantic.kind == "semantic" and semantic.entry.id == theirs
        assert semantic.response == {"answer": FRANCE}

        ours = cache.insert(SPAIN, {"answer": SPAIN}).id
        assert peer("lookup", SPAIN_PLEASE) == ("semantic", ours)

        assert peer("invalidate", ours) == 1
        assert cache.lookup(SPAIN) is None and cache.lookup(SPAIN_PLEASE) is None
        cache.invalidate([theirs])
        assert peer("lookup", FRANCE) is None
        assert peer("lookup", FRANCE_PLEASE) is None
        assert len(cache) == 0


def _miss(directory: str, calls_file: str, start, results) -> None:
    """Run in a spawned process: ask one question that misses; the upstream call takes 0.5 s."""
    import time as _time

    def call(request):
        with open(calls_file, "a") as f:
            f.write("call\n")
        _time.sleep(0.5)
        return {"answer": "Paris"}

    with SemanticCache(directory, embedder=WordEmbedder(), policy=POLICY) as cache:
        start.wait(60)
        result = cache.complete(FRANCE, call)
        results.put((result.status, result.response))


def test_identical_misses_in_two_processes_make_one_upstream_call(tmp_path):
    """Across processes the single flight is a lease in the store: the second waits for the first's answer."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Event(), context.Queue()
    calls = tmp_path / "calls"
    processes = [context.Process(target=_miss, args=(str(tmp_path / "shared"), str(calls), start, results), daemon=True)
                 for _ in range(2)]
    for process in processes:
        process.start()
    start.set()
    outcomes = sorted(results.get(timeout=60) for _ in processes)
    for process in processes:
        process.join(30)
    assert calls.read_text().count("call") == 1
    assert outcomes == [("hit", {"answer": "Paris"}), ("miss", {"answer": "Paris"})]
