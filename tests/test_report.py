"""The benchmark report: REPORT.md from a hand-made results set, and the peers benchmark's smoke run."""

from __future__ import annotations

import importlib.util
import json

import pytest

from benchmarks import report

MACHINE = {"cpu_count": 2, "cpu_model": "Test CPU", "platform": "Linux", "python": "3.11", "numpy": "2", "faiss": "1.8"}


def _write(directory, name, data):
    (directory / f"{name}.json").write_text(json.dumps(data))


@pytest.fixture
def results_dir(tmp_path):
    _write(tmp_path, "run_all", {"command": "python -m benchmarks.run_all", "smoke": False, "machine": MACHINE,
                                 "steps": [{"name": "quota", "command": "python -m benchmarks.bench_quota", "exit_code": 0,
                                            "seconds": 12.5}], "total_seconds": 12.5})
    _write(tmp_path, "quota", {"machine": MACHINE, "modes": {
        "paced": {"upstream": {"attempts": 1000}},
        "semcache": {"upstream": {"attempts": 90}, "caller": {"rate_limited_429": 0},
                     "cache": {"prompt_tokens_saved": 24041, "completion_tokens_saved": 33039}}},
        "targets": {"semcache_no_429_to_caller": {"measured": 0, "required": "== 0", "passed": True}}})
    _write(tmp_path, "lookup", {
        "parameters": {"approximate_threshold": 10_000, "ivf_nprobe_default": 16},
        "targets": {"exact_p50_ms": 0.5, "semantic_p50_ms_at_100k": 1.0, "rebuild_s_at_100k": 10.0},
        "cache": [{"entries": 100_000, "index_kind": "ivf", "rebuild_s": 14.0, "rss_growth_bytes_per_entry": 4600,
                   "disk_bytes_per_entry": 4229, "exact_lookup": {"p50_ms": 0.07, "p99_ms": 0.2},
                   "semantic_lookup": {"p50_ms": 0.9, "p99_ms": 1.5}}],
        "index": [{"size": 100_000, "ivf": {"16": {"p50_ms": 0.2, "p99_ms": 0.4, "recall_at_1": 1.0}}},
                  {"size": 1_000_000, "ivf": {"16": {"p50_ms": 0.6, "p99_ms": 0.9, "recall_at_1": 0.99}}}]})
    _write(tmp_path, "peers", {"gptcache_version": "0.1.44", "gptcache_threshold_scale": "cosine >= 2t - 1",
                               "datasets": {"workload": {"kind": "stream", "max_hit_rate": 0.9, "systems": {
                                   "semcache": {"hit_rate": 0.8, "wrong_hit_rate": 0.0, "threshold": 0.79},
                                   "gptcache-default": {"hit_rate": 0.85, "wrong_hit_rate": 0.1, "threshold": 0.8}}}},
                               "targets": {"hit_rate_at_equal_wrong_rate (workload)": {
                                   "measured": {"semcache": 0.8}, "required": "higher", "passed": True}}})
    _write(tmp_path, "server", {"summary": {"semantic_hit_rps_best": 180.0, "batched_bound_rps": 300.0,
                                            "ratio_to_batched_bound": 0.6, "target_ratio_to_batched_bound": 0.5,
                                            "one_at_a_time_bound_rps": 250.0, "ratio": 0.72, "errors": 0}})
    anchor = [{"threshold": 0.88, "hit_rate": 0.30, "wrong_rate": 0.012}, {"threshold": 0.90, "hit_rate": 0.20, "wrong_rate": 0.006},
              {"threshold": 0.92, "hit_rate": 0.10, "wrong_rate": 0.002}]
    _write(tmp_path, "quality", {
        "default": {"kind": "cosine", "threshold": 0.9, "checks": ["numbers"], "languages": ["en"]},
        "sets": {"banking77:tune": {"cosine": {"hit_rate": 0.5, "wrong_rate": 0.5, "worst": {"wrong_rate": 0.5}},
                                    "checks": {"hit_rate": 0.5, "wrong_rate": 0.5, "worst": {"wrong_rate": 0.5}}},
                 "banking77:report": {"cosine": {"hit_rate": 0.20, "wrong_rate": 0.006, "worst": {"wrong_rate": 0.008}},
                                      "checks": {"hit_rate": 0.19, "wrong_rate": 0.004, "worst": {"wrong_rate": 0.005},
                                                 "anchor_wrong_at_same_hits": 0.0056}},
                 "qqp:report": {"cosine": {"hit_rate": 0.20, "wrong_rate": 0.006, "worst": {"wrong_rate": 0.008}},
                                "checks": {"hit_rate": 0.15, "wrong_rate": 0.02, "worst": {"wrong_rate": 0.03},
                                           "anchor_wrong_at_same_hits": 0.004}},
                 "near_misses:report": {"cosine": {"recall": 0.9, "fpr": 0.3, "precision": 0.7},
                                        "checks": {"recall": 0.8, "fpr": 0.08, "precision": 0.9}}},
        "curves": {"banking77:report": {"type": "stream", "curves": {"cosine": anchor}},
                   "qqp:report": {"type": "stream", "curves": {"cosine": anchor}}}})
    (tmp_path / "quota.png").write_bytes(b"\x89PNG")
    return tmp_path


