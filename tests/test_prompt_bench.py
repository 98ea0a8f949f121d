"""The prompt benchmark: every file well formed, the split fixed and by family, nothing leaking across it."""

from __future__ import annotations

import importlib.util
import itertools
import json
from collections import Counter
from pathlib import Path

import pytest

from benchmarks.prompts import PROMPTS, family_files, load, split_of

FILES = family_files()


@pytest.fixture(scope="module")
def bench():
    return load()


def _validator():
    spec = importlib.util.spec_from_file_location("validate_prompts", PROMPTS / "validate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_file_passes_the_writers_validator(path: Path, capsys):
    assert _validator().main(str(path)) == 0, capsys.readouterr().out


def test_the_benchmark_has_the_size_it_promises(bench):
    langs = Counter(g.lang for g in bench.groups)
    assert langs["en"] >= 500 and langs["zh"] >= 75 and langs["es"] >= 30
    assert len(bench.near_misses) >= 1000
    assert {g.domain for g in bench.groups if g.lang == "en"} >= {
        "coding", "support", "knowledge", "math", "translation", "writing", "advice", "time"}
    written = [g for g in bench.groups if g.domain != "hard_negatives"]
    assert all(len(g.texts) <= 6 for g in written)
    assert sum(len(g.texts) >= 3 for g in written) >= 0.98 * len(written)  # a text shared by two files stays in the first
    kinds = Counter(m.kind for m in bench.near_misses)
    assert {"entity", "number", "unit", "version", "year", "negation", "direction", "comparison", "scope", "person",
            "time"} <= set(kinds)


def test_the_split_is_fixed_and_by_family(bench):
    assert split_of("coding-git-branch") == split_of("coding-git-branch")  # a pure function of the id
    for g in bench.groups:
        assert g.split == split_of(g.family)
    for m in bench.near_misses:
        assert m.split == split_of(m.family)
    splits = Counter(split_of(f) for f in {g.family for g in bench.groups})
    total = sum(splits.values())
    assert 0.4 < splits["train"] / total < 0.6 and 0.15 < splits["dev"] / total < 0.35 and 0.15 < splits["test"] / total < 0.35


def test_no_group_and_no_text_crosses_splits(bench):
    split_of_group = {}
    for g in bench.groups:
        assert split_of_group.setdefault(g.id, g.split) == g.split
    split_of_text = {}
    for g in bench.groups:
        for text in g.texts:
            assert split_of_text.setdefault(text, g.split) == g.split, text
    for m in bench.near_misses:
        for text in (m.a, m.b):
            assert split_of_text.get(text, m.split) == m.split, text


def test_a_text_belongs_to_one_group(bench):
    counts = Counter(t for g in bench.groups for t in g.texts)
    assert max(counts.values()) == 1


def test_select_and_pairs_stay_inside_the_selection(bench):
    dev = bench.select(split="dev", lang="en")
    assert dev.groups and all(g.split == "dev" and g.lang == "en" for g in dev.groups)
    texts = {t for g in dev.groups for t in g.texts} | {m.b for m in dev.near_misses}
    pairs = dev.pairs()
    assert {y for _, _, y, _ in pairs} == {0, 1}
    assert all(a in texts and b in texts for a, b, _, _ in pairs)
    group_of = dev.group_of()
    assert all(group_of[a] == group_of[b] for a, b, y, _ in pairs if y == 1)
    assert all(group_of.get(a) != group_of.get(b) for a, b, y, _ in pairs if y == 0)
    positives = sum(len(list(itertools.combinations(g.texts, 2))) for g in dev.groups)
    assert sum(y for _, _, y, _ in pairs) == positives


def test_stream_rows_add_near_misses_as_intents_of_their_own(bench):
    dev = bench.select(split="dev", lang="en")
    rows = dev.stream_rows()
    texts = [r["text"] for r in rows]
    assert len(texts) == len(set(texts))
    in_groups = {t for g in dev.groups for t in g.texts}
    extra = [r for r in rows if r["text"] not in in_groups]
    intent = dev.intent_of()
    assert extra and all(r["group"] == intent[r["text"]] for r in extra)
    alone = [r for r in extra if r["group"].startswith("near:")]
    assert len(alone) >= 0.95 * len(extra)  # a near miss is a request of its own unless the audit joined it
    assert len({r["group"] for r in alone}) == len(alone)


def test_the_audit_joins_intents_that_two_writers_wrote_twice(bench):
    intent = bench.intent_of()
    assert bench.same
    for a, b in bench.same:
        assert intent[a] == intent[b]
    joined = {intent[a] for a, _ in bench.same}
    rows = [r for r in bench.select(split=("train", "dev", "test")).stream_rows() if r["group"] in joined]
    assert rows and all(r["group"] in joined for r in rows)
    assert not [m for m in bench.near_misses if intent[m.a] == intent[m.b] and (m.a, m.b, 0, m.kind) in bench.pairs()]


@pytest.mark.model
def test_quality_smoke_reports_the_default_beside_plain_cosine_on_every_set(tmp_path):
    from benchmarks import quality
    from semcache.matching.policy import MatchPolicy

    out, plot = tmp_path / "quality.json", tmp_path / "quality.png"
    assert quality.main(["--smoke", "--out", str(out), "--plot", str(plot)]) == 0
    report = json.loads(out.read_text())

    assert report["default"] == MatchPolicy().to_dict()
    assert plot.stat().st_size > 0
    sets, curves = report["sets"], report["curves"]
    # The sets the repository carries are always there; the shared ones when ../shared/data has them.
    expected = {"prompts:tune", "prompts:report", "near_misses:tune", "near_misses:report", "hard_negatives:report"}
    for name, file in (("banking77", "banking77_train.jsonl"), ("qqp", "qqp_dev.jsonl")):
        if (quality.SHARED / file).is_file():
            expected |= {f"{name}:tune", f"{name}:report"}
    if (quality.SHARED / "paraphrases_999.jsonl").is_file():
        expected.add("paraphrases:report")
    assert set(sets) == set(curves) == expected
    for name, row in sets.items():
        assert set(row) == {"cosine", "checks"}, name  # the anchor and the default, on every set
        assert all(len(curves[name]["curves"][p]) == len(quality.THRESHOLDS) for p in row)
        assert {p["threshold"] for p in row.values()} == {MatchPolicy().threshold}
        if curves[name]["type"] == "stream":
            for point in row.values():
                assert 0 <= point["wrong_rate"] <= point["hit_rate"] <= 1, name
                assert point["worst"]["wrong_rate"] >= point["wrong_rate"], name  # the worst seed is the worst
                assert point["anchor_wrong_at_same_hits"] >= 0
        else:
            # On pairs a check only ever vetoes: the default never finds more than plain cosine at its threshold.
            ours, anchor = row["checks"], row["cosine"]
            if ours["recall"] is not None:
                assert ours["recall"] <= anchor["recall"], name
            if ours["fpr"] is not None:
                assert ours["fpr"] <= anchor["fpr"], name
    assert sets["near_misses:report"]["checks"]["fpr"] is not None
    if "paraphrases:report" in sets:  # all positive: a recall, no false-positive rate
        assert sets["paraphrases:report"]["checks"]["fpr"] is None
