"""SemanticCache: tiers, TTL, eviction, stale-if-error, fail-open, stats, feedback, invalidation."""

from __future__ import annotations

import asyncio
import itertools
import threading

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from conftest import Clock, WordEmbedder
from semcache import MatchPolicy, SemanticCache
from semcache.errors import ConfigError, EmbeddingError, QuotaExhausted, UpstreamStatusError

FRANCE = "what is the capital city of france"
FRANCE_PLEASE = "what is the capital city of france please"  # cosine 0.94 under WordEmbedder
SPAIN = "what is the capital city of spain"  # cosine 0.79: below the threshold
POLICY = MatchPolicy.cosine(0.9)  # plain cosine: independent of the shipped default


def ask(text: str, **params) -> dict:
    return {"model": params.pop("model", "gpt-4o-mini"), "messages": [{"role": "user", "content": text}], **params}


def answer(text: str, prompt_tokens: int = 10, completion_tokens: int = 5) -> dict:
    return {"choices": [{"message": {"role": "assistant", "content": text}}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}}


class FailingEmbedder:
    model_id, dim = "test-words", 32

    def embed(self, texts):
        raise EmbeddingError("model crashed")


def failing_upstream(request):
    raise UpstreamStatusError("503 from upstream", status_code=503)


def index_ids(cache) -> set[int]:
    return cache.index.ids()


def store_ids(cache) -> set[int]:
    return {entry.id for entry in cache.store.scan()}


# -- tiers -------------------------------------------------------------------------------------


def test_exact_hit_does_not_embed(make_cache, embedder):
    cache = make_cache(policy=POLICY, embed_cache_size=0)
    entry = cache.insert(ask(FRANCE), answer("Paris"))
    calls = embedder.calls
    hit = cache.lookup(ask("  what is the capital   city of france "))
    assert hit is not None and hit.kind == "exact" and hit.entry.id == entry.id
    assert hit.response == answer("Paris") and hit.similarity == 1.0
    assert embedder.calls == calls


def test_semantic_hit_and_miss(make_cache):
    cache = make_cache(policy=POLICY)
    entry = cache.insert(ask(FRANCE), answer("Paris"))
    hit = cache.lookup(ask(FRANCE_PLEASE))
    assert hit.kind == "semantic" and hit.entry.id == entry.id
    assert hit.similarity == pytest.approx(0.94, abs=0.01)
    assert hit.decision.hit
    assert cache.lookup(ask(SPAIN)) is None
    assert cache.lookup(ask("how do I bake bread at home")) is None


def test_other_partitions_never_match(make_cache):
    cache = make_cache(policy=POLICY)
    cache.insert(ask(FRANCE), answer("Paris"), tenant="a")
    assert cache.lookup(ask(FRANCE), tenant="b") is None
    assert cache.lookup(ask(FRANCE_PLEASE, model="gpt-4o")) is None
    assert cache.lookup(ask(FRANCE, response_format={"type": "json_object"})) is None
    assert cache.lookup(ask(FRANCE), tenant="a") is not None


def test_high_temperature_is_exact_only(make_cache, embedder):
    cache = make_cache(policy=POLICY, embed_cache_size=0)
    entry = cache.insert(ask(FRANCE, temperature=1.5), answer("Paris"))
    assert entry.embedding is None
    calls = embedder.calls
    assert cache.lookup(ask(FRANCE, temperature=1.5)).kind == "exact"
    assert cache.lookup(ask(FRANCE_PLEASE, temperature=1.5)) is None
    assert embedder.calls == calls
    # only Cache-Control: no-cache (or semcache_bypass) counts as a bypass; this is a plain miss
    assert (cache.stats()["total"]["misses"], cache.stats()["total"]["bypasses"]) == (1, 0)


