"""Fit the match threshold to a target precision on a user's labelled pairs (``semcache calibrate``).

``calibrate(pairs, target_precision, embedder=...)`` splits the pairs *by text* (connected
components of shared texts go to one side, so no text is scored on both sides), scores the fit
part with the policy's own rule (cosine, or -1 where a check refuses the pair), picks the lowest
measured threshold whose precision stays at or above the target, and reports precision and recall
on the held-out part with a 95% lower bound on the precision.

A calibration never proposes a point it has not measured. It refuses (``ConfigError``, saying
why) when the pairs cannot support one: too few non-duplicates that the checks leave for the
threshold to separate, or no measured threshold that reaches the target with enough accepted
pairs behind it.
"""

from __future__ import annotations

import math
from typing import Iterable, Protocol

import numpy as np

from ..errors import ConfigError
from ..matching.metrics import best_f1, pr_points, roc_auc
from ..matching.policy import MatchPolicy
from .data import Pair, group_split
from .progress import progress

__all__ = ["calibrate", "wilson_lower"]

# Fewer non-duplicates than this on the cosine scale (not refused by a check) leave nothing for a
# threshold to separate: any threshold "reaches" any precision, which says nothing about real traffic.
MIN_NEGATIVES = 10
MIN_ACCEPTED = 10


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


def wilson_lower(successes: int, n: int, z: float = 1.96) -> float | None:
    """Return the Wilson score interval's lower end for ``successes`` of ``n`` (None for n = 0)."""
    if n <= 0:
        return None
    p = successes / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return round((centre - spread) / (1 + z * z / n), 4)


def _summary(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    accepted = scores >= threshold
    tp = int((accepted & (labels == 1)).sum())
    n = int(accepted.sum())
    return {
        "pairs": int(len(labels)),
        "positives": int(labels.sum()),
        "accepted": n,
        "precision": round(tp / n, 4) if n else None,
        "precision_lower_95": wilson_lower(tp, n),
        "recall": round(tp / max(int(labels.sum()), 1), 4),
        "roc_auc": round(roc_auc(scores, labels), 4) if len(set(labels.tolist())) == 2 else None,
        "best_f1": round(best_f1(scores, labels)[0], 4) if len(labels) else None,
    }


def calibrate(
    pairs: Iterable[Pair],
    target_precision: float,
    *,
    embedder: Embedder,
    holdout: float = 0.2,
    seed: int = 0,
    base: MatchPolicy | None = None,
    plot: str | None = None,
) -> tuple[MatchPolicy, dict]:
    """Return ``base`` (default: the shipped policy) at the threshold that meets ``target_precision``
    on the fit part, and a report (the threshold; precision, its 95% lower bound and recall on the
    fit and held-out parts: the held-out numbers are what to expect on similar data).

    ``plot``: write a PNG of precision and recall against the threshold on the fit pairs that the
    checks leave open, the chosen point marked; it is written before a refusal too (it shows why).

    Raises ``ConfigError`` on a target outside (0, 1), too few pairs, or pairs that cannot support
    a threshold (see the module's docstring).
    """
    pairs = [(str(a), str(b), int(y)) for a, b, y in pairs]
    if not 0.0 < target_precision < 1.0:
        raise ConfigError(f"target_precision must be in (0, 1), got {target_precision!r}")
    if not 0.0 < holdout < 1.0:
        raise ConfigError(f"holdout must be in (0, 1), got {holdout!r}")
    labels = np.array([y for _, _, y in pairs])
    if len(pairs) < 20 or labels.sum() < 5 or (1 - labels).sum() < 5:
        raise ConfigError("calibration needs at least 20 pairs with 5 of each label")
    base = base if base is not None else MatchPolicy()
    texts = sorted({t for a, b, _ in pairs for t in (a, b)})
    vectors = _embed(embedder, texts)
    row = {t: i for i, t in enumerate(texts)}
    sims = np.einsum("ij,ij->i", vectors[[row[a] for a, _, _ in pairs]], vectors[[row[b] for _, b, _ in pairs]])
    fit, held = (np.array(part, dtype=int) for part in group_split(pairs, holdout, seed))
    scores = base.score_pairs([a for a, _, _ in pairs], [b for _, b, _ in pairs], sims)
    fit_scores, fit_labels = scores[fit], labels[fit]
    open_negatives = int(((fit_scores > -1.0) & (fit_labels == 0)).sum())
    pts = pr_points(fit_scores[fit_scores > -1.0], fit_labels[fit_scores > -1.0])

    def draw(threshold: float | None) -> None:
        if plot is not None:
            from .plots import plot_threshold_curves

            plot_threshold_curves(pts, plot, chosen=threshold, target_precision=target_precision,
                                  title=f"semcache calibrate: {int((fit_scores > -1.0).sum())} fit pairs the checks leave open")

    if open_negatives < MIN_NEGATIVES:
        draw(None)
        raise ConfigError(
            f"these pairs cannot support a threshold: the checks refuse all but {open_negatives} of the "
            f"{int((fit_labels == 0).sum())} non-duplicates in the fit part, so any threshold looks precise. Add at least "
            f"{MIN_NEGATIVES} non-duplicate pairs that ask different things in similar words (e.g. logged pairs a person judged)")
    accepted = np.rint(pts["accept_rate"] * int((fit_scores > -1.0).sum()))
    tp = np.rint(pts["precision"] * accepted)
    lower = np.array([wilson_lower(int(t), int(n)) or 0.0 for t, n in zip(tp, accepted)])
    ok = np.nonzero((pts["precision"] >= target_precision) & (accepted >= MIN_ACCEPTED))[0]
    if not len(ok):
        draw(None)
        best = int(np.argmax(np.where(accepted >= MIN_ACCEPTED, pts["precision"], -1)))
        raise ConfigError(
            f"no measured threshold reaches precision {target_precision} with at least {MIN_ACCEPTED} accepted pairs "
            f"(best: {pts['precision'][best]:.3f} at cosine {pts['threshold'][best]:.4f}); lower the target or add pairs")
    i = int(ok[-1])
    threshold = round(float(pts["threshold"][i]), 4)
    draw(threshold)
    policy = base.with_threshold(threshold)
    report = {
        "target_precision": target_precision,
        "threshold": threshold,
        "fit": {**_summary(fit_scores, fit_labels, threshold), "precision_lower_95": float(lower[i])},
        "held_out": _summary(scores[held], labels[held], threshold),
        "checked_out": {"fit_negatives_refused_by_checks": int(((fit_scores == -1.0) & (fit_labels == 0)).sum()),
                        "fit_positives_refused_by_checks": int(((fit_scores == -1.0) & (fit_labels == 1)).sum())},
    }
    return policy, report


def _embed(embedder: Embedder, texts: list[str], chunk: int = 256) -> np.ndarray:
    """Embed ``texts`` in chunks, with a progress bar once it runs past ~2 s."""
    parts = []
    with progress(len(texts), "embedding", unit="texts") as bar:
        for start in range(0, len(texts), chunk):
            parts.append(np.asarray(embedder.embed(texts[start:start + chunk]), dtype=np.float32))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)
