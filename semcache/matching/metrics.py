"""Threshold metrics over scored pairs: ROC-AUC, precision/recall points, best F1, a threshold for a precision.

Pure numpy. Used by calibration, tuning and the benchmarks.
"""

from __future__ import annotations

import numpy as np

__all__ = ["best_f1", "pr_points", "roc_auc", "threshold_for_precision"]


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Return the ROC-AUC (ties count half)."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if not n_pos or not n_neg:
        return float("nan")
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def pr_points(scores: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Return precision, recall and accept-rate at every distinct threshold, highest first."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels).astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], len(s) - 1]  # last index of each distinct score
    tp = np.cumsum(y)[last]
    accepted = last + 1
    return {
        "threshold": s[last],
        "precision": tp / accepted,
        "recall": tp / max(int(y.sum()), 1),
        "accept_rate": accepted / len(s),
    }


def best_f1(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """Return (best F1 over thresholds, its threshold)."""
    pts = pr_points(scores, labels)
    f1 = 2 * pts["precision"] * pts["recall"] / np.maximum(pts["precision"] + pts["recall"], 1e-12)
    i = int(np.argmax(f1))
    return float(f1[i]), float(pts["threshold"][i])


def threshold_for_precision(scores: np.ndarray, labels: np.ndarray, target: float, min_accepted: int = 20) -> float:
    """Return the lowest threshold whose hits (every pair scoring at or above it) reach ``target`` precision.

    Cuts accepting fewer than ``min_accepted`` pairs are ignored (their precision is noise).
    Returns the highest score seen (accept almost nothing) when the target is never reached.
    """
    pts = pr_points(scores, labels)
    accepted = np.rint(pts["accept_rate"] * len(scores))
    ok = np.nonzero((pts["precision"] >= target) & (accepted >= min_accepted))[0]
    return float(pts["threshold"][ok[-1]]) if len(ok) else float(pts["threshold"][0])
