"""The generated workload: seeded, well-formed, and keyable by semcache.keys.normalize."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcache.keys import normalize
from semcache.tools.workload import INTENTS, Request, generate


def test_same_seed_same_workload():
    assert generate(100, seed=3) == generate(100, seed=3)


def test_different_seed_different_workload():
    assert [r.text for r in generate(100, seed=1)] != [r.text for r in generate(100, seed=2)]


@pytest.mark.parametrize("n", [0, 1, 57])
def test_generates_n_requests(n):
    assert len(generate(n)) == n


def test_every_intent_has_non_empty_distinct_phrasings():
    assert len(INTENTS) >= 20
    for intent, phrasings in INTENTS.items():
        assert phrasings, intent
        assert all(p.strip() for p in phrasings), intent
        assert len(set(phrasings)) == len(phrasings), intent


def test_no_phrasing_belongs_to_two_intents():
    owners = Counter(p for phrasings in INTENTS.values() for p in phrasings)
    assert [p for p, n in owners.items() if n > 1] == []


def test_requests_are_valid_chat_requests():
    for request in generate(200, seed=5, model="gpt-4o"):
        assert isinstance(request, Request)
        assert request.text in INTENTS[request.intent]
        body = request.body
        assert body["model"] == "gpt-4o"
        assert body["temperature"] == 0
        assert body["messages"][-1] == {"role": "user", "content": request.text}
        assert all(set(m) == {"role", "content"} for m in body["messages"])
        key = normalize(body)
        assert key.query_text == request.text
        assert key.semantic
        assert key.model == "gpt-4o"


def test_requests_of_one_workload_share_a_partition():
    # Same system prompt, model and temperature: only the question differs, so the semantic
    # tier can match paraphrases across the whole workload.
    partitions = {normalize(r.body).partition for r in generate(100, seed=0)}
    assert len(partitions) == 1


def test_popularity_is_skewed():
    counts = Counter(r.intent for r in generate(2000, seed=0))
    top, *_ = counts.most_common(1)
    assert top[1] > 2000 / len(INTENTS) * 2  # Zipf: the head intent is far above uniform


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32), n=st.integers(0, 60))
def test_any_seed_gives_keyable_requests(seed, n):
    workload = generate(n, seed=seed)
    assert len(workload) == n
    for request in workload:
        assert normalize(request.body).query_text == request.text
