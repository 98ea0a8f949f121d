"""Fit the match threshold to a target precision on a user's labelled pairs.

``calibrate(pairs, target_precision, embedder=...)`` splits the pairs *by text* (connected
components of shared texts go to one side, so no text is scored on both sides), scores the
fit part with the default policy, picks the lowest threshold whose precision stays at or
above the target, and reports precision and recall on the held-out part. The default policy
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
from ..matching.metrics import best_f1, roc_auc, threshold_for_precision
from ..matching.policy import MatchPolicy
from ..matching.verifier import Verifier
from .data import Pair, group_split

__all__ = ["calibrate"]


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
) -> tuple[MatchPolicy, dict]:
    """Return a policy whose threshold meets ``target_precision`` on the fit part, and a report.

    The report holds the chosen threshold and precision/recall on the fit and held-out
    parts; the held-out numbers are what to expect on similar data. ``base`` defaults to
    the shipped policy. Raises ``ConfigError`` on a target outside (0, 1) or too few pairs.
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
    vectors = np.asarray(embedder.embed(texts), dtype=np.float32)
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
    else:
        fit_scores = policy.score_pairs(texts_a, texts_b, sims, va, vb)[fit]
    scores = policy.score_pairs(texts_a, texts_b, sims, va, vb)
    threshold = threshold_for_precision(fit_scores, labels[fit], target_precision, min_accepted=max(5, len(fit) // 200))
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
