"""Tests for semcache.calibrate: reading pairs, grouped splits, metrics, calibrate()."""

from __future__ import annotations

import hashlib
import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from semcache.matching.metrics import best_f1, pr_points, roc_auc, threshold_for_precision
from semcache.tools.calibrate import calibrate
from semcache.tools.data import components, group_split, intent_groups, read_pairs
from semcache.errors import ConfigError, RequestError
from semcache.matching.policy import MatchPolicy


class BagOfWordsEmbedder:
    """Deterministic fake: each word adds a fixed random direction; rows are unit-norm (384-d)."""

    def embed(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), 384), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                seed = int(hashlib.sha1(word.encode()).hexdigest()[:8], 16)
                out[i] += np.random.default_rng(seed).normal(size=384)
            out[i] /= max(np.linalg.norm(out[i]), 1e-9)
        return out


TOPICS = ["python", "java", "cooking", "pasta", "guitar", "running", "taxes", "gardening", "chess", "painting",
          "rust", "baking", "swimming", "piano", "budget", "yoga", "photography", "hiking", "excel", "linux"]


def synthetic_pairs(n_topics: int = 20, seed: int = 0) -> list[tuple[str, str, int]]:
    """Paraphrases (shared topic, reworded) and near-misses (another topic or another number)."""
    rng = random.Random(seed)
    pairs = []
    for i, topic in enumerate(TOPICS[:n_topics]):
        for j in range(6):
            base = f"how do I get better at {topic} fast {i}{j}"
            pairs.append((base, f"what is the best way to improve at {topic} quickly {i}{j}", 1))
            pairs.append((base, f"how do I get better at {topic} fast {i}{j} please", 1))
            other = rng.choice([t for t in TOPICS if t != topic])
            pairs.append((base, f"how do I get better at {other} fast {i}{j}", 0))
            pairs.append((base, f"how do I get better at {topic} fast {i}{j + 50}", 0))
    return pairs


def test_read_pairs_jsonl_and_csv(tmp_path):
    (tmp_path / "p.jsonl").write_text(json.dumps({"q1": "a", "q2": "b", "dup": 1}) + "\n\n" + json.dumps({"q1": "c", "q2": "d", "dup": "0"}) + "\n")
    assert read_pairs(tmp_path / "p.jsonl", "q1", "q2", "dup") == [("a", "b", 1), ("c", "d", 0)]
    (tmp_path / "p.csv").write_text("text_a,text_b,label\n\"x, y\",z,1\nu,v,0\n")
    assert read_pairs(tmp_path / "p.csv") == [("x, y", "z", 1), ("u", "v", 0)]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"text_a": "a", "text_b": "b", "label": 2}\n', "bad.jsonl:1: label must be 0 or 1"),
        ('{"text_a": "a", "text_b": "b", "label": "yes"}\n', "bad.jsonl:1: label must be 0 or 1"),
        ('{"text_a": "a", "label": 1}\n', "bad.jsonl:1: missing column 'text_b'"),
        ("{not json\n", "bad.jsonl:1: not valid JSON"),
    ],
)
def test_read_pairs_rejects_bad_rows_naming_the_field(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(RequestError, match=message):
        read_pairs(path)


def test_read_pairs_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_pairs(tmp_path / "missing.jsonl")


pair_lists = st.lists(st.tuples(st.sampled_from("abcdefghijklmnop"), st.sampled_from("abcdefghijklmnop"), st.integers(0, 1)), min_size=1, max_size=60)


@settings(max_examples=100, deadline=None)
@given(pair_lists, st.floats(0.05, 0.95), st.integers(0, 3))
def test_group_split_never_shares_a_text_and_covers_every_pair(pairs, holdout, seed):
    fit, held = group_split(pairs, holdout, seed)
    assert sorted(fit + held) == list(range(len(pairs)))
    texts_fit = {t for i in fit for t in pairs[i][:2]}
    texts_held = {t for i in held for t in pairs[i][:2]}
    assert not texts_fit & texts_held
    assert group_split(pairs, holdout, seed) == (fit, held)


def test_group_split_holds_out_about_the_requested_share():
    pairs = [(f"q{i}", f"p{i}", i % 2) for i in range(1000)]
    _, held = group_split(pairs, 0.2, 0)
    assert 195 <= len(held) <= 205


def test_metrics_on_a_known_ranking():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([1, 1, 0, 1, 0, 0])
    assert roc_auc(scores, labels) == pytest.approx(8 / 9)
    pts = pr_points(scores, labels)
    assert pts["precision"].tolist() == pytest.approx([1, 1, 2 / 3, 3 / 4, 3 / 5, 1 / 2])
    f1, threshold = best_f1(scores, labels)
    assert f1 == pytest.approx(6 / 7) and threshold == 0.6
    assert threshold_for_precision(scores, labels, 0.99, min_accepted=1) == 0.8
    # the lowest cut whose hits are 70% right: 0.6 accepts 1,1,0,1 (75%), though 0.7 alone was 2/3
    assert threshold_for_precision(scores, labels, 0.7, min_accepted=1) == 0.6
    assert roc_auc(np.array([0.5, 0.5]), np.array([1, 0])) == 0.5


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.integers(0, 1)), min_size=2, max_size=80), st.floats(0.5, 0.99))
def test_threshold_for_precision_meets_the_target_or_accepts_the_top_only(rows, target):
    scores = np.array([s for s, _ in rows])
    labels = np.array([y for _, y in rows])
    t = threshold_for_precision(scores, labels, target, min_accepted=1)
    accepted = scores >= t
    assert accepted.any()
    assert labels[accepted].mean() >= target or t == scores.max()


