"""Shared helpers for the benchmark scripts: percentiles, machine info, JSON, plots.

Benchmarks measure; tests check behaviour. Nothing here is imported by ``semcache``.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

__all__ = ["Timer", "machine_info", "plot_lines", "rss_bytes", "summarize", "write_json"]


def summarize(seconds: Iterable[float]) -> dict:
    """Return count, mean and p50/p90/p99/max of durations given in seconds, in milliseconds."""
    values = np.asarray(list(seconds), dtype=np.float64) * 1e3
    if not len(values):
        return {"n": 0}
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"n": int(len(values)), "mean_ms": round(float(values.mean()), 4), "p50_ms": round(float(p50), 4),
            "p90_ms": round(float(p90), 4), "p99_ms": round(float(p99), 4), "max_ms": round(float(values.max()), 4)}


class Timer:
    """Collect the durations of repeated calls: ``with timer: work()`` appends one sample."""

    def __init__(self, clock=time.perf_counter) -> None:
        self.samples: list[float] = []
        self._clock = clock
        self._start = 0.0

    def __enter__(self) -> "Timer":
        self._start = self._clock()
        return self

    def __exit__(self, *exc) -> None:
        self.samples.append(self._clock() - self._start)

    def summary(self) -> dict:
        return summarize(self.samples)


def rss_bytes() -> int:
    """Return this process's resident set size now (Linux ``/proc``; 0 elsewhere)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_info() -> dict:
    """Describe where the numbers came from: CPU, load, Python and library versions."""
    info = {
        "cpu_count": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
    }
    # Other work on the machine inflates every latency; record it so numbers can be judged.
    if hasattr(os, "getloadavg"):
        info["loadavg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    try:
        import faiss

        info["faiss"] = faiss.__version__
        info["faiss_omp_threads"] = faiss.omp_get_max_threads()
    except ImportError:
        info["faiss"] = None
    return info


def write_json(path: str | os.PathLike, data: Mapping) -> Path:
    """Write ``data`` as indented JSON (creating the directory) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    return path


def plot_lines(path: str | os.PathLike, series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
               title: str, xlabel: str, ylabel: str, logx: bool = True, logy: bool = True,
               hlines: Mapping[str, float] | None = None) -> Path:
    """Plot named (x, y) series as lines with markers to a PNG (headless ``Agg`` backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, (xs, ys) in series.items():
        style = "--" if "p99" in label else "-"
        ax.plot(list(xs), list(ys), style, marker="o", label=label)
    for label, y in (hlines or {}).items():
        ax.axhline(y, color="grey", linestyle=":", linewidth=1)
        ax.annotate(label, (0.01, y), xycoords=("axes fraction", "data"), fontsize=8, color="grey", va="bottom")
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
