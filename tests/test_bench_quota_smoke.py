"""The quota benchmark runs end to end (``--smoke``) and writes a complete report.

It checks behaviour, not speed: the report has its keys, every mode answered every request,
and the cache sent fewer requests upstream than the paced client alone.
"""

from __future__ import annotations

import json

import pytest

from benchmarks.bench_quota import MODES, main

pytestmark = [pytest.mark.model, pytest.mark.server]


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("quota")
    # cosine: the plumbing is under test here, not the shipped default.
    assert main(["--smoke", "--policy", "cosine", "--out", str(out)]) == 0
    assert (out / "quota.png").stat().st_size > 0
    return json.loads((out / "quota.json").read_text())


def test_report_has_parameters_machine_and_targets(report):
    for key in ("command", "requests", "rpm", "tpm", "concurrency", "machine", "modes", "targets", "all_targets_passed"):
        assert key in report
    assert report["command"].startswith("python -m benchmarks.bench_quota --smoke")
    assert set(report["modes"]) == set(MODES)
    for target in report["targets"].values():
        assert isinstance(target["passed"], bool)


def test_every_mode_answers_every_request(report):
    for name, mode in report["modes"].items():
        assert mode["caller"]["successes"] == report["requests"], name
        assert mode["upstream"]["successes"] >= 1, name
        assert len(mode["timeline"]["caller_success_s"]) == report["requests"], name


def test_cache_calls_upstream_less_than_the_paced_client(report):
    paced, cached = report["modes"]["paced"], report["modes"]["semcache"]
    assert cached["upstream"]["attempts"] < paced["upstream"]["attempts"]
    assert cached["cache"]["exact_hits"] + cached["cache"]["semantic_hits"] > 0
    assert cached["quality"]["unknown_entry_hits"] == 0