def test_calibrate_meets_the_target_and_reports_held_out_numbers():
    pairs = synthetic_pairs()
    policy, report = calibrate(pairs, 0.9, embedder=BagOfWordsEmbedder(), holdout=0.25, seed=1)
    assert isinstance(policy, MatchPolicy) and policy.threshold == report["threshold"]
    assert report["fit"]["precision"] >= 0.9
    assert set(report["held_out"]) >= {"precision", "recall", "pairs", "roc_auc"}
    assert report["held_out"]["pairs"] + report["fit"]["pairs"] == len(pairs)


def test_calibrate_keeps_the_base_policy_and_proposes_only_a_measured_threshold():
    pairs = synthetic_pairs()
    cosine, report = calibrate(pairs, 0.8, embedder=BagOfWordsEmbedder(), base=MatchPolicy.cosine())
    assert cosine.checks == () and -1 <= cosine.threshold <= 1
    embedder = BagOfWordsEmbedder()
    texts = sorted({t for a, b, _ in pairs for t in (a, b)})
    vectors = dict(zip(texts, embedder.embed(texts)))
    measured = {round(float(vectors[a] @ vectors[b]), 4) for a, b, _ in pairs}
    assert report["threshold"] in measured  # a cosine some pair really had
    assert 0 <= report["fit"]["precision_lower_95"] <= report["fit"]["precision"]
    assert MatchPolicy.from_dict(cosine.to_dict()) == cosine


def test_calibrate_refuses_pairs_whose_negatives_the_checks_already_refuse():
    """Hard negatives that differ in one number: the checks refuse every one, so no threshold is
    measured by them (a calibration once proposed 0.0231 here and promised precision 0.97)."""
    pairs = [(f"what is {i} plus {i}", f"what does {i} plus {i} equal", 1) for i in range(20)]
    pairs += [(f"what is {i} plus {i}", f"what is {i} plus {i + 1}", 0) for i in range(20)]
    with pytest.raises(ConfigError, match="cannot support a threshold"):
        calibrate(pairs, 0.9, embedder=BagOfWordsEmbedder())


def test_calibrate_says_when_no_threshold_reaches_the_target():
    pairs = [(f"topic {i} question", f"topic {i} question again", i % 2) for i in range(60)]
    with pytest.raises(ConfigError, match="no measured threshold reaches precision"):
        calibrate(pairs, 0.99, embedder=BagOfWordsEmbedder())


@pytest.mark.parametrize(("kwargs", "message"), [({"target_precision": 1.0}, "target_precision"), ({"target_precision": 0.9, "holdout": 0}, "holdout")])
def test_calibrate_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        calibrate(synthetic_pairs(), embedder=BagOfWordsEmbedder(), **kwargs)


def test_calibrate_needs_both_labels():
    with pytest.raises(ConfigError, match="5 of each label"):
        calibrate([(f"a{i}", f"b{i}", 1) for i in range(30)], 0.9, embedder=BagOfWordsEmbedder())


def test_components_and_intent_groups_follow_duplicate_edges():
    assert components([("a", "b"), ("c", "d"), ("b", "e")]) == {"a": 0, "b": 0, "c": 1, "d": 1, "e": 0}
    pairs = [("q1", "q2", 1), ("q2", "q3", 1), ("q4", "q5", 0), ("q6", "q7", 1)]
    groups = intent_groups(pairs, range(len(pairs)))
    assert groups["q1"] == groups["q2"] == groups["q3"]
    assert len({groups["q4"], groups["q5"], groups["q6"], groups["q1"]}) == 4  # not duplicates: apart
    assert groups["q6"] == groups["q7"]
    assert set(intent_groups(pairs, [2])) == {"q4", "q5"}  # only the chosen pairs


def test_calibrate_plot_marks_the_chosen_point(tmp_path):
    plot = tmp_path / "curve.png"
    policy, report = calibrate(synthetic_pairs(), 0.8, embedder=BagOfWordsEmbedder(), base=MatchPolicy.cosine(), plot=str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000
    assert report["fit"]["precision"] >= 0.8 and policy.threshold == report["threshold"]


def test_calibrate_draws_the_curve_before_refusing(tmp_path):
    plot = tmp_path / "curve.png"
    pairs = [(f"topic {i} question", f"topic {i} question again", i % 2) for i in range(60)]
    with pytest.raises(ConfigError, match="no measured threshold reaches precision"):
        calibrate(pairs, 0.99, embedder=BagOfWordsEmbedder(), plot=str(plot))
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"  # the curve shows why