def test_report_has_machine_command_headline_targets_and_plots(results_dir):
    text = report.write_report(results_dir).read_text()

    assert "`python -m benchmarks.run_all`" in text
    assert "2 CPU cores (Test CPU)" in text
    assert "## Headline" in text and "## Targets" in text
    assert "90 vs 1000 (91.0% saved)" in text  # quota saved
    assert "80.0% / 0.0%" in text  # semcache hit rate / wrong-hit rate
    assert "85.0% / 10.0%" in text  # the peer beside it
    assert "| quota: semcache_no_429_to_caller | 0 | == 0 | PASS |" in text
    assert "| lookup: index rebuild at 100k | 14 | <= 10.0 s | **FAIL** |" in text
    assert "![quota](quota.png)" in text  # relative link, next to REPORT.md
    assert "Not run (no JSON found): cluster, chinese, learning_banking77_default" in text
    assert "| quota.json | n/a | n/a |" in text  # each file's own command and load, where it recorded them
    # quality.json: the default beside plain cosine on the parts it was not chosen on.
    assert "banking77:report stream, default at 0.9" in text
    assert "19.0% / 0.4% (0.5%); plain cosine at 0.9: 20.0% / 0.6%; plain cosine's wrong at as many hits: 0.6%" in text
    assert "banking77:tune" not in text
    assert "near_misses:report pairs, default at 0.9" in text and "80.0% / 8.0%; plain cosine at 0.9: 90.0% / 30.0%" in text
    assert "180 req/s vs 300 texts/s (0.6x)" in text


def test_quality_and_sidecar_targets_follow_issue_17(results_dir):
    targets = {t["name"]: t for t in report.collect_targets(report.load_results(results_dir))}

    on_curve = "quality, {}:report: default's hits >= plain cosine's at equal or lower wrong rate"
    wrong = "quality, {}:report: default's wrong hits per request (mean of seeds)"
    assert targets[on_curve.format("banking77")]["passed"] is True  # 0.4% wrong where plain cosine has 0.56% at 19% hits
    assert targets[wrong.format("banking77")]["passed"] is True
    assert targets[on_curve.format("qqp")]["passed"] is False  # 2% wrong at 15% hits: under plain cosine's curve
    assert targets[wrong.format("qqp")]["passed"] is False  # and over the 1% bound
    assert targets["quality, near_misses:report: default's false-positive rate on the near-miss pairs"]["passed"] is True
    assert not [name for name in targets if "tune" in name]  # the tune parts chose the default; they are not its report
    sidecar = targets["sidecar: semantic-hit throughput vs the batched-embedding bound (same run), no errors"]
    assert sidecar["measured"] == 0.6 and sidecar["passed"] is True


def test_lookup_at_1m_swaps_the_index_part_of_the_engine_latency(results_dir):
    results = report.load_results(results_dir)

    estimate = report.lookup_at_1m(results["lookup"])
    targets = {t["name"]: t for t in report.collect_targets(results)}

    assert estimate["p99_ms"] == pytest.approx(1.5 - 0.4 + 0.9)
    assert targets["lookup: p99 beyond the embedding at 1M entries"]["passed"] is True
    assert targets["lookup: exact-hit p50 at every size"]["passed"] is True
    assert targets["peers: hit_rate_at_equal_wrong_rate (workload)"]["passed"] is True


def test_report_on_an_empty_directory_says_nothing_ran(tmp_path):
    text = report.build_report(report.load_results(tmp_path), [])

    assert "No results found." in text
    assert "No targets found." in text


