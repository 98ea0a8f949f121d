"""Stats: in-memory counting, periodic flush to a sink, per-tenant/per-model reports."""

from __future__ import annotations

import threading
import time
from collections import defaultdict

import pytest

from semcache.stats import COUNTERS, Flusher, Stats, format_table


class DictSink:
    """A CounterSink in a dict; ``fail`` makes the next add_counters raise."""

    def __init__(self) -> None:
        self.data: dict = defaultdict(float)
        self.fail = False

    def add_counters(self, deltas):
        if self.fail:
            raise OSError("disk full")
        for key, value in deltas.items():
            self.data[key] += value

    def counters(self):
        return dict(self.data)


def test_counting_never_writes_only_flush_does():
    sink = DictSink()
    stats = Stats(sink)
    for _ in range(1000):
        stats.incr("requests", tenant="a", model="m")
    assert sink.data == {}  # a count never waits on the sink
    assert stats.snapshot()["total"]["requests"] == 1000  # pending counts are reported too
    stats.flush()
    assert sink.data == {("a", "m", "requests"): 1000}
    assert stats.snapshot()["total"]["requests"] == 1000


def test_the_flusher_writes_every_interval_and_once_more_never_after_stop():
    sink = DictSink()
    stats = Stats(sink)
    flushed = threading.Event()

    def flush():
        stats.flush()
        if sink.data:
            flushed.set()

    flusher = Flusher(flush, 0.01)
    stats.incr("requests")
    assert flushed.wait(5)
    flusher.stop()
    stats.incr("requests")
    time.sleep(0.05)
    assert sink.data == {("", "", "requests"): 1}  # stopped: the second count waits for its owner


def test_a_failing_flush_is_retried_at_the_next_tick(caplog):
    sink = DictSink()
    stats = Stats(sink)
    sink.fail = True
    stats.incr("misses", 3)
    flusher = Flusher(stats.flush, 0.01)
    time.sleep(0.1)
    sink.fail = False
    deadline = time.monotonic() + 5
    while not sink.data and time.monotonic() < deadline:
        time.sleep(0.01)
    flusher.stop()
    assert sink.data == {("", "", "misses"): 3}  # kept across the failures, written once
    assert sum("could not write counters" in r.getMessage() for r in caplog.records) == 1  # logged once


def test_snapshot_groups_by_tenant_and_model():
    stats = Stats()
    stats.incr("requests", 3, tenant="a", model="m1")
    stats.incr("exact_hits", 1, tenant="a", model="m1")
    stats.incr("semantic_hits", 1, tenant="b", model="m2")
    stats.incr("requests", 1, tenant="b", model="m2")
    stats.incr("requests", 1)
    stats.incr("errors.StoreError", 2)
    snap = stats.snapshot()
    assert snap["total"]["requests"] == 5
    assert snap["total"]["hit_rate"] == pytest.approx(2 / 5)
    assert snap["by_tenant"]["a"]["requests"] == 3 and snap["by_tenant"]["b"]["semantic_hits"] == 1
    assert snap["by_tenant"]["default"]["requests"] == 1
    assert set(snap["by_model"]) == {"m1", "m2"}
    assert snap["by_model"]["m1"]["exact_hits"] == 1
    assert snap["total"]["errors.StoreError"] == 2
    assert list(snap["total"])[: len(COUNTERS)] == list(COUNTERS)


def test_a_failed_flush_keeps_the_counts():
    sink = DictSink()
    stats = Stats(sink)
    stats.incr("misses", 2)
    sink.fail = True
    with pytest.raises(OSError):
        stats.flush()
    sink.fail = False
    stats.flush()
    assert sink.data == {("", "", "misses"): 2}
    stats.flush()  # nothing pending: nothing added twice
    assert sink.data == {("", "", "misses"): 2}


def test_zero_increments_are_ignored():
    stats = Stats()
    stats.incr("requests", 0)
    assert stats.snapshot()["by_tenant"] == {}


def _rows(text: str) -> dict[str, list[str]]:
    """Parse a rich table's body rows: counter -> cells (header rows included, keyed by their first cell)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.replace("┃", "│").split("│")[1:-1]]
        if cells:
            rows.setdefault(cells[0], cells[1:])
    return rows


def test_format_table_shows_counters_tenants_and_models_in_separate_cells():
    stats = Stats()
    stats.incr("requests", 1234, tenant="a", model="gpt-4o-mini")
    stats.incr("requests", 1, tenant="defaulttenant-with-a-long-name", model="gpt-4o")
    stats.incr("cost_saved_usd", 0.5, tenant="a", model="gpt-4o-mini")
    text = format_table(stats.snapshot())
    tenants, models = text.split("by model")
    assert _rows(tenants)["counter"] == ["total", "a", "defaulttenant-with-a-long-name"]  # never glued together
    assert _rows(tenants)["requests"] == ["1,235", "1,234", "1"]
    assert _rows(tenants)["cost_saved_usd"] == ["0.5000", "0.5000", "0"]
    assert _rows(models)["counter"] == ["total", "gpt-4o", "gpt-4o-mini"]
    assert _rows(models)["requests"] == ["1,235", "1", "1,234"]
    assert "semantic_hits" not in text  # all-zero rows are left out


def test_format_table_with_one_tenant_and_model_shows_the_total_and_names_the_model():
    stats = Stats()
    stats.incr("requests", 3, model="gpt-4o-mini")
    stats.incr("exact_hits", 1, model="gpt-4o-mini")
    text = format_table(stats.snapshot())
    assert _rows(text)["counter"] == ["total"] and _rows(text)["hit_rate"] == ["33.3%"]
    assert "by model" not in text and "model: gpt-4o-mini" in text


def test_process_counts_are_this_processes_own_and_listeners_hear_every_count(caplog):
    sink = DictSink()
    sink.data[("a", "m", "requests")] = 40.0  # what other processes on the store counted
    stats = Stats(sink)
    heard = []
    stats.listen(lambda *event: (_ for _ in ()).throw(RuntimeError("a broken listener")))
    stats.listen(lambda counter, amount, tenant, model, detail: heard.append((counter, amount, tenant, model, detail)))
    stats.incr("requests", tenant="a", model="m")
    stats.incr("budget_stops", tenant="a", detail={"budget": "usd_per_day"})
    stats.flush()
    stats.incr("requests", tenant="a", model="m")
    assert stats.snapshot()["total"]["requests"] == 42  # the store's totals
    assert stats.process_counts() == {("a", "m", "requests"): 2, ("a", "", "budget_stops"): 1}  # flushing keeps them
    assert heard[1] == ("budget_stops", 1, "a", "", {"budget": "usd_per_day"}) and len(heard) == 3
    assert "a broken listener" in caplog.text  # logged; the count still happened
