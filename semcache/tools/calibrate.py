"""Fit the match threshold to a target precision on a user's labelled pairs.

``calibrate(pairs, target_precision, embedder=...)`` splits the pairs *by text* (connected
components of shared texts go to one side, so no text is scored on both sides), scores the
fit part with the default policy, picks the lowest threshold whose precision stays at or
above the target, and reports precision and recall on the held-out part.

It never proposes a point the pairs do not measure, and says why instead (``ConfigError``):
when no threshold reaches the target on the fit part (with at least ``min_accepted`` pairs
accepted), or when too few negatives reach the score at all. The second case is the bundled
hard negatives: the checks refuse 150 of their 152 near misses before the pair classifier
scores them, so every threshold above 0 looks precise and the lowest (0.0231) would have been
proposed, a point at which the threshold itself was tested against 2 negatives. The default policy
is the cascade: its threshold is on the pair classifier's probability, so calibrating moves
how sure the classifier must be. With ``refit=True`` it instead refits the learned verifier
(a regularised logistic regression over cheap pair features, in numpy; no pair classifier)
on the fit part; the threshold is then chosen on cross-validated scores, never on the scores
the model was fitted to.

The metrics (``semcache.matching.metrics``) and the grouped split (``semcache.tools.data``)
are shared with the benchmarks.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import numpy as np

from ..embedding.pair import PairClassifier
from ..errors import ConfigError
from ..matching.metrics import best_f1, pr_points, roc_auc
from ..matching.policy import MatchPolicy
from ..matching.verifier import Verifier
from .data import Pair, group_split
from .progress import progress

__all__ = ["MIN_SCORED_NEGATIVES", "calibrate"]

# Negatives of the fit part that must reach the score (not refused by a check, the language or
# the cosine floor first) for the threshold to be measured at all; below it calibrate refuses.
MIN_SCORED_NEGATIVES = 20


class Embedder(Protocol):
    def embed(self, texts: list[str]) -> np.ndarray: ...


def _fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Fit an L2-regularised logistic regression by Newton's method on standardised ``x``."""
    n, d = x.shape
    xb = np.c_[x, np.ones(n)]
    w = np.zeros(d + 1)
    reg = np.full(d + 1, l2)
    reg[-1] = 0.0  # the intercept is not shrunk
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -40, 40)))
        grad = xb.T @ (p - y) + reg * w
        hess = (xb * (p * (1 - p))[:, None]).T @ xb + np.diag(reg + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-8:
            break
    return w[:-1], float(w[-1])


def _refit(features: np.ndarray, labels: np.ndarray) -> Verifier:
    mean, scale = features.mean(axis=0), features.std(axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    coef, intercept = _fit_logistic((features - mean) / scale, labels.astype(np.float64))
    return Verifier(mean.astype(np.float32), scale.astype(np.float32), coef.astype(np.float32), intercept, name="calibrated")


def _summary(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    accepted = scores >= threshold
    tp = int((accepted & (labels == 1)).sum())
    return {
        "pairs": int(len(labels)),
        "positives": int(labels.sum()),
        "precision": tp / max(int(accepted.sum()), 1),
        "recall": tp / max(int(labels.sum()), 1),
        "accept_rate": float(accepted.mean()) if len(labels) else 0.0,
        "roc_auc": roc_auc(scores, labels),
        "best_f1": best_f1(scores, labels)[0] if len(labels) else float("nan"),
    }


def calibrate(
    pairs: Iterable[Pair],
    target_precision: float,
    *,
    embedder: Embedder,
    holdout: float = 0.2,
    seed: int = 0,
    base: MatchPolicy | None = None,
    refit: bool = False,
    plot: str | None = None,
) -> tuple[MatchPolicy, dict]:
    """Return a policy whose threshold meets ``target_precision`` on the fit part, and a report.

    The report holds the chosen threshold and precision/recall on the fit and held-out
    parts; the held-out numbers are what to expect on similar data. ``base`` defaults to
    the shipped policy. ``plot``: write a PNG of precision and recall against the threshold
    on the fit part, the chosen point marked (also when the pairs cannot support one).
    Raises ``ConfigError`` on a target outside (0, 1), too few pairs, fewer than
    ``MIN_SCORED_NEGATIVES`` negatives that reach the score, or a target no threshold reaches.
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
    if refit and base.kind != "cosine":
        base = base if base.kind == "learned" else MatchPolicy.learned(languages=base.languages, checks=base.checks)
    if base.needs_pair:
        base = base.with_pair(PairClassifier())
    texts = sorted({t for a, b, _ in pairs for t in (a, b)})
    vectors = _embed(embedder, texts)
    row = {t: i for i, t in enumerate(texts)}
    ia, ib = [row[a] for a, _, _ in pairs], [row[b] for _, b, _ in pairs]
    va, vb = vectors[ia], vectors[ib]
    sims = np.einsum("ij,ij->i", va, vb)
    fit, held = (np.array(part, dtype=int) for part in group_split(pairs, holdout, seed))
    texts_a, texts_b = [a for a, _, _ in pairs], [b for _, b, _ in pairs]
    policy = base
    if refit and base.kind != "cosine":
        features = base.pair_features(texts_a, texts_b, sims)
        oof = np.zeros(len(pairs))
        folds = np.array_split(np.random.default_rng(seed).permutation(fit), 5)
        for k, fold in enumerate(folds):
            train = np.concatenate([f for j, f in enumerate(folds) if j != k])
            oof[fold] = _refit(features[train], labels[train]).score_rows(features[fold])
        policy = base.with_verifier(_refit(features[fit], labels[fit]))
        fit_scores = oof[fit]
    scores = _score(policy, texts_a, texts_b, sims, va, vb)
    if not (refit and base.kind != "cosine"):
        fit_scores = scores[fit]
    floor = -1.0 if policy.kind == "cosine" else 0.0
    threshold, points, problem = _choose(fit_scores, labels[fit], target_precision, floor,
                                         min_accepted=max(5, len(fit) // 200))
    if plot is not None:  # drawn before any refusal: the curve shows why
        from .plots import plot_threshold_curves

        plot_threshold_curves(points, plot, chosen=threshold, target_precision=target_precision,
                              title=f"semcache calibrate: {policy.kind} policy, {len(fit)} fit pairs")
    if problem is not None:
        raise ConfigError(problem)
    policy = policy.with_threshold(threshold)
    report = {
        "target_precision": target_precision,
        "threshold": threshold,
        "kind": policy.kind,
        "refit": bool(refit and base.kind != "cosine"),
        "fit": _summary(fit_scores, labels[fit], threshold),
        "held_out": _summary(scores[held], labels[held], threshold),
    }
    return policy, report


_CHUNK = 256


def _embed(embedder: Embedder, texts: list[str]) -> np.ndarray:
    with progress(len(texts), "embedding", unit="texts") as bar:
        parts = []
        for start in range(0, len(texts), _CHUNK):
            parts.append(np.asarray(embedder.embed(texts[start:start + _CHUNK]), dtype=np.float32))
            bar.update(len(parts[-1]))
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def _score(policy: MatchPolicy, texts_a, texts_b, sims, va, vb) -> np.ndarray:
    """Score every pair (each pair on its own, so chunks give the same scores), with a progress bar."""
    with progress(len(texts_a), "scoring pairs", unit="pairs") as bar:
        parts = []
        for start in range(0, len(texts_a), _CHUNK):
            end = start + _CHUNK
            parts.append(policy.score_pairs(texts_a[start:end], texts_b[start:end], sims[start:end], va[start:end], vb[start:end]))
            bar.update(len(parts[-1]))
    return np.concatenate(parts)


def _choose(scores: np.ndarray, labels: np.ndarray, target: float, floor: float, *,
            min_accepted: int) -> tuple[float | None, dict, str | None]:
    """Return (the lowest measured threshold whose precision reaches ``target``, the curve's points, None),
    or (None, points, what the pairs lack) when they cannot support a threshold."""
    points = pr_points(scores, labels)
    scored = scores > floor
    negatives, scored_negatives = int((labels == 0).sum()), int((scored & (labels == 0)).sum())
    accepted = np.rint(points["accept_rate"] * len(scores))
    ok = np.nonzero((points["precision"] >= target) & (accepted >= min_accepted) & (points["threshold"] > floor))[0]
    if scored_negatives < MIN_SCORED_NEGATIVES:
        return None, points, (
            f"these pairs cannot place a threshold: only {scored_negatives} of the {negatives} negatives in the fit part "
            "reach the score (the checks, the language or the cosine floor refuse the rest first), so no threshold's "
            f"precision is measured on them. Add labelled negatives like your traffic's near misses that the checks do "
            f"not catch (at least {MIN_SCORED_NEGATIVES} that reach the score); no policy written")
    if not len(ok):
        usable = np.nonzero((accepted >= min_accepted) & (points["threshold"] > floor))[0]
        best = usable[np.argmax(points["precision"][usable])] if len(usable) else None
        detail = (f"the best is {points['precision'][best]:.3f} at threshold {points['threshold'][best]:.4f} "
                  f"({int(accepted[best])} pairs accepted)" if best is not None else "too few pairs score above the floor")
        return None, points, (f"no threshold reaches precision {target} on the fit part with at least {min_accepted} pairs accepted: "
                          f"{detail}. Lower --target-precision or add labelled pairs; no policy written")
    return float(points["threshold"][ok[-1]]), points, None