def test_complete_stores_a_miss_and_serves_it_next_time(make_cache):
    cache = make_cache(policy=POLICY)
    calls = []

    def upstream(request):
        calls.append(request)
        return answer("Paris", 12, 3)

    first = cache.complete(ask(FRANCE), call=upstream)
    second = cache.complete(ask(FRANCE_PLEASE), call=upstream)
    assert (first.status, second.status) == ("miss", "hit")
    assert second.response == answer("Paris", 12, 3) and second.entry_id == first.entry_id
    assert len(calls) == 1
    total = cache.stats()["total"]
    assert (total["requests"], total["misses"], total["semantic_hits"]) == (2, 1, 1)
    assert (total["prompt_tokens_saved"], total["completion_tokens_saved"], total["requests_saved"]) == (12, 3, 1)


def test_no_store_and_no_cache(make_cache):
    cache = make_cache(policy=POLICY)
    assert cache.complete(ask(FRANCE), call=lambda r: answer("Paris"), no_store=True).status == "miss"
    assert len(cache) == 0
    cache.insert(ask(FRANCE), answer("Paris"))
    result = cache.complete(ask(FRANCE), call=lambda r: answer("Lyon"), no_cache=True)
    assert result.status == "bypass" and result.response == answer("Lyon")


# -- TTL ---------------------------------------------------------------------------------------


def _module_cache(tmp_path_factory, **kwargs):
    """Yield (cache, clock) shared by a property test's examples: a new store per example is slow."""
    clock = Clock()
    cache = SemanticCache(str(tmp_path_factory.mktemp("prop")), embedder=WordEmbedder(), policy=POLICY, timer=clock, **kwargs)
    yield cache, clock
    cache.close()


@pytest.fixture(scope="module")
def ttl_cache(tmp_path_factory):
    yield from _module_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def capped_cache(tmp_path_factory):
    yield from _module_cache(tmp_path_factory, ttl=50, stale_ttl=20, max_entries=5, max_bytes=4000)


EXAMPLE = itertools.count()


@settings(max_examples=40, deadline=None)
@given(ttl=st.floats(0.5, 1e6), advance=st.floats(0, 2e6))
@example(ttl=10.0, advance=10.0)  # expiry is inclusive
@example(ttl=10.0, advance=9.999)
def test_an_expired_entry_is_never_served_fresh(ttl_cache, ttl, advance):
    cache, clock = ttl_cache
    tenant = f"t{next(EXAMPLE)}"  # a fresh partition per example
    cache.insert(ask(FRANCE), answer("Paris"), tenant=tenant, ttl=ttl)
    clock.advance(advance)
    exact, semantic = cache.lookup(ask(FRANCE), tenant=tenant), cache.lookup(ask(FRANCE_PLEASE), tenant=tenant)
    if advance >= ttl:
        assert exact is None and semantic is None
    else:
        assert exact.kind == "exact" and semantic.kind == "semantic"


def test_sliding_ttl_extends_on_hit(make_cache, clock):
    cache = make_cache(policy=POLICY, ttl=100, sliding_ttl=True)
    cache.insert(ask(FRANCE), answer("Paris"))
    for _ in range(3):  # 180 s after insert, alive because each hit pushed expiry 100 s on
        clock.advance(60)
        assert cache.lookup(ask(FRANCE)) is not None
        assert cache.lookup(ask(FRANCE_PLEASE)) is not None
    clock.advance(101)
    assert cache.lookup(ask(FRANCE)) is None


def test_absolute_ttl_does_not_slide(make_cache, clock):
    cache = make_cache(policy=POLICY, ttl=100)
    cache.insert(ask(FRANCE), answer("Paris"))
    clock.advance(60)
    assert cache.lookup(ask(FRANCE)) is not None
    clock.advance(60)
    assert cache.lookup(ask(FRANCE)) is None


