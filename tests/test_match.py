"""Tests for semcache.match, semcache.checks and semcache.verifier."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcache.matching.checks import CHECKS, analyze, run_checks
from semcache.errors import ConfigError
from semcache.matching.policy import Candidate, Decision, MatchPolicy
from semcache.matching.verifier import FEATURES, Verifier

# (check that must fail on the near-miss, prompt, near-miss, paraphrase that must pass every check)
CASES = [
    ("numbers", "what is 1+1", "what is 1+2", "what does 1 + 1 equal"),
    ("numbers", "What is 15% of 200?", "What is 15% of 300?", "what's fifteen percent of 200"),
    ("numbers", "Give me 5 ideas for dinner", "Give me 10 ideas for dinner", "Suggest five dinner ideas"),
    ("numbers", "best phone under 15k", "best phone under 20k", "best phone under 15,000"),
    ("units", "How long to walk 5 km?", "How long to walk 5 miles?", "time to walk 5 kilometers"),
    ("units", "Convert 30 degrees C to F", "Convert 30 degrees F to C", "30 C in F please"),
    ("versions", "What's new in Python 3.11?", "What's new in Python 3.12?", "new features of python 3.11"),
    ("versions", "Upgrade guide for v2.4.1", "Upgrade guide for v2.5.0", "How to upgrade to version 2.4.1"),
    ("dates", "Who won the World Cup in 2018?", "Who won the World Cup in 2014?", "Which country won the 2018 World Cup?"),
    ("dates", "Weather in Lisbon in April?", "Weather in Lisbon in November?", "What is Lisbon like in April?"),
    ("negation", "Can I eat eggs while pregnant?", "Can't I eat eggs while pregnant?", "Is it safe to eat eggs during pregnancy?"),
    ("negation", "How to make coffee with sugar", "How to make coffee without sugar", "Making coffee with sugar"),
    ("entities", "What is the capital of France?", "What is the capital of Spain?", "Which city is the capital of France?"),
    ("entities", "Who founded Microsoft?", "Who founded Apple?", "Who were the founders of Microsoft?"),
    ("quoted", "What does 'ephemeral' mean?", "What does 'ethereal' mean?", "Define the word 'ephemeral'"),
    ("identifiers", "What does os.path.join do?", "What does os.path.split do?", "Explain os.path.join"),
    ("identifiers", "Why does my_function return None?", "Why does other_function return None?", "my_function returns None, why?"),
    ("identifiers", "What does getElementById return?", "What does querySelector return?", "return value of getElementById"),
    ("question_word", "Why did Rome fall?", "When did Rome fall?", "What caused the fall of Rome?"),
    ("language", "What is the capital of France?", "Quelle est la capitale de la France ?", "Which city is France's capital?"),
    ("language", "Explain photosynthesis simply", "Объясни фотосинтез простыми словами", "Explain photosynthesis in simple words"),
    ("order", "Convert Celsius to Fahrenheit", "Convert Fahrenheit to Celsius", "Celsius to Fahrenheit conversion"),
    ("order", "Is Python faster than Java?", "Is Java faster than Python?", "Does Python run faster than Java?"),
    ("order", "How to convert a list to a tuple in Python", "How to convert a tuple to a list in Python", "Python: turn a list into a tuple"),
    ("order", "Translate from English to Spanish: good night", "Translate from Spanish to English: good night", "English to Spanish translation of 'good night'"),
    ("order", "Convert kilometers to miles", "Convert miles to km", "km to miles conversion"),
    ("operators", "Solve x^2 + 5x + 6 = 0", "Solve x^2 - 5x + 6 = 0", "solve x^2+5x+6=0 step by step"),
    ("operators", "What is 1/2 × 1/3?", "What is 1/2 ÷ 1/3?", "1/2 * 1/3 = ?"),
    ("operators", "Solve 2x + 3 = 11", "Solve 2x + 3 > 11", "2x+3=11"),
    ("measures", "How many milliseconds in an hour?", "How many seconds in an hour?", "hour to milliseconds"),
    ("measures", "Area of a circle with radius 5", "Area of a circle with diameter 5", "what is the area if the radius is 5"),
]


def failed(a: str, b: str) -> set[str]:
    return {c.name for c in run_checks(analyze(a), analyze(b)) if not c.passed}


@pytest.mark.parametrize(("name", "prompt", "near_miss", "paraphrase"), CASES)
def test_check_rejects_the_near_miss(name, prompt, near_miss, paraphrase):
    assert name in failed(prompt, near_miss)
    assert name in failed(near_miss, prompt)


@pytest.mark.parametrize(("name", "prompt", "near_miss", "paraphrase"), CASES)
def test_checks_keep_the_paraphrase(name, prompt, near_miss, paraphrase):
    assert failed(prompt, paraphrase) == set()


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("Why is Donald Trump so popular?", "Why do people like Trump?"),  # a name dropped, not swapped
        ("How do I find my phone using IMEI without the police?", "How do I find my lost phone using IMEI?"),
        ("What do you think of Pokemon Go?", "What do you like about Pokémon Go?"),
        ("Which one is better, python 3 or python 2?", "Is python 3 or python 2 better?"),
        ("Where and how is cheese made?", "How is cheese made?"),
        ("What is the difference between Python and Java?", "Java vs Python: differences?"),
        ("How did the Congress of Vienna lead to World War I?", "How did the Congress of Vienna lead to WWI?"),
        ("How do I go to school by bus?", "How to go to school by bus"),  # "to" without two ends swapped
        ("Should I move from Java to Kotlin or Kotlin to Java?", "Java to Kotlin or the other way round?"),
    ],
)
def test_omissions_and_rewordings_pass(a, b):
    assert failed(a, b) == set()


words = st.sampled_from(["how", "why", "not", "Paris", "London", "5", "7", "km", "miles", "2019", "x_id", "to", "is", "it", "'a'"])


@settings(max_examples=200, deadline=None)
@given(st.lists(words, max_size=8), st.lists(words, max_size=8))
def test_checks_are_symmetric_and_pass_on_identical_texts(left, right):
    a, b = " ".join(left), " ".join(right)
    assert failed(a, b) == failed(b, a)
    assert failed(a, a) == set()


def unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float32)
    return v / np.linalg.norm(v)


def candidate(entry_id: int, text: str, similarity: float, rejected=()) -> Candidate:
    rng = np.random.default_rng(entry_id)
    return Candidate(entry_id, text, similarity, unit(rng.normal(size=384)), rejected)


QUERY_VECTOR = unit(np.random.default_rng(99).normal(size=384))


def test_learned_policy_needs_no_training_and_scores_in_unit_interval():
    policy = MatchPolicy.learned()
    assert policy.kind == "learned" and 0 < policy.threshold < 1
    decision = policy.decide("How do I learn Python?", [candidate(1, "What is the best way to learn Python?", 0.9)], QUERY_VECTOR)
    assert 0.0 <= decision.score <= 1.0
    assert decision.hit == (decision.score >= decision.threshold and all(c.passed for c in decision.checks))


def test_decide_without_candidates_is_a_miss():
    decision = MatchPolicy().decide("anything", [], QUERY_VECTOR)
    assert not decision.hit and decision.entry_id is None and decision.reason == "no-candidates"


def test_cosine_policy_scores_by_similarity():
    policy = MatchPolicy.cosine(0.9)
    hit = policy.decide("how to learn python", [candidate(1, "how to learn python?", 0.93), candidate(2, "learn python", 0.91)])
    assert hit.hit and hit.entry_id == 1 and hit.score == pytest.approx(0.93)
    miss = policy.decide("how to learn python", [candidate(1, "learn python", 0.85)])
    assert not miss.hit and miss.reason == "below-threshold"


def test_failed_check_blocks_a_hit_and_is_reported():
    policy = MatchPolicy.cosine(0.5, checks=("numbers",))
    decision = policy.decide("what is 1+1", [candidate(7, "what is 1+2", 0.99)])
    assert not decision.hit and decision.reason == "check-failed:numbers"
    assert [c for c in decision.checks if not c.passed][0].detail == "['1'] != ['2']"
    assert decision.as_dict()["checks"][0] == {"name": "numbers", "passed": False, "detail": "['1'] != ['2']"}


def test_a_verified_candidate_beats_a_closer_one_that_fails_a_check():
    policy = MatchPolicy.cosine(0.8, checks=tuple(CHECKS))
    decision = policy.decide("capital of France", [candidate(1, "capital of Spain", 0.95), candidate(2, "France's capital", 0.9)])
    assert decision.hit and decision.entry_id == 2


def test_feedback_rejects_a_query_the_entry_was_marked_wrong_for():
    policy = MatchPolicy.cosine(0.5)
    rejected = candidate(3, "how do I learn python", 0.97, rejected=("How do I learn Python?!",))
    decision = policy.decide("how do I learn python", [rejected])
    assert not decision.hit and decision.reason == "check-failed:feedback"
    other = policy.decide("what is the best way to learn python", [candidate(3, "how do I learn python", 0.97, ("How do I learn Python?!",))])
    assert other.hit


def test_score_pairs_applies_checks_as_a_floor():
    policy = MatchPolicy.learned()
    rng = np.random.default_rng(1)
    va = np.stack([unit(rng.normal(size=384)) for _ in range(2)])
    texts_a, texts_b = ["what is 1+1", "what is 1+1"], ["what is 1+2", "what is one plus one"]
    raw = policy.score_pairs(texts_a, texts_b, [0.95, 0.95], va, va, apply_checks=False)
    checked = policy.score_pairs(texts_a, texts_b, [0.95, 0.95], va, va)
    assert checked[0] == 0.0 and raw[0] > 0.0 and checked[1] == raw[1]
    with pytest.raises(ConfigError, match="one length"):
        policy.score_pairs(["a"], ["b", "c"], [0.5])


def test_higher_similarity_never_lowers_the_learned_score():
    policy = MatchPolicy.learned()
    va = np.stack([QUERY_VECTOR] * 3)
    scores = policy.score_pairs(["how to learn python"] * 3, ["learn python fast"] * 3, [0.6, 0.8, 0.95], va, va)
    assert scores[0] <= scores[1] <= scores[2]


def test_policy_round_trips_through_a_file(tmp_path):
    for policy in (MatchPolicy(), MatchPolicy.learned(), MatchPolicy(threshold=0.7, margin=0.2, checks=("numbers",), reject_below=0.3,
                   accept_above=0.99, max_pairs=3, nearest_only=True, languages=("en", "es")), MatchPolicy.cosine(0.88)):
        path = tmp_path / "policy.json"
        policy.save(path)
        loaded = MatchPolicy.load(path)
        assert loaded == policy and loaded.to_dict() == policy.to_dict()


def test_policy_with_inline_weights_round_trips(tmp_path):
    policy = MatchPolicy.learned().with_verifier(MatchPolicy.learned().verifier).with_threshold(0.6)
    path = tmp_path / "p.json"
    policy.save(path)
    loaded = MatchPolicy.load(path)
    assert isinstance(json.loads(path.read_text())["verifier"], dict)
    va = np.stack([QUERY_VECTOR])
    args = (["how to learn python"], ["learn python"], [0.8], va, va)
    assert loaded.score_pairs(*args) == pytest.approx(policy.score_pairs(*args))


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"threshold": 2.0, "kind": "cosine"}, "threshold"),
        ({"threshold": -0.5, "kind": "learned"}, "threshold"),
        ({"threshold": "high"}, "threshold"),
        ({"threshold": 0.9, "kind": "magic"}, "kind"),
        ({"threshold": 0.9, "checks": ["numbers", "vibes"]}, "checks"),
        ({"threshold": 0.9, "margin": 3}, "margin"),
        ({"threshold": 0.9, "kind": "learned", "verifier": {"features": ["x"]}}, "features"),
        ({"threshold": 0.9, "kind": "cascade", "reject_below": 0.9, "accept_above": 0.5}, "reject_below"),
        ({"threshold": 0.9, "kind": "cascade", "max_pairs": 0}, "max_pairs"),
        ({"threshold": 0.9, "kind": "cascade", "reject_below": "low"}, "band"),
    ],
)
def test_bad_policy_data_raises_config_error_naming_the_field(data, field):
    with pytest.raises(ConfigError, match=field):
        MatchPolicy.from_dict(data)


def test_load_reports_missing_and_malformed_files(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        MatchPolicy.load(tmp_path / "nope.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        MatchPolicy.load(tmp_path / "bad.json")


def test_legacy_cosine_file_without_kind_still_loads():
    assert MatchPolicy.from_dict({"threshold": 0.9}) == MatchPolicy.cosine(0.9)


def test_decision_as_dict_is_json_serialisable():
    decision = MatchPolicy.learned().decide("How do I learn Python?", [candidate(1, "How can I learn Python?", 0.95)], QUERY_VECTOR)
    assert isinstance(decision, Decision)
    assert json.loads(json.dumps(decision.as_dict()))["entry_id"] == 1


def test_verifier_logistic_and_mlp_forms_match_hand_computation():
    n = len(FEATURES)
    x = np.ones((1, n), dtype=np.float32)
    lr = Verifier(np.zeros(n, np.float32), np.ones(n, np.float32), np.full(n, 0.1, np.float32), -1.0)
    assert lr.logits(x)[0] == pytest.approx(0.1 * n - 1.0)
    mlp = Verifier(np.zeros(n, np.float32), np.ones(n, np.float32), np.array([1.0, -1.0], np.float32), 0.5,
                   hidden_w=np.ones((n, 2), np.float32), hidden_b=np.array([0.0, -1e3], np.float32))
    assert mlp.logits(x)[0] == pytest.approx(n + 0.5)  # second unit is cut by the ReLU
    assert Verifier.from_dict(mlp.to_dict()).logits(x)[0] == pytest.approx(n + 0.5)


class ScriptedPairs:
    """A pair model that scores from a table of (query, candidate) -> probability, and records what it was asked."""

    model_id = "scripted"

    def __init__(self, table: dict, default: float = 0.0) -> None:
        self.table, self.default, self.asked = table, default, []

    def score(self, pairs):
        self.asked.append(list(pairs))
        return np.array([self.table.get(p, self.default) for p in pairs], dtype=np.float64)


def cascade(pairs, **options) -> MatchPolicy:
    options = {"threshold": 0.5, "reject_below": 0.6, "accept_above": 0.99, "max_pairs": 2, **options}
    return MatchPolicy(**options).with_pair(pairs)


def test_the_default_policy_is_the_cascade_and_needs_its_pair_model():
    policy = MatchPolicy()
    assert policy.kind == "cascade" and policy.needs_pair and policy.languages == ("en",)
    with pytest.raises(ConfigError, match="pair model"):
        policy.decide("how to learn python", [candidate(1, "learn python", 0.8)])
    assert not policy.with_pair(ScriptedPairs({})).needs_pair


def test_cascade_band_boundaries():
    """Under reject_below: rejected unasked; at or over accept_above with every check passed: a hit unasked;
    in between: the pair model's probability decides."""
    pairs = ScriptedPairs({("learn python", "how do i learn python"): 0.9})
    policy = cascade(pairs)
    low = policy.decide("learn python", [candidate(1, "how do i learn python", 0.5999)])
    assert not low.hit and low.score == 0.0 and pairs.asked == []
    high = policy.decide("learn python", [candidate(1, "how do i learn python", 0.99)])
    assert high.hit and high.score == 1.0 and pairs.asked == []
    band = policy.decide("learn python", [candidate(1, "how do i learn python", 0.6)])
    assert band.hit and band.score == pytest.approx(0.9) and pairs.asked == [[("learn python", "how do i learn python")]]
    refused = cascade(ScriptedPairs({}, default=0.49)).decide("learn python", [candidate(1, "python learning", 0.9)])
    assert not refused.hit and refused.reason == "below-threshold"


