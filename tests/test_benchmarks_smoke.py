"""The lookup benchmark runs end to end at toy sizes (with the default policy) and writes a complete report."""

from __future__ import annotations

import json

from benchmarks import bench_lookup
from benchmarks.common import summarize


def test_summarize_reports_milliseconds_and_percentiles():
    summary = summarize([0.001] * 98 + [0.010, 0.020])
    assert summary["n"] == 100
    assert summary["p50_ms"] == 1.0
    assert 1.0 < summary["p99_ms"] <= 20.0
    assert summary["max_ms"] == 20.0
    assert summarize([]) == {"n": 0}


def test_text_of_is_unique_and_has_no_digits():
    texts = [bench_lookup.text_of(i) for i in range(5_000)]
    assert len(set(texts)) == len(texts)
    assert not any(ch.isdigit() for text in texts for ch in text)


def test_smoke_run_writes_json_and_plots(tmp_path):
    results = bench_lookup.main(["--smoke", "--out", str(tmp_path)])

    report = json.loads((tmp_path / "lookup.json").read_text())
    assert report["benchmark"] == "lookup"
    assert report["command"].endswith("--smoke --out " + str(tmp_path))
    assert {"cpu_count", "cpu_model", "python", "numpy", "faiss"} <= set(report["machine"])
    assert report["embedding"] is None  # --smoke skips the real model
    for cache in report["cache"]:
        assert cache["entries_after_inserts"] == cache["entries"] + report["parameters"]["inserts"]
        assert cache["exact_lookup"]["hit_rate"] == 1.0
        assert cache["semantic_lookup"]["hit_rate"] > 0.9
        for field in ("exact_lookup", "semantic_lookup", "insert"):
            assert 0 < cache[field]["p50_ms"] <= cache[field]["p99_ms"]
        for field in ("rebuild_s", "disk_bytes_per_entry"):
            assert cache[field] > 0
    for index in report["index"]:
        assert index["flat"]["p50_ms"] > 0 and index["ivf_build_s"] > 0
        for nprobe in report["parameters"]["nprobes"]:
            ivf = index["ivf"][str(nprobe)]
            assert 0.0 <= ivf["recall_at_5"] <= 1.0 and 0.0 <= ivf["recall_at_1"] <= 1.0
    assert report["recommendation"]["nprobe"] in report["parameters"]["nprobes"]
    # The caches and the decide timing run the shipped default, and every check runs on every candidate.
    from semcache.matching.policy import MatchPolicy

    assert report["parameters"]["policy"] == MatchPolicy().to_dict() == report["policy_decide"]["policy"]
    for case in ("new_query", "same_query"):
        assert report["policy_decide"][case]["reason"] == "below-threshold"
        assert 0 < report["policy_decide"][case]["p50_ms"] <= report["policy_decide"][case]["p99_ms"]
    assert report["policy_decide"]["p50_ms"] == report["policy_decide"]["new_query"]["p50_ms"]
    beyond = report["beyond_embedding"]
    assert beyond["embedding_batch_1_p50_ms"] is None  # no model in smoke mode: nothing to set it beside
    assert {int(n) for n in beyond["sizes"]} == set(report["parameters"]["sizes"])
    assert all(beyond["sizes"][str(c["entries"])]["semantic_lookup_p50_ms"] == c["semantic_lookup"]["p50_ms"] for c in report["cache"])
    assert (tmp_path / "lookup.png").stat().st_size > 0
    assert (tmp_path / "lookup_index.png").stat().st_size > 0
    assert results["cache"] == report["cache"]
