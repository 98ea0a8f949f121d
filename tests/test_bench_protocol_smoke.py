"""``benchmarks.bench_protocol --smoke`` runs: both servers answer every request as a hit (the numbers come from the full run)."""

from __future__ import annotations

import pytest

from benchmarks import bench_protocol

pytestmark = pytest.mark.server


def test_smoke_run_answers_every_request_as_a_hit_on_both_servers():
    result = bench_protocol.main(["--smoke"])
    for name in ("plain", "sidecar_protocol"):
        (phase,) = result["runs"][name]
        assert phase["errors"] == 0 and sum(phase["statuses"].values()) == result["requests_per_round"]
    assert result["summary"]["throughput_ratio"] > 0
