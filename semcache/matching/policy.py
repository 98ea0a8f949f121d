"""Decide whether a stored entry answers a new query: a learned match score plus verification.

Pure logic: no disk, network or model (the shipped verifier weights are read once from
package data). ``SemanticCache`` hands the policy the query text (and vector) and the top-k
candidates of one partition; the policy returns a ``Decision`` carrying its evidence.

Two scales, both "higher is closer": ``similarity`` is always the cosine in [-1, 1];
``score`` is the policy's match score -- for the default ("cascade") policy the pair
classifier's probability in [0, 1] that the texts ask the same thing (1 for texts that differ
only in form, 0 under the cosine floor), for ``"learned"`` the cheap verifier's probability, for
``MatchPolicy.cosine`` the cosine itself. ``threshold`` and ``margin`` are on the score scale.

A hit needs every check to pass (``checks.py``: numbers, units, versions, dates, negation,
names, quoted strings, code identifiers, question words, language, order, opposites, time,
operators, measures; plus ``feedback``: the candidate's ``rejected`` texts must not match the
query) *and* ``score >= threshold``. The default threshold and how it was chosen are below and in
benchmarks/results/prompt_quality_choice.json.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ..errors import ConfigError
from .checks import CHECKS, Check, Facts, analyze, canonical, normalize_text, run_checks
from .language import language_of
from .verifier import Verifier, pair_features

__all__ = ["COSINE_THRESHOLD", "DEFAULT_THRESHOLD", "Candidate", "Check", "Decision", "MatchPolicy", "PairModel"]

KINDS = ("cascade", "learned", "cosine")

# The default operating point, chosen on the prompt benchmark's dev split by the rule "the most
# stream hits with wrong hits <= 0.5% of requests (mean of 5 seeds) and a near-miss false-positive
# rate <= 2%" (``python -m benchmarks.prompt_quality --choose``;
# benchmarks/results/prompt_quality_choice.json): the pair model's probability >= 0.998 gives
# 6.7% of the possible hits at 0.25% wrong there; 0.997 gives 13.0% at 0.64%, over the bound.
# The cosine floor (0.5 or 0.7) and dropping the question-word and entity checks moved neither by
# more than 0.1 points; serving only the nearest candidate that passes the checks cut hits from
# 6.7% to 5.5% of the possible for wrong hits from 0.25% to 0.22%: the rule keeps farther ones.
DEFAULT_THRESHOLD = 0.998
# The previous defaults, kept as documented alternatives: the learned verifier at 0.85 gives 2.1%
# of the possible dev hits at 0.54% wrong; cosine with the checks needs 0.99 for 0.59% (0.8%).
LEARNED_THRESHOLD = 0.85
COSINE_THRESHOLD = 0.98
DEFAULT_MARGIN = 0.10
REJECT_BELOW = 0.5
ACCEPT_ABOVE: float | None = None
MAX_PAIRS = 2
NEAREST_ONLY = False
DEFAULT_LANGUAGES = ("en",)
PAIR_FILE = "pair_classifier.npz"
# Checks that veto a hit. All of them by default: each fails only on a contradiction, and
# together they fail 6.2% of QQP duplicates and 25% of non-duplicates (all pairs; entities and
# question words cost most), and the learned score sees them as features too
# (benchmarks/results/match_train.json).
DEFAULT_CHECKS = tuple(CHECKS)
# Candidates below this cosine are not scored by the learned policy (the best one still is, for
# its evidence): of 4,312 held-out QQP pairs under cosine 0.6 none scored above 0.371, so no
# threshold from SCORE_BOUND_BELOW_FLOOR up (margin included) can be reached from there.
SIMILARITY_FLOOR = 0.6
SCORE_BOUND_BELOW_FLOOR = 0.4
# A rejected text this close (character-trigram Jaccard) to the query counts as the same query.
FEEDBACK_JACCARD = 0.9


@dataclass(frozen=True, slots=True)
class Candidate:
    """A stored entry found by the index: its id, stored query text and cosine to the query.

    ``vector`` is the entry's unit-norm embedding (the learned score uses it when the query
    vector is given too). ``rejected`` holds query texts this entry was marked wrong for
    (``cache.feedback``); a query equal to one of them after ``normalize_text``, or nearly
    so, never hits this entry.
    """

    entry_id: int
    query_text: str
    similarity: float
    vector: "np.ndarray | None" = None
    rejected: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Decision:
    """The policy's verdict, with its evidence.

    ``score`` is the policy's match score (higher = more likely the same request); ``hit`` is
    ``score >= threshold`` and every check passed. ``entry_id`` is the chosen entry on a hit,
    else the best-scoring candidate considered (or ``None`` when there was none).
    """

    hit: bool
    entry_id: int | None
    similarity: float
    score: float
    threshold: float
    checks: tuple[Check, ...] = ()
    reason: str = ""

    def as_dict(self) -> dict:
        return {
            "hit": self.hit,
            "entry_id": self.entry_id,
            "similarity": round(self.similarity, 6),
            "score": round(self.score, 6),
            "threshold": self.threshold,
            "reason": self.reason,
            "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks],
        }


def _trigram_set(text: str) -> set[str]:
    padded = f" {normalize_text(text)} "
    return {padded[i:i + 3] for i in range(len(padded) - 2)}


def check_feedback(query_text: str, rejected: Sequence[str]) -> Check:
    """Fail when the query is (nearly) a text this entry was already marked wrong for."""
    if not rejected:
        return Check("feedback", True)
    query = _trigram_set(query_text)
    for text in rejected:
        other = _trigram_set(text)
        if normalize_text(text) == normalize_text(query_text) or len(query & other) / max(len(query | other), 1) >= FEEDBACK_JACCARD:
            return Check("feedback", False, f"marked wrong for {text[:60]!r}")
    return Check("feedback", True)


# Stored entries are candidates again and again; their facts are a pure function of the text.
_analyze = lru_cache(maxsize=16384)(analyze)
_canonical = lru_cache(maxsize=16384)(canonical)


@lru_cache(maxsize=4)
def _packaged(name: str) -> Verifier:
    return Verifier.packaged(name)


class PairModel(Protocol):
    """Score (query, candidate) pairs read together: the probability that each asks the same thing.

    ``semcache.embedding.pair.PairClassifier`` is the shipped one; tests pass tiny functions."""

    model_id: str

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray: ...


@dataclass(frozen=True)
class MatchPolicy:
    """A hit needs a match score at or above ``threshold`` and every check to pass.

    Kinds (``kind``), each with its own score scale:

    - ``"cascade"`` (the default): the cheap cosine decides the clear cases and a pair model
      that reads both texts (``pair``) the rest. Under ``reject_below`` a candidate is hopeless
      (score 0, no model call); at or over ``accept_above`` one that passes every check is a hit
      (score 1); in between -- the uncertain band -- the ``max_pairs`` nearest candidates that
      pass every check go to the pair model in one call and its probability is the score.
    - ``"learned"``: a logistic regression over cheap pair features (``verifier.py``).
    - ``"cosine"``: the cosine itself (``MatchPolicy.cosine(t)``, the baseline).

    ``nearest_only``: only the nearest candidate that passes every check may hit (a farther one
    is never served in its place). ``languages``: the languages whose queries the semantic tier
    answers (``()``: every language); any other query is answered by the exact tier only, since
    a model that cannot read a language cannot tell its paraphrases from its near misses.
    ``margin`` is how far below the threshold (on the score scale) a candidate that passes
    every check may be and still be served as *stale* when upstream fails.
    """

    threshold: float = DEFAULT_THRESHOLD
    margin: float = DEFAULT_MARGIN
    kind: str = "cascade"
    checks: tuple[str, ...] = DEFAULT_CHECKS
    verifier: Verifier | None = field(default=None, repr=False, compare=False)
    verifier_name: str = "verifier.json"
    pair: PairModel | None = field(default=None, repr=False, compare=False)
    reject_below: float = REJECT_BELOW
    accept_above: float | None = ACCEPT_ABOVE
    max_pairs: int = MAX_PAIRS
    nearest_only: bool = NEAREST_ONLY
    languages: tuple[str, ...] = DEFAULT_LANGUAGES

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"match policy 'kind' must be one of {', '.join(KINDS)}, got {self.kind!r}")
        low = -1.0 if self.kind == "cosine" else 0.0
        if not low <= self.threshold <= 1.0:
            raise ConfigError(f"match 'threshold' must be in [{low:g}, 1] for a {self.kind} policy, got {self.threshold!r}")
        if not 0.0 <= self.margin <= 1.0:
            raise ConfigError(f"match 'margin' must be in [0, 1], got {self.margin!r}")
        if not -1.0 <= self.reject_below <= 1.0 or (self.accept_above is not None and not self.reject_below <= self.accept_above <= 1.0):
            raise ConfigError(f"match band must satisfy -1 <= reject_below <= accept_above <= 1, got "
                              f"{self.reject_below!r}, {self.accept_above!r}")
        if not isinstance(self.max_pairs, int) or self.max_pairs < 1:
            raise ConfigError(f"match 'max_pairs' must be a positive integer, got {self.max_pairs!r}")
        unknown = [name for name in self.checks if name not in CHECKS]
        if unknown:
            raise ConfigError(f"match 'checks' has unknown names {unknown}; known: {sorted(CHECKS)}")
        object.__setattr__(self, "languages", tuple(self.languages))
        if self.kind == "learned" and self.verifier is None:
            object.__setattr__(self, "verifier", _packaged(self.verifier_name))

    @classmethod
    def cosine(cls, threshold: float = COSINE_THRESHOLD, margin: float = 0.03, checks: Sequence[str] = (),
               languages: Sequence[str] = ()) -> "MatchPolicy":
        """Return the plain-cosine baseline: score = cosine, no checks unless named, every language."""
        return cls(threshold=threshold, margin=margin, kind="cosine", checks=tuple(checks), languages=tuple(languages))

    @classmethod
    def learned(cls, threshold: float = LEARNED_THRESHOLD, **options) -> "MatchPolicy":
        """Return the previous default: the logistic-regression verifier over cheap pair features."""
        return cls(threshold=threshold, kind="learned", **options)

    @property
    def needs_pair(self) -> bool:
        """Whether this policy needs a pair model attached (``with_pair``) before it can decide."""
        return self.kind == "cascade" and self.pair is None

    def check_dimension(self, dim: int) -> None:
        """Raise ``ConfigError`` when this policy cannot score vectors of ``dim`` (a verifier trained
        for another embedder); the cache checks it once at open, not on every lookup."""
        expected = self.verifier.dimension if self.kind == "learned" and self.verifier is not None else None
        if expected is not None and expected != dim:
            raise ConfigError(f"the match policy's verifier reads {expected}-dimensional vectors, the embedder makes {dim}")

    def with_threshold(self, threshold: float) -> "MatchPolicy":
        return replace(self, threshold=float(threshold))

    def with_verifier(self, verifier: Verifier) -> "MatchPolicy":
        return replace(self, verifier=verifier, verifier_name="")

    def with_pair(self, pair: PairModel) -> "MatchPolicy":
        return replace(self, pair=pair)

    def reads(self, text: str) -> bool:
        """Whether the semantic tier may answer ``text`` (its language is one of ``languages``)."""
        return not self.languages or language_of(text) in self.languages

    # -- scoring -----------------------------------------------------------------------

    def _learned_scores(self, facts: list[tuple[Facts, Facts]], sims: np.ndarray, vecs_a, vecs_b, checks=None) -> np.ndarray:
        checks = checks or [None] * len(facts)
        scalar = np.stack([pair_features(a, b, float(s), c) for (a, b), s, c in zip(facts, sims, checks)])
        if self.verifier.embedding and (vecs_a is None or vecs_b is None):
            raise ConfigError("this policy's verifier needs the query and candidate vectors")
        return self.verifier.score(scalar, vecs_a, vecs_b).astype(np.float64)

    def _cascade_scores(self, texts_a: Sequence[str], texts_b: Sequence[str], sims: np.ndarray, passed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return (scores, asked): the pair model's probability in the band, 0 under it, 1 over it.

        ``passed`` marks the pairs whose checks passed; only those reach the pair model.
        """
        if self.pair is None:
            raise ConfigError("a cascade match policy needs a pair model: MatchPolicy().with_pair(PairClassifier())")
        sims = np.asarray(sims, dtype=np.float64)
        scores = np.zeros(len(sims))
        # Confident without the model: the same words once case, punctuation, contractions, articles
        # and politeness are set aside, or a cosine at or over accept_above (both after every check).
        same = np.array([_canonical(a) == _canonical(b) for a, b in zip(texts_a, texts_b)], dtype=bool)
        over = sims >= self.accept_above if self.accept_above is not None else np.zeros(len(sims), bool)
        confident = passed & (same | over)
        scores[confident] = 1.0
        asked = passed & ~confident & (sims >= self.reject_below)
        if asked.any():
            index = np.nonzero(asked)[0]
            scores[index] = self.pair.score([(texts_a[i], texts_b[i]) for i in index])
        return scores, asked

    def pair_features(self, texts_a: Sequence[str], texts_b: Sequence[str], sims: np.ndarray) -> np.ndarray:
        """Return the verifier's scalar features for each pair (n, len(verifier.FEATURES))."""
        return np.stack([pair_features(analyze(a), analyze(b), float(s)) for a, b, s in zip(texts_a, texts_b, sims)])

    def score_pairs(self, texts_a: Sequence[str], texts_b: Sequence[str], sims, vecs_a=None, vecs_b=None, *,
                    apply_checks: bool = True) -> np.ndarray:
        """Return the match score of each pair (``a`` the stored text, ``b`` the query); with
        ``apply_checks`` a pair failing a check scores the floor.

        The floor is 0 for learned and cascade policies and -1 for cosine, so ``score >= threshold``
        on the result is exactly the policy's hit rule (for evaluation and calibration). Pairs
        in a language the policy does not read score the floor too.
        """
        if not len(texts_a) == len(texts_b) == len(sims):
            raise ConfigError("score_pairs needs texts_a, texts_b and sims of one length")
        cache: dict[str, Facts] = {}
        facts = [(cache.get(a) or cache.setdefault(a, analyze(a)), cache.get(b) or cache.setdefault(b, analyze(b))) for a, b in zip(texts_a, texts_b)]
        names = self.checks if apply_checks else ()
        passed = np.array([all(c.passed for c in run_checks(a, b, names)) for a, b in facts], dtype=bool)
        # A stored text the policy does not read was never indexed, and such a query never looks.
        passed &= np.array([self.reads(a) and self.reads(b) for a, b in zip(texts_a, texts_b)], dtype=bool)
        floor = -1.0 if self.kind == "cosine" else 0.0
        if self.kind == "cascade":
            scores, _ = self._cascade_scores(texts_b, texts_a, sims, passed)
        elif self.kind == "cosine":
            scores = np.asarray(sims, dtype=np.float64)
        else:
            scores = self._learned_scores(facts, np.asarray(sims), vecs_a, vecs_b)
        return np.where(passed, scores, floor)

    def _worth_scoring(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        """Drop candidates that cannot reach the stale band; keep the best one for its evidence."""
        if self.kind == "cosine":
            floor = self.threshold - self.margin
        elif self.kind == "cascade":
            floor = self.reject_below
        elif self.threshold - self.margin >= SCORE_BOUND_BELOW_FLOOR:
            floor = SIMILARITY_FLOOR
        else:
            return list(candidates)
        ranked = sorted(candidates, key=lambda c: c.similarity, reverse=True)
        return [c for c in ranked if c.similarity >= floor] or ranked[:1]

    def decide(self, query_text: str, candidates: Sequence[Candidate], query_vector: "np.ndarray | None" = None) -> Decision:
        """Return a hit for the best-scoring candidate that clears the threshold and every check.

        Without a hit, return the best-scoring candidate's verdict (the stale-if-error
        candidate when its score is within ``margin`` and its checks passed).
        """
        if not self.reads(query_text):
            return Decision(False, None, -1.0, -1.0, self.threshold, reason="language-not-read")
        candidates = self._worth_scoring(candidates)
        if not candidates:
            return Decision(False, None, -1.0, -1.0, self.threshold, reason="no-candidates")
        # The learned score's features need every check; the others run only their own.
        names = tuple(CHECKS) if self.kind == "learned" else self.checks
        analyse = _analyze if names else (lambda text: None)
        query = analyse(query_text)
        facts = [(query, analyse(c.query_text)) for c in candidates]
        all_checks = [run_checks(a, b, names) for a, b in facts]
        checks = [tuple(c for c in ran if c.name in self.checks) + (check_feedback(query_text, cand.rejected),)
                  for ran, cand in zip(all_checks, candidates)]
        passed = np.array([all(c.passed for c in cs) for cs in checks], dtype=bool)
        sims = np.array([c.similarity for c in candidates], dtype=np.float64)
        if self.kind == "cascade":
            if self.nearest_only:  # only the nearest candidate that passes may answer
                passed &= np.cumsum(passed) <= 1
            same = np.array([_canonical(query_text) == _canonical(c.query_text) for c in candidates], dtype=bool)
            band = passed & (sims >= self.reject_below) & ~same
            if self.accept_above is not None:
                band &= sims < self.accept_above
            limit = np.cumsum(band) > self.max_pairs  # candidates come nearest first
            scores, _ = self._cascade_scores([query_text] * len(candidates), [c.query_text for c in candidates], sims,
                                             passed & ~limit)
        elif self.kind == "cosine":
            scores = sims
        else:
            vecs_a = vecs_b = None
            if self.verifier.embedding:
                if query_vector is None or any(c.vector is None for c in candidates):
                    raise ConfigError("the learned policy needs query_vector and every candidate's vector")
                vecs_b = np.stack([np.asarray(c.vector, dtype=np.float32) for c in candidates])
                vecs_a = np.broadcast_to(np.asarray(query_vector, dtype=np.float32), vecs_b.shape)
            scores = self._learned_scores(facts, sims, vecs_a, vecs_b, all_checks)
        decisions = []
        for candidate, ran, ok, score in zip(candidates, checks, passed, scores):
            failed = [c.name for c in ran if not c.passed]
            hit = bool(score >= self.threshold) and not failed and bool(ok)
            if failed:
                reason = "check-failed:" + ",".join(failed)
            else:
                reason = "hit" if hit else ("farther-than-nearest" if not ok else "below-threshold")
            decisions.append(Decision(hit, candidate.entry_id, float(candidate.similarity), float(score), self.threshold, ran, reason))
        hits = [d for d in decisions if d.hit]
        pool = hits or [d for d in decisions if d.reason in ("below-threshold", "hit")] or decisions
        return max(pool, key=lambda d: (d.score, d.similarity))

    # -- persistence ---------------------------------------------------------------------

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "threshold": self.threshold, "margin": self.margin, "checks": list(self.checks),
               "languages": list(self.languages)}
        if self.kind == "learned":
            out["verifier"] = self.verifier_name or self.verifier.to_dict()
        if self.kind == "cascade":
            out.update(pair=getattr(self.pair, "model_id", PAIR_FILE), reject_below=self.reject_below,
                       accept_above=self.accept_above, max_pairs=self.max_pairs, nearest_only=self.nearest_only)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "MatchPolicy":
        """Build a policy from ``to_dict`` output; a missing ``kind`` means cosine (older files).

        A cascade policy comes back without its pair model: the cache attaches the shipped one.
        """
        if not isinstance(data, dict):
            raise ConfigError(f"a match policy must be a JSON object, got {type(data).__name__}")
        kind = data.get("kind", "cosine")
        try:
            threshold = float(data["threshold"])
            margin = float(data.get("margin", 0.03 if kind == "cosine" else DEFAULT_MARGIN))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"policy needs a numeric 'threshold' (and 'margin'), got {data!r}") from exc
        checks = tuple(data.get("checks", () if kind == "cosine" else DEFAULT_CHECKS))
        languages = tuple(data.get("languages", () if kind == "cosine" else DEFAULT_LANGUAGES))
        common = dict(threshold=threshold, margin=margin, kind=kind, checks=checks, languages=languages)
        if kind == "cascade":
            try:
                band = dict(reject_below=float(data.get("reject_below", REJECT_BELOW)),
                            accept_above=None if data.get("accept_above") is None else float(data["accept_above"]),
                            max_pairs=int(data.get("max_pairs", MAX_PAIRS)), nearest_only=bool(data.get("nearest_only", NEAREST_ONLY)))
            except (TypeError, ValueError) as exc:
                raise ConfigError(f"cascade policy band must be numbers, got {data!r}") from exc
            return cls(**common, **band)
        if kind != "learned":
            return cls(**common)
        spec = data.get("verifier", "verifier.json")
        if isinstance(spec, str):
            return cls(**common, verifier_name=spec)
        return cls(**common, verifier=Verifier.from_dict(spec), verifier_name="")

    @classmethod
    def load(cls, path: str | Path) -> "MatchPolicy":
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError as exc:
            raise ConfigError(f"policy file {str(path)!r} does not exist") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"policy file {str(path)!r} is not valid JSON: {exc}") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")