def test_entries_past_the_stale_bound_are_deleted(make_cache, clock):
    cache = make_cache(policy=POLICY, ttl=10, stale_ttl=100)
    old = cache.insert(ask(FRANCE), answer("Paris"))
    clock.advance(50)
    cache.insert(ask("first unrelated question"), answer("x"))
    assert old.id in store_ids(cache)  # expired but within the stale bound: kept
    clock.advance(100)
    cache.insert(ask("second unrelated question"), answer("y"))
    assert old.id not in store_ids(cache) and old.id not in index_ids(cache)


# -- eviction ----------------------------------------------------------------------------------


def test_max_entries_evicts_least_recently_used(make_cache, clock):
    cache = make_cache(policy=POLICY, max_entries=10)
    entries = []
    for i in range(10):
        entries.append(cache.insert(ask(f"question number {i} about topic {i}"), answer(str(i))))
        clock.advance(1)
    assert cache.lookup(ask("question number 0 about topic 0")) is not None  # 0 is now the most recent
    clock.advance(1)
    cache.insert(ask("one more question"), answer("x"))
    remaining = store_ids(cache)
    assert len(remaining) == 9
    assert entries[0].id in remaining
    assert entries[1].id not in remaining and entries[2].id not in remaining
    assert index_ids(cache) == remaining


def test_max_bytes_caps_the_size(make_cache, clock):
    cache = make_cache(policy=POLICY, max_bytes=2000)
    first = cache.insert(ask("the very first question"), answer("a" * 300))
    for i in range(10):
        clock.advance(1)
        cache.insert(ask(f"question number {i}"), answer("b" * 300))
    assert cache.stats()["cache"]["bytes"] <= 2000
    assert first.id not in store_ids(cache)
    assert index_ids(cache) == store_ids(cache)


OPS = st.lists(st.tuples(st.sampled_from(["insert", "hit", "advance", "invalidate"]), st.integers(0, 11)), min_size=1, max_size=40)


@settings(max_examples=25, deadline=None)
@given(ops=OPS)
def test_index_and_store_agree_after_any_operations(capped_cache, ops):
    cache, clock = capped_cache
    cache.clear()
    for op, n in ops:
        if op == "insert":
            cache.insert(ask(f"question {n} about item {n}"), answer("z" * 40 * n))
        elif op == "hit":
            cache.lookup(ask(f"question {n} about item {n}"))
        elif op == "advance":
            clock.advance(5 * n)
        else:
            cache.invalidate(list(store_ids(cache))[:1])
        ids = store_ids(cache)
        assert index_ids(cache) == ids
        assert len(ids) <= 5
        assert cache.stats()["cache"]["bytes"] == sum(e.size for e in cache.store.scan())


# -- upstream failures -------------------------------------------------------------------------


def test_stale_if_error_serves_an_expired_entry(make_cache, clock):
    cache = make_cache(policy=POLICY, ttl=10)
    entry = cache.insert(ask(FRANCE), answer("Paris"))
    clock.advance(20)
    result = cache.complete(ask(FRANCE), call=failing_upstream)
    assert result.status == "stale" and result.response == answer("Paris") and result.entry_id == entry.id
    semantic = cache.complete(ask(FRANCE_PLEASE), call=failing_upstream)
    assert semantic.status == "stale" and semantic.entry_id == entry.id
    assert cache.stats()["total"]["stale_serves"] == 2
    with pytest.raises(UpstreamStatusError):
        cache.complete(ask("how do I bake bread at home"), call=failing_upstream)


def test_stale_if_error_never_serves_a_candidate_below_the_hit_rule(make_cache, clock):
    """Issue 17: with upstream down, a fresh or expired entry that is not a hit for this query (here
    under the threshold) is another question's answer: the upstream's error stands."""
    strict = MatchPolicy.cosine(0.999)
    cache = make_cache(policy=strict, ttl=10)
    cache.insert(ask(FRANCE), answer("Paris"))
    with pytest.raises(UpstreamStatusError):
        cache.complete(ask(FRANCE_PLEASE), call=failing_upstream)  # fresh entry, under the threshold
    clock.advance(20)
    with pytest.raises(UpstreamStatusError):
        cache.complete(ask(FRANCE_PLEASE), call=failing_upstream)  # expired entry, under the threshold
    assert cache.complete(ask(FRANCE), call=failing_upstream).status == "stale"  # the same request's copy


