"""Self-calibration from free labels: estimate the precision of semantic hits, move the threshold.

Pure logic over one scope's ``Evidence`` (a tenant, or a tenant's partition): histograms over
cosine bins of width ``1 / BINS`` of

- ``right`` / ``wrong``: labels -- a candidate the cache did *not* serve (a miss in the uncertain
  band, or a hit the answer groups contested), whose stored answer the judge compared with the
  upstream answer that came anyway (free), plus users' ``feedback``;
- ``explored_right`` / ``explored_wrong``: served hits re-asked upstream (``verify_fraction``,
  costs quota): an unbiased sample of the hits themselves;
- ``hits``: the semantic hits served, by cosine.

Every label and hit is counted in a cell of (cosine, gap): the gap is the cosine to the served
(or candidate) entry minus the cosine to the nearest entry of another answer group, the answer
groups' own evidence. ``estimate`` reports the precision of the hits served with a 95% bound:
from the exploration sample when it holds ``min_labels`` (Wilson), else from a logistic model of
"right" on (cosine, gap) fitted to the labels, averaged over the cells the hits were served in
(the bound by the delta method). The labels come from candidates that were *not* served, so the
model extrapolates to the hits: an estimate, not a measurement -- exploration measures. Either way
every label is the answer judge's verdict, and the judge errs: the bound is widened by its
measured error rates (``false_different`` lifts the upper end: same answers it called different;
``false_same`` lowers the lower end), while the point stays what the judge's labels say -- a
judge that leans to "different" makes it a low estimate.

``calibrated_threshold`` returns the loosest cosine (never under ``floor``, never over ``start``)
whose labels at and above it have a Wilson lower bound at or above the target precision; a wrong
label at or above the current threshold tightens it at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from ..errors import ConfigError

__all__ = ["BINS", "GAPS", "Estimate", "Evidence", "bin_of", "calibrated_threshold", "estimate", "gap_bin", "wilson"]

BINS = 200  # cosine bins of 0.01 over [-1, 1]
Z95 = 1.959964


def bin_of(similarity: float) -> int:
    """Return the bin of a cosine (0 for -1, ``BINS - 1`` for 1)."""
    return int(min(BINS - 1, max(0, math.floor((similarity + 1.0) * BINS / 2.0))))


def bin_low(index: int) -> float:
    return index * 2.0 / BINS - 1.0


def wilson(right: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Return the Wilson score interval of a proportion ``right / n`` ((0, 1) when ``n`` is 0)."""
    if n <= 0:
        return 0.0, 1.0
    p = right / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


_KINDS = {"r": "right", "w": "wrong", "h": "hits", "xr": "explored_right", "xw": "explored_wrong"}
GAPS = 21  # bins of the gap to the nearest other answer: 0.02 wide over [-0.2, 0.2], "no rival" in the top bin
GAP_SPAN = 0.2


def gap_bin(gap: float | None) -> int:
    """Return the bin of a gap (cosine to the served answer minus cosine to the nearest other one)."""
    if gap is None:
        return GAPS - 1
    return int(min(GAPS - 1, max(0, round((gap + GAP_SPAN) * (GAPS - 1) / (2 * GAP_SPAN)))))


def _zeros() -> np.ndarray:
    return np.zeros((BINS, GAPS), np.int64)


@dataclass
class Evidence:
    """One scope's histograms over (cosine bin, gap bin); tallies name them ``<kind><bin>_<gap>``
    (``r180_12``: a right label at cosine 0.80-0.81, gap bin 12)."""

    right: np.ndarray = field(default_factory=_zeros)
    wrong: np.ndarray = field(default_factory=_zeros)
    hits: np.ndarray = field(default_factory=_zeros)
    explored_right: np.ndarray = field(default_factory=_zeros)
    explored_wrong: np.ndarray = field(default_factory=_zeros)

    @classmethod
    def from_tallies(cls, tallies: Mapping[str, int]) -> "Evidence":
        evidence = cls()
        evidence.add(tallies)
        return evidence

    def add(self, tallies: Mapping[str, int]) -> None:
        """Add tallies named ``<kind><bin>_<gap>`` (kinds: r, w, h, xr, xw); others are ignored."""
        for name, amount in tallies.items():
            kind = name.rstrip("0123456789_")
            cell = name[len(kind):].split("_")
            if kind in _KINDS and len(cell) == 2 and all(c.isdigit() for c in cell) and int(cell[0]) < BINS and int(cell[1]) < GAPS:
                getattr(self, _KINDS[kind])[int(cell[0]), int(cell[1])] += int(amount)

    @staticmethod
    def name(kind: str, similarity: float, gap: float | None = None) -> str:
        return f"{kind}{bin_of(similarity)}_{gap_bin(gap)}"

    @property
    def labels(self) -> int:
        return int(self.right.sum() + self.wrong.sum())

    @property
    def explored(self) -> int:
        return int(self.explored_right.sum() + self.explored_wrong.sum())


