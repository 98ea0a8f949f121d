"""Stale-if-error never answers another question (issues #17 and #18, item 2).

A stale answer is the expired copy of the same request, or an expired entry that passes the hit
rule itself (threshold and every check); never a candidate below the threshold. And whatever the
index says, an entry read for a lookup is served only when it is the entry the index matched.
"""

from __future__ import annotations

import pytest

from semcache import MatchPolicy
from semcache.errors import UpstreamStatusError

from test_cache import FRANCE, FRANCE_PLEASE, POLICY, answer, ask, failing_upstream

LARGEST = "what is the largest city of france"  # cosine 0.877 to FRANCE: under 0.9, within the old 0.03 stale margin


def test_a_near_miss_is_never_served_stale(make_cache, clock):
    """Before the fix this served "Paris" (FRANCE's answer) to LARGEST when the upstream failed."""
    cache = make_cache(policy=POLICY)
    cache.insert(ask(FRANCE), answer("Paris"))
    assert cache.lookup(ask(LARGEST)) is None  # a miss while upstream works
    with pytest.raises(UpstreamStatusError):
        cache.complete(ask(LARGEST), call=failing_upstream)
    assert cache.stats()["total"]["stale_serves"] == 0


def test_a_near_miss_of_an_expired_entry_is_never_served_stale(make_cache, clock):
    cache = make_cache(policy=POLICY, ttl=10)
    cache.insert(ask(FRANCE), answer("Paris"))
    clock.advance(20)
    with pytest.raises(UpstreamStatusError):
        cache.complete(ask(LARGEST), call=failing_upstream)


def test_an_expired_copy_and_an_expired_paraphrase_that_passes_the_hit_rule_are_served_stale(make_cache, clock):
    cache = make_cache(policy=POLICY, ttl=10)
    entry = cache.insert(ask(FRANCE), answer("Paris"))
    clock.advance(20)
    same = cache.complete(ask(FRANCE), call=failing_upstream)
    paraphrase = cache.complete(ask(FRANCE_PLEASE), call=failing_upstream)  # cosine 0.94 >= 0.9
    assert (same.status, same.entry_id, paraphrase.status, paraphrase.entry_id) == ("stale", entry.id, "stale", entry.id)
    assert paraphrase.decision.similarity >= POLICY.threshold


def test_a_stale_candidate_must_pass_every_check_too(make_cache, clock):
    policy = MatchPolicy.cosine(0.8, checks=("numbers",))
    cache = make_cache(policy=policy, ttl=10)
    cache.insert(ask("what is 12 times 3"), answer("36"))
    clock.advance(20)
    with pytest.raises(UpstreamStatusError):  # cosine high, the numbers disagree: another question
        cache.complete(ask("what is 12 times 4"), call=failing_upstream)


def test_an_entry_that_is_not_the_one_the_index_matched_is_never_served(make_cache, clock):
    """The index says FRANCE's exact key is entry X; the store's entry X is another question (an id
    reused after a store went back in time). Before the fix the exact tier served it."""
    cache = make_cache(policy=POLICY)
    france = cache.insert(ask(FRANCE), answer("Paris"))
    bread = cache.insert(ask("how do I bake bread at home"), answer("Flour"))
    key = cache.key(ask(FRANCE))
    cache._mirror.exact[key.exact_key] = bread.id  # the view and the store disagree
    hit = cache.lookup(ask(FRANCE))
    assert hit is None or (hit.entry.id, hit.response) == (france.id, answer("Paris"))  # never bread's answer
    result = cache.complete(ask(FRANCE), call=lambda request: answer("fresh"))
    assert result.response != answer("Flour")
