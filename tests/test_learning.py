"""The learning layer through a real SemanticCache: answer groups, free labels, calibration, exploration."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import WordEmbedder
from semcache import SemanticCache
from semcache.engine.learning import LearningSettings, learning_report
from semcache.matching.groups import GroupRule
from semcache.matching.policy import MatchPolicy
from semcache.storage.disk import DiskStore

DIM = WordEmbedder.dim


def unit(cosine: float, axis: int) -> np.ndarray:
    """A vector at ``cosine`` to the query direction (axis 0), leaning along ``axis``."""
    v = np.zeros(DIM, np.float32)
    v[0], v[axis] = cosine, np.sqrt(1 - cosine**2)
    return v


class PlacedEmbedder(WordEmbedder):
    """Texts placed by hand (``placed``); anything else (the answers) as ``WordEmbedder`` does."""

    model_id = "test-placed"

    def __init__(self, placed: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.placed = placed

    def embed(self, texts):
        rest = super().embed(texts)
        return np.stack([self.placed.get(t, r) for t, r in zip(texts, rest)]).astype(np.float32)


CARD = "Your new card arrives within 5 working days after you order it in the app under Settings"
PIN = "Reset your PIN under Security in the app and choose a new one of 4 digits at least"
QUERY = "query"


def cache_for(tmp_path, placed, learning=None, name="c"):
    return SemanticCache(str(tmp_path / name), embedder=PlacedEmbedder(placed), policy=MatchPolicy(threshold=0.9, checks=()),
                         learning=learning if learning is not None else LearningSettings(), flush_interval=0)


def fill(cache, answers):
    for text, answer in answers:
        cache.complete(text, lambda request, answer=answer: answer)


def test_a_hit_with_a_close_entry_of_another_answer_is_contested(tmp_path):
    placed = {"a": unit(0.95, 1), "b": unit(0.94, 2), QUERY: unit(1.0, 3)}
    with cache_for(tmp_path, placed, LearningSettings(groups=None), "static") as static:
        fill(static, [("a", CARD), ("b", PIN)])
        assert static.lookup(QUERY) is not None  # the static default serves the nearest
    with cache_for(tmp_path, placed) as cache:
        fill(cache, [("a", CARD), ("b", PIN)])
        hit, decision = cache.probe(QUERY)
        assert hit is None and decision.reason.startswith("contested:entry")


def test_answer_groups_are_stored_with_the_entries_and_loosen_where_neighbours_agree(tmp_path):
    placed = {"a": unit(0.86, 1), "b": unit(0.85, 2), "c": unit(0.84, 3), "far": unit(0.2, 4), QUERY: unit(1.0, 5)}
    rule = LearningSettings(groups=GroupRule(margin=0.04, loose_margin=0.12, reach=0.08, support=3))
    with cache_for(tmp_path, placed, rule) as cache:
        fill(cache, [("a", CARD), ("b", CARD), ("c", CARD), ("far", PIN)])
        groups = {e.query_text: e.answer_group for e in cache.entries()}
        first = next(e.id for e in cache.entries() if e.query_text == "a")
        assert groups["a"] is None and groups["b"] == groups["c"] == first and groups["far"] is None
        hit, decision = cache.probe(QUERY)
        assert hit is not None and hit.entry.query_text == "a" and decision.reason.startswith("group-agrees:3")
    # another process on the same directory reads the groups from the store
    with cache_for(tmp_path, placed, rule) as again:
        assert again.lookup(QUERY) is not None
    with cache_for(tmp_path, placed, LearningSettings(groups=None)) as static:
        assert static.lookup(QUERY) is None  # 0.86 < 0.9: the static default misses


def test_a_near_miss_answered_upstream_is_a_free_label_shared_through_the_store(tmp_path):
    calls = []

    def upstream(answer):
        def call(request):
            calls.append(request)
            return answer
        return call

    with cache_for(tmp_path, {"a": unit(1.0, 1), "near": unit(0.85, 2), "wrongly near": unit(0.86, 3)},
                   LearningSettings(groups=GroupRule(loosen=False))) as cache:
        cache.complete("a", upstream(CARD))
        cache.complete("near", upstream(CARD))  # below the threshold: a miss, its answer agrees
        cache.complete("wrongly near", upstream(PIN))  # a miss whose answer differs
        assert len(calls) == 3  # no call beyond the misses' own
        evidence = cache.learning.evidence("")
        assert (int(evidence.right.sum()), int(evidence.wrong.sum())) == (1, 1)
        cache.flush()
        store = DiskStore(str(tmp_path / "c"))
        try:
            assert sum(store.tallies("learn|").values()) == 2
            report = learning_report(store, [""])[""]  # what `semcache stats` prints, without a model
            assert report["labels"] == 2 and report["estimated_precision"] is None  # no semantic hit to estimate yet
        finally:
            store.close()


def test_calibration_loosens_on_right_labels_and_tightens_on_wrong_ones(tmp_path):
    settings = LearningSettings(groups=None, target_precision=0.85, floor=0.8, min_labels=5)
    placed = {"a": unit(1.0, 1)}
    for i in range(28):  # 28 right labels of 28: a Wilson lower bound of 0.88
        placed[f"q{i}"] = unit(0.875, 2 + i)
    with cache_for(tmp_path, placed, settings) as cache:
        fill(cache, [("a", CARD)] + [(f"q{i}", CARD) for i in range(28)])  # each a miss at 0.875 that was right
        key = cache.key("anything")
        assert cache.learning.threshold(key) < 0.88
        assert cache.learning.threshold_path[0] == 0.9
        for _ in range(10):
            cache.learning.feedback("", key.partition, 0.885, False)  # users report wrong hits above it
        assert cache.learning.threshold(key) == 0.9


def test_exploration_re_asks_a_share_of_hits_and_labels_them(tmp_path):
    placed = {"a": unit(1.0, 1), QUERY: unit(0.95, 2)}
    calls = []

    def call(request):
        calls.append(request)
        return CARD

    with cache_for(tmp_path, placed, LearningSettings(verify_fraction=1.0)) as cache:
        cache.complete("a", call)
        result = cache.complete(QUERY, call)
        assert result.status == "hit" and len(calls) == 2  # served from the cache, and asked once more
        assert int(cache.learning.evidence("").explored_right.sum()) == 1
    calls.clear()
    with cache_for(tmp_path, placed, name="off") as cache:
        cache.complete("a", call)
        assert cache.complete(QUERY, call).status == "hit" and len(calls) == 1  # off by default: no extra call


def test_stats_report_the_estimate_and_its_bound(tmp_path):
    placed = {"a": unit(1.0, 1), QUERY: unit(0.95, 2)}
    settings = LearningSettings(verify_fraction=1.0, min_labels=1)
    with cache_for(tmp_path, placed, settings) as cache:
        fill(cache, [("a", CARD), (QUERY, CARD)])
        report = cache.stats()["learning"]
        assert report["estimated_precision"] == 1.0 and report["source"] == "exploration"
        low, high = report["bound"]
        assert 0 < low < 1.0 == high


@pytest.mark.parametrize("bad", [{"target_precision": 1.0}, {"verify_fraction": 2}, {"min_labels": 0}])
def test_bad_learning_settings_are_named(bad):
    from semcache.errors import ConfigError

    with pytest.raises(ConfigError, match=next(iter(bad))):
        LearningSettings(**bad)


def test_semcache_stats_prints_the_estimate_from_the_store_alone(tmp_path):
    from click.testing import CliRunner

    from semcache.cli import main
    from semcache.engine.learning import scope_of
    from semcache.matching.calibration import Evidence

    store = DiskStore(str(tmp_path / "c"))
    try:  # what a cache with verify_fraction wrote: 36 of 40 re-asked hits were right
        store.add_tallies(scope_of(""), {Evidence.name("xr", 0.93): 36, Evidence.name("xw", 0.93): 4,
                                         Evidence.name("h", 0.93): 40})
    finally:
        store.close()
    result = CliRunner().invoke(main, ["stats", "--cache-dir", str(tmp_path / "c")])
    assert result.exit_code == 0, result.output
    assert "estimated precision of semantic hits: 90.0% [" in result.output and "from 40 exploration" in result.output


class CountingEmbedder(PlacedEmbedder):
    """Counts how often each text reaches the model."""

    def __init__(self, placed) -> None:
        super().__init__(placed)
        self.seen: dict[str, int] = {}

    def embed(self, texts):
        for text in texts:
            self.seen[text] = self.seen.get(text, 0) + 1
        return super().embed(texts)


def test_a_stored_answer_is_embedded_once_however_many_queries_pass_between(tmp_path):
    # The answer of "a" is embedded when "a" is stored (judged against "first"'s); "b", stored
    # after 2,000 other queries (twice the query LRU), is judged against it without embedding it again.
    placed = {"first": unit(0.93, 3), "a": unit(0.95, 1), "b": unit(0.94, 2)}
    embedder = CountingEmbedder(placed)
    with SemanticCache(str(tmp_path / "c"), embedder=embedder, policy=MatchPolicy(threshold=0.99, checks=()),
                       embed_cache_size=1024, flush_interval=0) as cache:
        fill(cache, [("first", PIN), ("a", CARD)])
        assert embedder.seen[CARD] == 1
        for i in range(2000):
            cache.lookup(f"unrelated question number {i}")
        fill(cache, [("b", PIN)])
        assert embedder.seen[CARD] == 1 and embedder.seen[PIN] == 1
        groups = {e.query_text: e.answer_group for e in cache.entries()}
        assert groups["b"] == next(e.id for e in cache.entries() if e.query_text == "first")  # judged: the same answer