def test_a_confident_cosine_never_overrules_a_check():
    policy = cascade(ScriptedPairs({}, default=1.0))
    decision = policy.decide("what is 15% of 240", [candidate(1, "what is 15% of 340", 0.999)])
    assert not decision.hit and decision.reason == "check-failed:numbers"


def test_candidates_failing_a_check_never_reach_the_pair_model_and_at_most_max_pairs_do():
    pairs = ScriptedPairs({}, default=0.2)
    policy = cascade(pairs, max_pairs=2)
    cands = [candidate(1, "capital of spain", 0.95), candidate(2, "which city is france's capital", 0.94),
             candidate(3, "what is the capital city of france", 0.93), candidate(4, "france capital city", 0.92)]
    policy.decide("capital of france", cands)
    assert pairs.asked == [[("capital of france", "which city is france's capital"), ("capital of france", "what is the capital city of france")]]


def test_operators_between_words_are_hyphens_not_arithmetic():
    assert analyze("a step-by-step x-ray guide").operators == ()
    assert analyze("factorise x^2-5x+6").operators == ("^", "-", "+")
    assert failed("Solve x^2 + 5x + 6 = 0", "Solve x^2 + 5x + 6") == set()  # a dropped "= 0" is an omission


def test_prompts_that_differ_only_in_form_are_hits_without_the_pair_model():
    pairs = ScriptedPairs({}, default=0.0)
    policy = cascade(pairs)
    for stored in ("What is the capital of France?", "what is the capital of france", "Hey, what is the capital of France? Thanks"):
        decision = policy.decide("What's the capital of France?", [candidate(1, stored, 0.97)])
        assert decision.hit and decision.score == 1.0, stored
    assert pairs.asked == []
    near = policy.decide("What's the capital of Germany?", [candidate(1, "What is the capital of France?", 0.97)])
    assert not near.hit  # the checks still run first
    sign = cascade(ScriptedPairs({}, default=0.0), checks=()).decide("Solve x^2 - 5x + 6 = 0", [candidate(1, "Solve x^2 + 5x + 6 = 0", 0.97)])
    assert not sign.hit  # operators are part of the form: same words, another equation