def test_stale_if_error_can_be_turned_off(make_cache, clock):
    cache = make_cache(policy=POLICY, ttl=10, stale_if_error=False)
    cache.insert(ask(FRANCE), answer("Paris"))
    clock.advance(20)

    def quota(request):
        raise QuotaExhausted("insufficient_quota", status_code=429, code="insufficient_quota")

    with pytest.raises(QuotaExhausted):
        cache.complete(ask(FRANCE), call=quota)


def test_lookup_fails_open_when_the_embedder_raises(make_cache):
    cache = make_cache(embedder=FailingEmbedder(), policy=POLICY)
    assert cache.lookup(ask(FRANCE)) is None
    result = cache.complete(ask(FRANCE), call=lambda request: answer("Paris"))
    assert result.status == "miss" and result.response == answer("Paris")
    total = cache.stats()["total"]
    assert total["lookup_errors"] == 2
    assert total["errors.EmbeddingError"] >= 2


class BuggyEmbedder:
    """An embedder with a programming error: what fail-open must not hide."""

    model_id, dim = "test-words", 32

    def embed(self, texts):
        return None.shape  # AttributeError


@pytest.mark.lookup_bug
def test_a_bug_in_a_lookup_fails_open_but_loudly_and_is_counted_apart(make_cache, caplog):
    cache = make_cache(embedder=BuggyEmbedder(), policy=POLICY)
    result = cache.complete(ask(FRANCE), call=lambda request: answer("Paris"))
    assert result.status == "miss" and result.lookup_bug and result.lookup_error == "AttributeError"
    errors = [r for r in caplog.records if r.levelname == "ERROR" and r.getMessage().startswith("semcache lookup bug")]
    assert errors and errors[0].exc_info is not None  # with its traceback
    total = cache.stats()["total"]
    assert total["lookup_bugs"] == 1 and total["lookup_errors"] == 0
    assert result.store_error == "AttributeError" and total["errors.AttributeError"] == 2  # the lookup's and the store's


def test_an_environmental_failure_is_a_warning_not_a_bug(make_cache, caplog):
    cache = make_cache(embedder=FailingEmbedder(), policy=POLICY)
    result = cache.complete(ask(FRANCE), call=lambda request: answer("Paris"))
    assert result.lookup_error == "EmbeddingError" and not result.lookup_bug
    assert not [r for r in caplog.records if r.levelname == "ERROR"]


def test_ttl_zero_means_never_expire_as_in_settings(make_cache, clock):
    cache = make_cache(policy=POLICY, ttl=0)
    entry = cache.insert(ask(FRANCE), answer("Paris"))
    assert entry.expires_at is None
    clock.advance(10**9)
    assert cache.lookup(ask(FRANCE)).kind == "exact"
    assert cache.insert(ask(SPAIN), answer("Madrid"), ttl=0).expires_at is None


# -- stats -------------------------------------------------------------------------------------


def test_stats_per_tenant_and_model_survive_reopen(make_cache, tmp_path):
    directory = tmp_path / "stats"
    cache = make_cache(directory, policy=POLICY)
    cache.complete(ask(FRANCE, model="m1"), call=lambda r: answer("Paris", 7, 2), tenant="a")
    cache.complete(ask(FRANCE, model="m1"), call=failing_upstream, tenant="a")
    cache.complete(ask(SPAIN, model="m2"), call=lambda r: answer("Madrid"), tenant="b")
    cache.close()
    reopened = make_cache(directory, policy=POLICY)
    stats = reopened.stats()
    assert stats["by_tenant"]["a"]["requests"] == 2 and stats["by_tenant"]["a"]["exact_hits"] == 1
    assert stats["by_tenant"]["a"]["prompt_tokens_saved"] == 7
    assert stats["by_tenant"]["b"]["misses"] == 1 and stats["by_tenant"]["b"]["exact_hits"] == 0
    assert stats["by_model"]["m1"]["requests"] == 2 and stats["by_model"]["m2"]["requests"] == 1
    assert stats["total"]["hit_rate"] == pytest.approx(1 / 3, abs=1e-3)
    assert stats["cache"]["entries"] == 2
    reopened.reset_stats()
    assert reopened.stats()["total"]["requests"] == 0


