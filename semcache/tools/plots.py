"""Precision and recall against the threshold, the chosen point marked (``semcache calibrate --plot``,
``semcache eval pairs --plot``).

matplotlib (the ``bench`` extra) draws with the Agg backend: files only, no display needed.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np

from ..errors import ConfigError
from ..matching.metrics import pr_points

__all__ = ["plot_pairs", "plot_threshold_curves"]


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:
        raise ConfigError("--plot needs matplotlib: pip install 'semcache-llm[bench]'") from exc
    matplotlib.use("Agg")  # files only; never a window
    import matplotlib.pyplot as plt

    return plt


def plot_threshold_curves(points: Mapping[str, np.ndarray], path: str, *, chosen: float | None,
                          target_precision: float | None = None, title: str = "") -> None:
    """Write a PNG of ``points`` (``pr_points``' output): precision and recall at every threshold.

    ``chosen`` is marked with its precision and recall; None (no supported point) says so on the plot.
    """
    plt = _pyplot()
    thresholds = np.asarray(points["threshold"], dtype=np.float64)
    precision, recall = np.asarray(points["precision"]), np.asarray(points["recall"])
    fig, ax = plt.subplots(figsize=(7, 4.5))
    try:
        # Accepting "score >= t" is a step function of t: steps drawn as measured, nothing in between.
        ax.step(thresholds, precision, where="post", label="precision", color="tab:blue")
        ax.step(thresholds, recall, where="post", label="recall", color="tab:orange")
        if target_precision is not None:
            ax.axhline(target_precision, color="tab:blue", linestyle=":", linewidth=1, label=f"target precision {target_precision}")
        if chosen is not None and len(thresholds):
            i = int(np.nonzero(thresholds >= chosen)[0][-1]) if (thresholds >= chosen).any() else 0
            ax.axvline(chosen, color="black", linestyle="--", linewidth=1)
            ax.plot([chosen, chosen], [precision[i], recall[i]], "ko")
            right = chosen < 0.6 * (thresholds.max() - thresholds.min()) + thresholds.min()
            ax.annotate(f"threshold {chosen:.4f}\nprecision {precision[i]:.3f}\nrecall {recall[i]:.3f}",
                        (chosen, 0.3), textcoords="offset points", xytext=(6 if right else -6, 0),
                        ha="left" if right else "right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "no threshold these pairs support", transform=ax.transAxes, ha="center", color="tab:red")
        open_ = thresholds[thresholds > -1.0]  # -1: pairs a check refused, misses at every threshold
        if len(open_):
            span = max(float(open_.max() - open_.min()), 0.05)
            ax.set_xlim(float(open_.min()) - 0.03 * span, float(open_.max()) + 0.03 * span)
        ax.set_xlabel("threshold (a pair is a hit when its score is at or above it)")
        ax.set_ylabel("share")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
        ax.set_title(title, fontsize=10)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    finally:
        plt.close(fig)


def plot_pairs(scores: np.ndarray, labels: np.ndarray, path: str, *, chosen: float, title: str = "") -> None:
    """Write the curves of labelled, scored pairs with the policy's threshold ``chosen`` marked."""
    plot_threshold_curves(pr_points(scores, labels), path, chosen=chosen, title=title)
