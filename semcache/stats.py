"""Counters of what the cache did and saved, per tenant and per model, persisted in the store.

Counting is on the hot path, so ``Stats.incr`` only adds to an in-memory table; its owner writes
the deltas to the store (one transaction) with ``flush()`` -- the cache does so from a
``Flusher`` thread every ``flush_interval`` seconds and at close, so no request ever waits on
that write, and a crash (kill -9) loses at most the last interval's counts. Several processes
sharing a store add their deltas to the same persisted totals.

"Saved" means: a hit served the stored answer, so the request, its prompt and completion
tokens (the stored ``usage``) and their price were not spent upstream.
"""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from typing import Callable, Mapping, Protocol

__all__ = ["COUNTERS", "CounterSink", "Flusher", "Stats", "format_table", "stats_tables"]

# Every counter, in report order. Counters named "errors.<Class>" are added as they occur.
COUNTERS = (
    "requests",
    "exact_hits",
    "semantic_hits",
    "misses",
    "bypasses",
    "stale_serves",
    "coalesced",  # followers of an identical request's upstream call in flight (singleflight): not misses
    "requests_saved",
    "prompt_tokens_saved",
    "completion_tokens_saved",
    "cost_saved_usd",
    "upstream_calls",
    "upstream_attempts",
    "upstream_prompt_tokens",
    "upstream_completion_tokens",
    "cost_spent_usd",
    "retries",
    "rate_limited_429",
    "quota_exhausted",
    "ratelimit_waits",
    "ratelimit_wait_s",
    "lookup_errors",
    "lookup_bugs",
    "budget_alerts",
    "budget_stops",
)

Key = tuple[str, str, str]  # (tenant, model, counter)
# Told of every count as it happens: (counter, amount, tenant, model, detail); see ``Stats.listen``.
Listener = Callable[[str, float, str, str, "Mapping[str, object] | None"], None]

log = logging.getLogger("semcache")


class CounterSink(Protocol):
    """Where counters persist: ``Store`` implements it."""

    def add_counters(self, deltas: Mapping[Key, float]) -> None: ...

    def counters(self) -> dict[Key, float]: ...