def test_nearest_only_never_serves_a_farther_candidate_in_place_of_the_nearest():
    table = {("how tall is the eiffel tower", "eiffel tower height in meters"): 0.95}
    cands = [candidate(1, "how old is the eiffel tower", 0.97), candidate(2, "eiffel tower height in meters", 0.9)]
    anywhere = cascade(ScriptedPairs(table)).decide("how tall is the eiffel tower", cands)
    assert anywhere.hit and anywhere.entry_id == 2  # the farther one is served
    nearest = cascade(ScriptedPairs(table), nearest_only=True).decide("how tall is the eiffel tower", cands)
    assert not nearest.hit and nearest.entry_id == 1  # the nearest one decides
    vetoed = [candidate(1, "how tall is the eiffel tower in 1889", 0.97), candidate(2, "eiffel tower height in meters", 0.9)]
    skipped = cascade(ScriptedPairs(table), nearest_only=True).decide("how tall is the eiffel tower in 2024", vetoed)
    assert skipped.entry_id != 1 or not skipped.hit  # a vetoed nearest candidate does not block the next one


def test_a_language_the_policy_does_not_read_is_never_a_semantic_hit():
    pairs = ScriptedPairs({}, default=1.0)
    policy = cascade(pairs)
    chinese = policy.decide("python 怎么给列表排序", [candidate(1, "python 怎么给字典排序", 0.999)])
    assert not chinese.hit and chinese.reason == "language-not-read" and pairs.asked == []
    spanish = policy.decide("como ordeno una lista en python", [candidate(1, "como ordeno un diccionario en python", 0.97)])
    assert not spanish.hit and spanish.reason == "language-not-read"
    everyone = cascade(pairs, languages=())
    assert everyone.decide("como ordeno una lista en python", [candidate(1, "como ordenar una lista en python", 0.97)]).hit