def test_hit_counts_reach_the_store_on_flush(make_cache):
    cache = make_cache(policy=POLICY)
    entry = cache.insert(ask(FRANCE), answer("Paris"))
    cache.lookup(ask(FRANCE))
    cache.lookup(ask(FRANCE_PLEASE))
    cache.flush()
    assert cache.store.get(entry.id).hits == 2


# -- feedback, invalidation, configuration ----------------------------------------------------


def test_feedback_wrong_stops_serving_that_entry_for_that_query(make_cache):
    cache = make_cache(policy=POLICY)
    entry = cache.insert(ask(FRANCE), answer("Paris"))
    result = cache.complete(ask(FRANCE_PLEASE), call=lambda r: answer("never called"))
    assert result.status == "hit"
    assert cache.feedback(result, correct=False)
    assert cache.lookup(ask(FRANCE_PLEASE)) is None
    assert cache.lookup(ask(FRANCE)).entry.id == entry.id  # still right for its own query
    assert cache.feedback(ask(FRANCE), correct=False)  # the stored answer itself is wrong: dropped
    assert cache.lookup(ask(FRANCE)) is None
    assert entry.id not in store_ids(cache)


def test_feedback_correct_changes_nothing(make_cache):
    cache = make_cache(policy=POLICY)
    cache.insert(ask(FRANCE), answer("Paris"))
    hit = cache.lookup(ask(FRANCE_PLEASE))
    assert cache.feedback(hit, correct=True)
    assert cache.lookup(ask(FRANCE_PLEASE)) is not None
    assert not cache.feedback(ask("never asked"), correct=False)


def test_another_embedder_dimension_is_refused(make_cache, tmp_path):
    with make_cache(tmp_path / "dim", policy=POLICY) as cache:
        cache.insert(ask(FRANCE), answer("Paris"))  # an empty directory would simply rebind

    class WideEmbedder(WordEmbedder):
        dim = 64

    with pytest.raises(ConfigError) as caught:
        make_cache(tmp_path / "dim", embedder=WideEmbedder(), policy=POLICY)
    assert "32" in str(caught.value) and "64" in str(caught.value)


def test_invalidate_by_id_and_by_partition(make_cache):
    cache = make_cache(policy=POLICY)
    a = cache.insert(ask(FRANCE), answer("Paris"), tenant="a")
    a2 = cache.insert(ask(SPAIN), answer("Madrid"), tenant="a")
    b = cache.insert(ask(FRANCE), answer("Paris"), tenant="b")
    assert cache.invalidate([b.id]) == 1
    assert cache.lookup(ask(FRANCE), tenant="b") is None
    assert cache.invalidate(partition=a.partition) == 2
    assert cache.lookup(ask(FRANCE), tenant="a") is None and cache.lookup(ask(SPAIN), tenant="a") is None
    assert store_ids(cache) == index_ids(cache) == set()
    assert a2.partition == a.partition


def test_clear_empties_the_cache(make_cache):
    cache = make_cache(policy=POLICY)
    for i in range(3):
        cache.insert(ask(f"question {i}"), answer(str(i)))
    cache.clear()
    assert len(cache) == 0 and index_ids(cache) == set()
    assert cache.lookup(ask("question 1")) is None