class Flusher:
    """Call ``flush`` every ``interval`` seconds in a daemon thread until ``stop``.

    A failing flush is logged and retried at the next tick (what it held is kept by ``flush``
    itself); ``interval`` None or <= 0 starts no thread (the owner flushes by hand).
    """

    def __init__(self, flush: Callable[[], None], interval: float | None, *, name: str = "semcache-flush") -> None:
        self._flush = flush
        self._stop = threading.Event()
        self._thread = None
        if interval and interval > 0:
            self._thread = threading.Thread(target=self._run, args=(interval,), name=name, daemon=True)
            self._thread.start()

    def _run(self, interval: float) -> None:
        warned = False
        while not self._stop.wait(interval):
            try:
                self._flush()
                warned = False
            except Exception as exc:  # the store is unavailable: keep counting, write when it is back
                if not warned:
                    log.warning("semcache could not write counters and hits (will retry): %s: %s", type(exc).__name__, exc)
                warned = True

    def stop(self) -> None:
        """Stop the thread (after its current flush, if one runs)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()


class Stats:
    """Count events; report totals, per tenant and per model."""

    def __init__(self, sink: CounterSink | None = None) -> None:
        self._sink = sink
        self._pending: dict[Key, float] = defaultdict(float)
        self._process: dict[Key, float] = defaultdict(float)  # this process's own counts, never flushed away
        self._listeners: list[Listener] = []
        self._lock = threading.Lock()
        # Held from taking the pending deltas until the sink has them: a snapshot taken meanwhile
        # would otherwise see them in neither place (a flusher thread racing ``stats()`` lost counts).
        self._flushing = threading.Lock()

    def incr(self, counter: str, amount: float = 1, *, tenant: str = "", model: str = "",
             detail: Mapping[str, object] | None = None) -> None:
        """Add ``amount`` to ``counter`` for (tenant, model); persisted at the next flush.

        ``detail`` (what the event was, e.g. which budget) is only handed to the listeners.
        """
        if not amount:
            return
        key = (tenant, model or "", counter)
        with self._lock:
            self._pending[key] += amount
            self._process[key] += amount
        for listener in self._listeners:
            try:
                listener(counter, amount, tenant, model or "", detail)
            except Exception as exc:  # a listener (metrics, alerts) must never fail what it watches
                log.warning("semcache stats listener failed: %s: %s", type(exc).__name__, exc)

    def listen(self, listener: Listener) -> None:
        """Call ``listener(counter, amount, tenant, model, detail)`` after every count, in the counting thread
        (keep it quick: the sidecar's alerts only queue what they will send)."""
        self._listeners.append(listener)

    def process_counts(self) -> dict[Key, float]:
        """Return what this process counted since it started (not the store's totals, which every
        process sharing the store adds to): what a Prometheus scrape of one replica must show."""
        with self._lock:
            return dict(self._process)

    def flush(self) -> None:
        """Write pending deltas to the sink (kept for the next flush when the write fails)."""
        if self._sink is None:
            return  # nowhere to write: the counts stay in memory
        with self._flushing:
            with self._lock:
                pending, self._pending = self._pending, defaultdict(float)
            if pending:
                try:
                    self._sink.add_counters(pending)
                except Exception:
                    with self._lock:  # keep them for the next flush rather than lose them
                        for key, value in pending.items():
                            self._pending[key] += value
                    raise

    def _all(self) -> dict[Key, float]:
        merged: dict[Key, float] = defaultdict(float)
        with self._flushing:
            if self._sink is not None:
                for key, value in self._sink.counters().items():
                    merged[key] += value
            with self._lock:
                for key, value in self._pending.items():
                    merged[key] += value
        return merged

    def snapshot(self) -> dict:
        """Return ``{"total": {...}, "by_tenant": {t: {...}}, "by_model": {m: {...}}}``."""
        total: dict[str, float] = defaultdict(float)
        by_tenant: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        by_model: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        for (tenant, model, counter), value in self._all().items():
            total[counter] += value
            by_tenant[tenant or "default"][counter] += value
            if model:
                by_model[model][counter] += value
        return {
            "total": _report(total),
            "by_tenant": {t: _report(c) for t, c in sorted(by_tenant.items())},
            "by_model": {m: _unpriced(_report(c)) for m, c in sorted(by_model.items())},
        }


# cost counter -> (the counter of what it counts, the counter of the unpriced part of that)
_UNPRICED = {"cost_saved_usd": ("requests_saved", "unpriced_requests_saved"),
             "cost_spent_usd": ("upstream_calls", "unpriced_upstream_calls")}


def _unpriced(report: dict) -> dict:
    """A model's costs as None ("unpriced") where every call or hit it counts had no price: never $0."""
    for cost, (counted, unpriced) in _UNPRICED.items():
        if report.get(unpriced) and report[unpriced] >= report.get(counted, 0) and not report.get(cost):
            report[cost] = None
    return report


def _report(counts: Mapping[str, float]) -> dict:
    out: dict[str, float] = {}
    for name in COUNTERS:
        value = counts.get(name, 0)
        out[name] = round(value, 6) if isinstance(value, float) and not float(value).is_integer() else int(value)
    for name in sorted(counts):
        if name not in out:
            out[name] = int(counts[name]) if float(counts[name]).is_integer() else round(counts[name], 6)
    requests = out["requests"]
    hits = out["exact_hits"] + out["semantic_hits"]
    out["hit_rate"] = round(hits / requests, 4) if requests else 0.0
    return out


def stats_tables(snapshot: dict) -> list:
    """Return rich ``Table``s of a snapshot: totals and one column per tenant, then one column per model.

    Rows whose every cell is zero are left out; a single tenant's or model's column, which would
    repeat the total, is too.
    """
    from rich.table import Table

    def table(title: str, columns: list[tuple[str, Mapping[str, float]]]) -> Table:
        names = [n for n in snapshot["total"] if any(c.get(n) for _, c in columns)] or ["requests"]
        out = Table(title=title, title_justify="left", header_style="bold")
        out.add_column("counter", no_wrap=True)
        for heading, _ in columns:
            out.add_column(heading, justify="right", overflow="fold")
        for name in names:
            out.add_row(name, *(_cell(name, counts.get(name, 0)) for _, counts in columns))
        return out

    tenants = [(t, c) for t, c in snapshot.get("by_tenant", {}).items()]
    models = [(m, c) for m, c in snapshot.get("by_model", {}).items()]
    tables = [table("by tenant" if len(tenants) > 1 else "totals", [("total", snapshot["total"])] + (tenants if len(tenants) > 1 else []))]
    if len(models) > 1:
        tables.append(table("by model", [("total", snapshot["total"])] + models))
    elif models:  # one model: say which, without a column that repeats the total
        tables[0].caption = f"model: {models[0][0]}"
    return tables


def _cell(name: str, value: float | None) -> str:
    if value is None:  # a cost the price table cannot give (an unpriced model), never $0
        return "unpriced"
    if name == "hit_rate":
        return f"{value:.1%}"
    return f"{value:,.4f}" if isinstance(value, float) else f"{value:,}"


def format_table(snapshot: dict, *, width: int = 120) -> str:
    """Render ``stats_tables(snapshot)`` as plain text, ``width`` columns wide at most."""
    from rich.console import Console

    console = Console(width=width, record=True, file=_Discard(), color_system=None, highlight=False)
    for table in stats_tables(snapshot):
        console.print(table)
    return console.export_text().rstrip("\n")


class _Discard:
    """A file that drops what is written: the recorded text is what ``format_table`` returns."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass
