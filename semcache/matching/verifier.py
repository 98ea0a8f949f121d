"""Score a (query, candidate) pair: a small learned verifier over cheap pair features.

Pure numpy at run time. The weights are plain arrays in a JSON file (the shipped ones in
``semcache/data/verifier.json``, written by ``benchmarks/train_verifier.py`` from QQP);
scikit-learn is only needed to train them. The score is a probability in [0, 1] that the
two texts ask the same thing.

Features (``FEATURES``): cosine, lexical overlap (word and character-trigram Jaccard),
length ratio and size, one 0/1 flag per failed check and per one-sided difference
(see ``checks``), and optionally the embedding interaction ``|u - v|`` and ``u * v``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources

import numpy as np

from .checks import CHECKS, Check, Facts, soft_flags
from ..errors import ConfigError

__all__ = ["FEATURES", "Verifier", "pair_features"]

# The checks the learned verifier reads (those it was trained with; later checks veto on their own).
FEATURE_CHECKS = ("numbers", "units", "versions", "dates", "negation", "entities", "quoted", "identifiers",
                  "question_word", "language", "order")
FEATURES = (
    "cosine", "word_jaccard", "char3_jaccard", "length_ratio", "log_min_words",
    *(f"fail_{name}" for name in FEATURE_CHECKS),
    "onesided_numbers", "onesided_names", "entity_difference",
)


def _trigrams(facts: Facts) -> set[str]:
    text = " " + " ".join(facts.words) + " "
    return {text[i:i + 3] for i in range(len(text) - 2)}


def _jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def pair_features(a: Facts, b: Facts, similarity: float, checks: tuple[Check, ...] | None = None) -> np.ndarray:
    """Return the scalar features of one pair, in ``FEATURES`` order (float32).

    ``checks`` is ``run_checks(a, b)`` (any checks, by name) when the caller has them.
    """
    words_a, words_b = set(a.words), set(b.words)
    n_a, n_b = len(a.words), len(b.words)
    ran = {c.name: c for c in checks} if checks is not None else {}
    checks = [ran.get(name) or CHECKS[name](a, b) for name in FEATURE_CHECKS]
    return np.array(
        [
            similarity,
            _jaccard(words_a, words_b),
            _jaccard(_trigrams(a), _trigrams(b)),
            min(n_a, n_b) / max(n_a, n_b, 1),
            np.log1p(min(n_a, n_b)),
            *(0.0 if c.passed else 1.0 for c in checks),
            *soft_flags(a, b),
        ],
        dtype=np.float32,
    )


@dataclass(frozen=True)
class Verifier:
    """A logistic regression (``hidden`` empty) or one-hidden-layer MLP over standardised features.

    ``embedding`` says whether ``|u - v|`` and ``u * v`` of the two unit vectors follow the
    scalar features; such a verifier needs both vectors, and falls back to ``fallback``
    (a scalar-only verifier) for pairs without them.
    """

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray              # (n_in,) for logistic regression, (n_hidden,) after an MLP layer
    intercept: float
    hidden_w: np.ndarray | None = None   # (n_in, n_hidden)
    hidden_b: np.ndarray | None = None
    embedding: bool = False
    name: str = "custom"

    @property
    def inputs(self) -> int:
        """Inputs per row: the scalar features, then ``|u - v|`` and ``u * v`` when ``embedding``."""
        return int(self.mean.shape[0])

    @property
    def dimension(self) -> int | None:
        """The embedding dimension this verifier reads (None for a scalar-only verifier)."""
        return (self.inputs - len(FEATURES)) // 2 if self.embedding else None

    def logits(self, scalar: np.ndarray, vecs_a: np.ndarray | None = None, vecs_b: np.ndarray | None = None) -> np.ndarray:
        """Return the raw logit for each row of ``scalar`` (n, len(FEATURES))."""
        x = np.asarray(scalar, dtype=np.float32)
        if self.embedding:
            if vecs_a is None or vecs_b is None:
                raise ConfigError("this verifier needs the query and candidate vectors")
            a, b = np.asarray(vecs_a, dtype=np.float32), np.asarray(vecs_b, dtype=np.float32)
            x = np.concatenate([x, np.abs(a - b), a * b], axis=1)
        return self.forward(x)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Return logits for full input rows (scalar features, then ``|u-v|``, ``u*v`` if ``embedding``)."""
        x = (np.asarray(x, dtype=np.float32) - self.mean) / self.scale
        if self.hidden_w is not None:
            x = np.maximum(x @ self.hidden_w + self.hidden_b, 0.0)
        return x @ self.coef + self.intercept

    def score_rows(self, x: np.ndarray) -> np.ndarray:
        """Return probabilities for full input rows (see ``forward``)."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.forward(x), -40, 40)))

    def score(self, scalar: np.ndarray, vecs_a: np.ndarray | None = None, vecs_b: np.ndarray | None = None) -> np.ndarray:
        """Return the probability that each pair asks the same thing."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(scalar, vecs_a, vecs_b), -40, 40)))

    def to_dict(self) -> dict:
        out = {
            "name": self.name, "features": list(FEATURES), "embedding": self.embedding,
            "mean": self.mean.tolist(), "scale": self.scale.tolist(),
            "coef": self.coef.tolist(), "intercept": float(self.intercept),
        }
        if self.hidden_w is not None:
            out["hidden_w"], out["hidden_b"] = self.hidden_w.tolist(), self.hidden_b.tolist()
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Verifier":
        """Build a verifier from ``to_dict`` output; raise ``ConfigError`` naming what is wrong."""
        try:
            if list(data["features"]) != list(FEATURES):
                raise ConfigError(f"verifier features {data['features']!r} do not match this semcache's {list(FEATURES)!r}")
            arr = lambda key: np.asarray(data[key], dtype=np.float32)  # noqa: E731
            hidden = "hidden_w" in data
            verifier = cls(
                mean=arr("mean"), scale=arr("scale"), coef=arr("coef"), intercept=float(data["intercept"]),
                hidden_w=arr("hidden_w") if hidden else None, hidden_b=arr("hidden_b") if hidden else None,
                embedding=bool(data.get("embedding", False)), name=str(data.get("name", "custom")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"verifier weights are incomplete or malformed: {exc}") from exc
        extra = verifier.inputs - len(FEATURES)
        if verifier.mean.shape != verifier.scale.shape or verifier.mean.ndim != 1:
            raise ConfigError("verifier 'mean'/'scale' do not match its features")
        if (extra != 0 and not verifier.embedding) or (verifier.embedding and (extra <= 0 or extra % 2)):
            raise ConfigError(f"verifier has {verifier.inputs} inputs: {len(FEATURES)} features"
                              + (" plus |u-v| and u*v of one dimension" if verifier.embedding else ""))
        width = verifier.hidden_w.shape[1] if verifier.hidden_w is not None else verifier.inputs
        if verifier.hidden_w is not None and verifier.hidden_w.shape[0] != verifier.inputs:
            raise ConfigError(f"verifier 'hidden_w' has {verifier.hidden_w.shape[0]} rows for {verifier.inputs} inputs")
        if verifier.coef.shape != (width,):
            raise ConfigError(f"verifier 'coef' has shape {verifier.coef.shape}, expected ({width},)")
        return verifier

    @classmethod
    def packaged(cls, name: str = "verifier.json") -> "Verifier":
        """Load weights shipped in ``semcache/data/``."""
        try:
            text = resources.files("semcache").joinpath("data", name).read_text()
        except FileNotFoundError as exc:
            raise ConfigError(f"no packaged verifier named {name!r}") from exc
        return cls.from_dict(json.loads(text))