@pytest.mark.model
@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_bench_peers_smoke_compares_semcache_with_gptcache(tmp_path):
    if importlib.util.find_spec("gptcache") is None:
        pytest.skip("gptcache is not installed: it is an optional benchmark extra (pip install gptcache sqlalchemy)")
    from benchmarks import bench_peers

    result = bench_peers.main(["--smoke", "--out", str(tmp_path)])

    written = json.loads((tmp_path / "peers.json").read_text())
    workload = written["datasets"]["workload"]
    assert set(workload["systems"]) == {"semcache", "semcache-cosine", "exact-only", "gptcache-default", "gptcache-best"}
    assert workload["systems"]["exact-only"]["wrong_hits"] == 0
    # The numpy replay behind the curves decides exactly as the engines do, at both semcache operating points.
    assert {"semcache", "semcache-cosine"} <= set(workload["agreement"])
    for system, counts in workload["agreement"].items():
        assert counts["engine"] == counts["replay"], system
    assert (tmp_path / "peers_workload.png").exists()
    assert result["targets"]


def test_chinese_targets_follow_issue_20(results_dir):
    quality = json.loads((results_dir / "quality.json").read_text())
    quality["chinese"] = {"lcqmc_report": {"checks": {"n": 800, "precision": 0.93, "recall": 0.58, "hits": 250}},
                          "bq_report": {"checks": {"n": 800, "precision": 1.0, "recall": 0.02, "hits": 9}},
                          "stream_test": {"checks": {"mean": {"hit_rate": 0.064, "wrong_rate": 0.0045}}}}
    _write(results_dir, "quality", quality)
    _write(results_dir, "chinese", {"latency": {"command": "python -m benchmarks.chinese --latency", "machine": MACHINE,
                                                "blocked_en": {"p50_ms": 10.0}, "blocked_zh": {"p50_ms": 25.0},
                                                "blocked_zh_over_en_p50": 2.5}})
    targets = {t["name"]: t for t in report.collect_targets(report.load_results(results_dir))}

    lcqmc = targets["chinese: LCQMC dev (report half) precision and recall at the route's threshold"]
    assert lcqmc["measured"] == "0.930 / 0.580" and lcqmc["passed"] is False  # recall under 0.60
    assert targets["chinese: BQ dev (report half) precision"]["passed"] is True
    assert targets["chinese: wrong hits per request on the prompt benchmark's Chinese test stream"]["passed"] is True
    latency = targets["chinese: semantic hit p50 over an English one (same process)"]
    assert latency["measured"] == 2.5 and latency["passed"] is False
    assert "| chinese.json | `python -m benchmarks.chinese --latency` |" in report.write_report(results_dir).read_text()


def test_learning_targets_follow_issue_19(results_dir):
    _write(results_dir, "learning_qqp_default", {"queries": 1000, "learning": {
        "hit_rate": 0.1, "semantic_precision": 0.90, "estimated_precision": 0.84, "bound": [0.72, 1.0], "upstream_calls": 900.0}})
    _write(results_dir, "learning_prompts_default", {"queries": 400, "learning": {
        "hit_rate": 0.05, "semantic_precision": 0.918, "estimated_precision": 0.919, "bound": [0.95, 1.0], "upstream_calls": 391.0}})
    targets = {t["name"]: t for t in report.collect_targets(report.load_results(results_dir))}

    assert targets["learning, qqp: estimated precision of semantic hits vs the true one"]["passed"] is False  # 6 points low
    assert targets["learning, qqp: the true precision inside the reported bound"]["passed"] is True
    assert targets["learning, qqp: upstream calls, exploration off"]["passed"] is True
    assert targets["learning, prompts: estimated precision of semantic hits vs the true one"]["passed"] is True
    assert targets["learning, prompts: the true precision inside the reported bound"]["passed"] is False  # 0.918 under 0.95
    assert targets["learning, prompts: upstream calls, exploration off"]["passed"] is False  # 391 calls for 380 misses
    assert not [name for name in targets if "banking77" in name and name.startswith("learning")]  # not run: no rows


def test_run_all_runs_the_quality_benchmark_once_and_report_reads_its_json(tmp_path):
    from benchmarks import run_all

    args = run_all.parse_args(["--smoke", "--no-shared-data", "--out", str(tmp_path)])
    steps = dict(run_all.steps(args))

    assert set(steps) == {"quality", "peers", "quota", "sidecar", "cluster", "lookup", "chinese", "learning_prompts"}
    assert steps["learning_prompts"][-2:] == ["--out", str(tmp_path / "learning_prompts_default.json")]
    assert "learning_prompts_default" in report.FILES
    assert steps["chinese"] == ["benchmarks.chinese", "--latency", "--out", str(tmp_path), "--smoke"]
    assert steps["quality"] == ["benchmarks.quality", "--out", str(tmp_path / "quality.json"),
                                "--plot", str(tmp_path / "quality.png"), "--smoke"]
    assert not [argv for argv in steps.values() if argv[0] in ("benchmarks.prompt_quality", "benchmarks.match_quality")]
    assert "quality" in report.FILES  # the file that step writes is the one REPORT.md reads
