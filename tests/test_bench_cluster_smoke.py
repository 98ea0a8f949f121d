"""The cluster benchmark's own measuring code, cheaply: the busiest-window count and the start-up
part (a snapshot vs a scan) at toy size on a real redis-server. The full script runs replicas as
processes for minutes: ``python -m benchmarks.bench_cluster --smoke`` exercises it end to end."""

from __future__ import annotations

import random

import pytest

from benchmarks.bench_cluster import WordVectors, busiest_window, startup
from redis_server import redis_server  # noqa: F401  (fixture)

pytestmark = pytest.mark.server


def test_busiest_window_is_the_most_events_in_any_60_seconds():
    assert busiest_window([]) == 0
    assert busiest_window([0, 59.9, 60.0, 119.9]) == 2  # every 60 s window holds two: a window is half-open
    assert busiest_window([0, 1, 2, 61, 62]) == 3
    rng = random.Random(0)
    times = sorted(rng.uniform(0, 300) for _ in range(200))
    brute = max(sum(1 for t in times if start <= t < start + 60) for start in times)
    assert busiest_window(times) == brute


def test_the_start_up_part_opens_from_a_snapshot_that_agrees_with_the_store(redis_server, tmp_path):  # noqa: F811
    result = startup(redis_server.url, tmp_path, 300, 30)
    assert result["started_from_snapshot"] and result["rebuilds"] == 0 and result["index_equals_store"]
    assert result["snapshot_bytes"] > 300 * 384 * 4  # every vector is in it
    assert result["open_from_scan_s"] > 0 and result["open_from_snapshot_s"] > 0


def test_the_fake_embedder_is_deterministic_and_unit_norm():
    a, b = WordVectors(32).embed(["one two three"]), WordVectors(32).embed(["one two three"])
    assert (a == b).all() and abs(float((a * a).sum()) - 1) < 1e-5