def test_score_pairs_follows_the_cascade_rule():
    pairs = ScriptedPairs({("learn python", "how do i learn python"): 0.7})  # (query, stored)
    policy = cascade(pairs)
    scores = policy.score_pairs(["how do i learn python", "learn python", "what is 1+1", "python 排序"],
                                ["learn python", "learn python", "what is 1+2", "python 排序 降序"], [0.8, 0.995, 0.99, 0.99])
    assert scores.tolist() == [0.7, 1.0, 0.0, 0.0]


@pytest.fixture(scope="module")
def model():
    from semcache.embedding.sentence import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder()


@functools.lru_cache(maxsize=1)
def shipped_policy() -> MatchPolicy:
    from semcache.embedding.pair import PairClassifier

    return MatchPolicy().with_pair(PairClassifier())


@pytest.mark.model
@pytest.mark.parametrize(
    ("query", "stored", "expect_hit"),
    [
        ("What's the capital of France?", "What is the capital of France?", True),
        ("hey, how do i learn python quickly? thanks", "How do I learn Python quickly?", True),
        ("Solve x^2 - 5x + 6 = 0", "Solve x^2 + 5x + 6 = 0", False),
        ("What is 15% of 240?", "What is 15% of 340?", False),
        ("What's new in Python 3.11?", "What's new in Python 3.12?", False),
        ("What is the capital of Australia?", "What is the capital of Austria?", False),
    ],
)
def test_default_policy_on_the_real_model(model, query, stored, expect_hit):
    q, s = model.embed([query, stored])
    decision = shipped_policy().decide(query, [Candidate(1, stored, float(q @ s), s)], q)
    assert decision.hit is expect_hit, decision.as_dict()