@dataclass(frozen=True, slots=True)
class Estimate:
    """The estimated precision of semantic hits, its 95% bound, and what it rests on."""

    precision: float | None
    low: float
    high: float
    labels: int
    source: str  # "exploration" | "labels" | "none"

    def as_dict(self) -> dict:
        return {"estimated_precision": None if self.precision is None else round(self.precision, 4),
                "bound": [round(self.low, 4), round(self.high, 4)], "labels": self.labels, "source": self.source}


def _features(cells: np.ndarray) -> np.ndarray:
    """Features of (cosine bin, gap bin) cells: 1, cosine, gap (cosine units), "no rival"."""
    sim = cells[:, 0] * 2.0 / BINS - 1.0 + 1.0 / BINS
    gap = cells[:, 1] * (2 * GAP_SPAN) / (GAPS - 1) - GAP_SPAN
    return np.column_stack([np.ones(len(cells)), (sim - 0.8) * 10, gap * 10])


def _fit(x: np.ndarray, right: np.ndarray, total: np.ndarray, ridge: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Weighted logistic regression (Newton, a small ridge); return (weights, their covariance)."""
    w = np.zeros(x.shape[1])
    penalty = ridge * np.eye(x.shape[1])
    penalty[0, 0] = 1e-6
    for _ in range(50):
        p = 1 / (1 + np.exp(-(x @ w)))
        gradient = x.T @ (right - total * p) - penalty @ w
        hessian = (x * (total * p * (1 - p))[:, None]).T @ x + penalty
        step = np.linalg.solve(hessian, gradient)
        w += step
        if np.abs(step).max() < 1e-8:
            break
    return w, np.linalg.inv(hessian)


def estimate(evidence: Evidence, *, min_labels: int = 30, false_different: float = 0.0,
             false_same: float = 0.0) -> Estimate:
    """Estimate the precision of the semantic hits ``evidence`` counts (see the module docstring);
    ``false_different`` / ``false_same``: the answer judge's error rates, which widen the bound."""

    def judged(point: float, low: float, high: float, labels: int, source: str) -> Estimate:
        return Estimate(point, max(0.0, low - false_same), min(1.0, high / (1.0 - false_different)), labels, source)

    if evidence.explored >= min_labels:
        right = int(evidence.explored_right.sum())
        low, high = wilson(right, evidence.explored)
        return judged(right / evidence.explored, low, high, evidence.explored, "exploration")
    labelled = np.argwhere(evidence.right + evidence.wrong > 0)
    served = np.argwhere(evidence.hits > 0)
    if evidence.labels < min_labels or not len(served):
        return Estimate(None, 0.0, 1.0, evidence.labels, "none")
    right = evidence.right[labelled[:, 0], labelled[:, 1]].astype(np.float64)
    total = right + evidence.wrong[labelled[:, 0], labelled[:, 1]]
    w, cov = _fit(_features(labelled), right, total)
    x = _features(served)
    weights = evidence.hits[served[:, 0], served[:, 1]].astype(np.float64)
    weights /= weights.sum()
    p = 1 / (1 + np.exp(-(x @ w)))
    point = float(weights @ p)
    gradient = (weights * p * (1 - p)) @ x  # delta method: d(point)/dw
    half = Z95 * float(np.sqrt(max(gradient @ cov @ gradient, 0.0)))
    return judged(point, point - half, point + half, evidence.labels, "labels")


def calibrated_threshold(evidence: Evidence, *, target: float, start: float, floor: float, current: float | None = None,
                         min_labels: int = 30) -> float:
    """Return the loosest threshold in [floor, start] the labels support at ``target`` precision.

    A threshold ``t`` is supported when the labels at and above ``t`` number ``min_labels`` and
    their Wilson lower bound is at least ``target``; the scan stops where their upper bound falls
    under it. Without support anywhere the answer is ``start``. A wrong label at or above ``current`` that makes ``current`` unsupported moves the
    answer up at once (the scan always starts from the evidence, never from ``current``).
    """
    if not 0.0 < target < 1.0:
        raise ConfigError(f"target precision must be in (0, 1), got {target!r}")
    if floor > start:
        raise ConfigError(f"the calibration floor {floor!r} is above its start {start!r}")
    right = np.cumsum(evidence.right.sum(axis=1)[::-1])[::-1]
    total = right + np.cumsum(evidence.wrong.sum(axis=1)[::-1])[::-1]
    best = start
    for index in range(bin_of(start), bin_of(floor) - 1, -1):
        t = max(bin_low(index), floor)
        if t > start:
            continue
        n = int(total[index])
        if n < min_labels:
            continue  # too little evidence here: neither supported nor refuted; keep looking lower
        low, high = wilson(int(right[index]), n)
        if low >= target:
            best = t
        elif high < target:
            break  # precision surely below target here: nothing looser can be supported
    return round(best, 4)