def test_reopen_rebuilds_the_index_from_the_store(make_cache, tmp_path):
    directory = tmp_path / "reopen"
    cache = make_cache(directory, policy=POLICY)
    entry = cache.insert(ask(FRANCE), answer("Paris"))
    cache.close()
    reopened = make_cache(directory, policy=POLICY)
    assert reopened.lookup(ask(FRANCE_PLEASE)).entry.id == entry.id
    np.testing.assert_allclose(reopened.index.vector(entry.id), entry.embedding, atol=1e-6)


def test_acomplete_misses_then_hits(make_cache):
    cache = make_cache(policy=POLICY)

    async def upstream(request):
        return answer("Paris")

    async def run():
        first = await cache.acomplete(ask(FRANCE), call=upstream)
        second = await cache.acomplete(ask(FRANCE_PLEASE), call=upstream)
        return first, second

    first, second = asyncio.run(run())
    assert (first.status, second.status) == ("miss", "hit")
    assert second.entry_id == first.entry_id and second.response == answer("Paris")


def test_a_miss_carries_the_policys_evidence(make_cache):
    cache = make_cache(policy=POLICY)
    stored = cache.insert(ask("how many moons does mars have"), answer("Two"))
    hit, decision = cache.probe(ask("how many moons does jupiter have"))
    assert hit is None
    assert decision.entry_id == stored.id and not decision.hit
    assert decision.similarity < 1.0 and decision.reason
    result = cache.complete(ask("how many moons does jupiter have"), call=lambda request: answer("95"))
    assert result.status == "miss" and result.decision.entry_id == stored.id
    again = cache.complete(ask("how many moons does jupiter have"), call=lambda request: answer("never called"))
    assert again.status == "hit" and again.response == answer("95")


def test_a_request_that_missed_just_before_another_stored_its_answer_does_not_call_again(make_cache, monkeypatch):
    """B looks up (miss); A's whole flight then calls, stores and ends; only then does B reach the flight."""
    cache = make_cache(policy=POLICY)
    looked, go = threading.Event(), threading.Event()
    original = cache._look

    def look(*args):
        out = original(*args)
        if threading.current_thread().name == "B":
            looked.set()
            go.wait(5)
        return out

    monkeypatch.setattr(cache, "_look", look)
    calls, results = [], []
    follower = threading.Thread(name="B", target=lambda: results.append(
        cache.complete(ask(FRANCE), lambda r: calls.append("B") or answer("Paris (B)"))))
    follower.start()
    assert looked.wait(5)
    first = cache.complete(ask(FRANCE), lambda r: calls.append("A") or answer("Paris (A)"))
    go.set()
    follower.join(5)
    assert calls == ["A"] and first.status == "miss"
    assert results[0].status == "hit" and results[0].response == first.response
    cache.flush()
    total = cache.stats()["total"]
    assert (total["requests"], total["misses"], total["exact_hits"], total["requests_saved"]) == (2, 1, 1, 1)


def test_hit_recency_reaches_other_processes_so_they_never_evict_what_is_hot_here(make_cache, clock, tmp_path):
    here = make_cache(tmp_path / "shared", policy=POLICY, flush_interval=None)
    there = make_cache(tmp_path / "shared", policy=POLICY, flush_interval=None, max_entries=3)
    hot = here.insert(ask(FRANCE), answer("Paris"))
    clock.advance(1)
    here.insert(ask(SPAIN), answer("Madrid"))
    clock.advance(1)
    here.insert(ask("what is the capital city of germany"), answer("Berlin"))
    clock.advance(1)
    here.lookup(ask(FRANCE))  # hot here, and the oldest entry by creation
    here.flush()
    there.sync()
    assert there._mirror.meta[hot.id].last_used == clock()
    clock.advance(1)
    there.insert(ask("what is the capital city of italy"), answer("Rome"))  # over its cap: down to 90%, LRU first
    survivors = {e.query_text for e in there.entries()}
    assert survivors == {FRANCE, "what is the capital city of italy"}
