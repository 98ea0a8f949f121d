"""eval_pairs / eval_stream on hand-made rows with the fake embedder, and read_rows' errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from semcache import ConfigError, MatchPolicy, RequestError
from semcache.tools.data import read_rows
from semcache.tools.evaluate import PrecomputedEmbedder, eval_pairs, eval_stream, iter_jsonl

FRANCE = "What is the capital of France?"
FRANCE_REORDERED = "the capital of France is what?"  # the same bag of words: cosine 1 with WordEmbedder
SORT = "How do I sort a list in Python?"
REVERSE = "How do I reverse a list in Python?"


@pytest.fixture
def policy():
    return MatchPolicy.cosine(0.9)


def test_eval_pairs_counts_hits_and_scores_against_labels(embedder, policy):
    rows = [
        {"text_a": FRANCE, "text_b": FRANCE_REORDERED, "label": 1},  # true positive
        {"text_a": FRANCE, "text_b": "  What is the  capital of France?", "label": 1},  # exact after whitespace
        {"text_a": FRANCE, "text_b": SORT, "label": 0},  # true negative
        {"text_a": SORT, "text_b": "How can I sort items of a list in Python?", "label": 1},  # depends on the fake
        {"text_a": SORT, "text_b": "sort I do list a in Python how?", "label": 0},  # false positive: same words
    ]
    summary, decisions = eval_pairs(rows, embedder=embedder, policy=policy)
    assert len(decisions) == len(rows)
    assert decisions[0]["hit"] and decisions[0]["reason"] != "exact"
    assert decisions[1] == {"score": 1.0, "hit": True, "similarity": 1.0, "reason": "exact", "failed_checks": []}
    assert not decisions[2]["hit"]
    assert decisions[4]["hit"]
    hits = [d["hit"] for d in decisions]
    tp = sum(h and r["label"] for h, r in zip(hits, rows))
    fp = sum(h and not r["label"] for h, r in zip(hits, rows))
    fn = sum(not h and r["label"] for h, r in zip(hits, rows))
    assert summary["n"] == 5
    assert summary["hits"] == sum(hits)
    assert summary["positives"] == 3 and summary["negatives"] == 2
    assert summary["precision"] == round(tp / (tp + fp), 6)
    assert summary["recall"] == round(tp / (tp + fn), 6)
    assert summary["false_positive_rate"] == 0.5
    p, r = tp / (tp + fp), tp / (tp + fn)
    assert summary["f1"] == round(2 * p * r / (p + r), 6)
    assert summary["policy"] == policy.to_dict()


def test_eval_pairs_without_labels_reports_no_precision(embedder, policy):
    rows = [{"text_a": FRANCE, "text_b": FRANCE_REORDERED}, {"text_a": FRANCE, "text_b": SORT}]
    summary, decisions = eval_pairs(rows, embedder=embedder, policy=policy)
    assert summary["hits"] == 1
    assert summary["precision"] is None and summary["recall"] is None
    assert summary["f1"] is None and summary["false_positive_rate"] is None


def test_eval_pairs_custom_columns_and_string_labels(embedder, policy):
    rows = [{"q1": FRANCE, "q2": FRANCE_REORDERED, "same": "1"}, {"q1": FRANCE, "q2": SORT, "same": "0"}]
    summary, _ = eval_pairs(rows, embedder=embedder, policy=policy, text_a="q1", text_b="q2", label="same")
    assert (summary["precision"], summary["recall"], summary["f1"], summary["false_positive_rate"]) == (1.0, 1.0, 1.0, 0.0)


def test_eval_pairs_rejects_a_bad_label(embedder, policy):
    with pytest.raises(RequestError, match="row 1: label must be 0 or 1"):
        eval_pairs([{"text_a": FRANCE, "text_b": SORT, "label": "yes"}], embedder=embedder, policy=policy)


def test_eval_pairs_embeds_each_distinct_text_once(embedder, policy):
    rows = [{"text_a": FRANCE, "text_b": SORT}] * 50
    eval_pairs(rows, embedder=embedder, policy=policy)
    assert embedder.calls == 1  # one batch of the two distinct texts


def test_eval_pairs_output_is_plain_json(embedder, policy):
    rows = [{"text_a": FRANCE, "text_b": FRANCE_REORDERED, "label": 1}, {"text_a": FRANCE, "text_b": SORT, "label": 0}]
    summary, decisions = eval_pairs(rows, embedder=embedder, policy=policy)
    assert json.loads(json.dumps(summary))["hits"] == 1  # no numpy scalars leak out
    assert [json.loads(line)["hit"] for line in iter_jsonl(decisions)] == [True, False]
    assert all(type(d["hit"]) is bool for d in decisions)


def test_iter_jsonl_writes_one_line_per_decision():
    lines = list(iter_jsonl([{"hit": True}, {"hit": False}]))
    assert [json.loads(line) for line in lines] == [{"hit": True}, {"hit": False}]
    assert all(line.endswith("\n") for line in lines)


def test_eval_stream_counts_hits_wrong_hits_and_possible_hits(embedder, policy):
    rows = [
        {"text": FRANCE, "group": "france"},  # miss, stored
        {"text": FRANCE, "group": "france"},  # exact hit, right
        {"text": FRANCE_REORDERED, "group": "france"},  # semantic hit, right
        {"text": SORT, "group": "sort"},  # miss, stored
        {"text": "sort I do list a in Python how?", "group": "other"},  # semantic hit of another group: wrong
        {"text": "Explain photosynthesis.", "group": "photo"},  # miss
    ]
    out = eval_stream(rows, embedder=embedder, policy=policy)
    assert out["n"] == 6
    assert out["hits"] == 3
    assert out["exact_hits"] == 1
    assert out["wrong_hits"] == 1
    assert out["correct_hits"] == 2
    assert out["possible_hits"] == 2  # rows 2 and 3: their group was stored before them
    assert out["hit_rate"] == 0.5
    assert out["wrong_rate"] == round(1 / 6, 6)
    assert out["precision"] == round(2 / 3, 6)
    assert out["recall_of_possible"] == 1.0


def test_eval_stream_shuffle_is_deterministic_and_keeps_counts_consistent(embedder, policy):
    rows = [{"text": t, "group": g} for t, g in [
        (FRANCE, "france"), (FRANCE_REORDERED, "france"), (SORT, "sort"), (REVERSE, "reverse"),
        ("Explain photosynthesis.", "photo"), ("photosynthesis explain", "photo"),
    ]]
    first = eval_stream(rows, embedder=embedder, policy=policy, shuffle_seed=7)
    assert eval_stream(rows, embedder=embedder, policy=policy, shuffle_seed=7) == first
    assert first["n"] == 6
    assert first["correct_hits"] + first["wrong_hits"] == first["hits"]
    assert first["possible_hits"] == 2  # one of each same-group pair comes second, in any order


def test_eval_stream_without_hits_reports_no_precision(embedder, policy):
    out = eval_stream([{"text": FRANCE, "group": "a"}, {"text": SORT, "group": "b"}], embedder=embedder, policy=policy)
    assert out["hits"] == 0 and out["precision"] is None and out["recall_of_possible"] is None


def test_precomputed_embedder_embeds_only_missing_texts(embedder):
    vectors = {FRANCE: embedder.embed([FRANCE])[0]}
    calls = embedder.calls
    pre = PrecomputedEmbedder(embedder, vectors)
    assert (pre.model_id, pre.dim) == (embedder.model_id, embedder.dim)
    np.testing.assert_array_equal(pre.embed([FRANCE])[0], vectors[FRANCE])
    assert embedder.calls == calls
    assert pre.embed([SORT, FRANCE]).shape == (2, embedder.dim)
    assert embedder.calls == calls + 1
    assert pre.embed([]).shape == (0, embedder.dim)


# -- read_rows ------------------------------------------------------------------------------


def test_read_rows_jsonl_skips_blank_lines(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"text_a": "a", "text_b": "b", "label": 1}\n\n{"text_a": "c", "text_b": "d"}\n')
    rows = read_rows(path, ["text_a", "text_b"])
    assert rows == [{"text_a": "a", "text_b": "b", "label": 1}, {"text_a": "c", "text_b": "d"}]


def test_read_rows_csv(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('text_a,text_b,label\n"Hello, world",hi,1\nx,y,0\n')
    rows = read_rows(path, ["text_a", "text_b"])
    assert rows == [{"text_a": "Hello, world", "text_b": "hi", "label": "1"}, {"text_a": "x", "text_b": "y", "label": "0"}]


def test_read_rows_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        read_rows(tmp_path / "nope.jsonl", ["text"])


def test_read_rows_wrong_extension(tmp_path):
    path = tmp_path / "pairs.txt"
    path.write_text("text\nhello\n")
    with pytest.raises(ConfigError, match=r"must be \.jsonl or \.csv"):
        read_rows(path, ["text"])


@pytest.mark.parametrize("name, text, message", [
    ("rows.jsonl", '{"text": "a"}\n{"group": "g"}\n', r"rows.jsonl:2: missing column 'text'"),
    ("rows.jsonl", '{"text": ""}\n', r"rows.jsonl:1: missing column 'text'"),
    ("rows.csv", "text,group\na,g\n,g\n", r"rows.csv:3: missing column 'text'"),
    ("rows.jsonl", '{"text": "a"}\n{"text": "b",\n', r"rows.jsonl:2: not valid JSON"),
    ("rows.jsonl", '{"text": "a"}\n\n["text"]\n', r"rows.jsonl:3: expected a JSON object"),
    ("rows.jsonl", "", r"has no rows"),
    ("rows.jsonl", "\n  \n", r"has no rows"),
    ("rows.csv", "text,group\n", r"has no rows"),
])
def test_read_rows_errors_name_the_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(RequestError, match=message):
        read_rows(path, ["text"])
