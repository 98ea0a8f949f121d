"""Evaluate a match policy on labelled pairs and on replayed streams (``semcache eval``).

``eval pairs``: would ``text_b`` hit an entry stored for ``text_a`` in an otherwise empty cache?
``eval stream``: replay rows through a fresh cache; on a miss store the row with its group as
the answer, so a hit is wrong when it returns another group.
Texts are embedded in batches up front; the decisions are the cache's own.
"""

from __future__ import annotations

import json
import random
import tempfile
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from ..engine import SemanticCache
from ..engine.learning import LearningSettings
from ..matching.policy import Candidate, MatchPolicy
from .data import parse_label, progress

__all__ = ["PrecomputedEmbedder", "embed_unique", "eval_pairs", "eval_stream", "iter_jsonl", "threshold_scores"]

_BATCH = 256


def embed_unique(embedder, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Embed each distinct text once, in batches; return text -> vector."""
    unique = list(dict.fromkeys(texts))
    vectors: dict[str, np.ndarray] = {}
    with progress(len(unique), "embedding") as bar:
        for start in range(0, len(unique), _BATCH):
            chunk = unique[start:start + _BATCH]
            for text, vector in zip(chunk, embedder.embed(chunk)):
                vectors[text] = vector
            bar.update(len(chunk))
    return vectors


def _normal(text: str) -> str:
    return " ".join(text.split())


def eval_pairs(rows: Sequence[dict], *, embedder, policy: MatchPolicy, text_a: str = "text_a", text_b: str = "text_b",
               label: str | None = "label") -> tuple[dict, list[dict]]:
    """Return (summary, one decision per pair in input order)."""
    vectors = embed_unique(embedder, [r[text_a] for r in rows] + [r[text_b] for r in rows])
    labelled = label is not None and all(r.get(label) not in (None, "") for r in rows)
    decisions: list[dict] = []
    tp = fp = fn = tn = 0
    with progress(len(rows), "scoring pairs") as bar:
        for i, row in enumerate(rows):
            a, b = str(row[text_a]), str(row[text_b])
            va, vb = vectors[row[text_a]], vectors[row[text_b]]
            if _normal(a) == _normal(b):  # the exact tier answers before any policy
                out = {"score": 1.0, "hit": True, "similarity": 1.0, "reason": "exact", "failed_checks": []}
            else:
                d = policy.decide(b, [Candidate(0, a, float(va @ vb))])
                out = {"score": round(d.score, 6), "hit": bool(d.hit), "similarity": round(d.similarity, 6), "reason": d.reason,
                       "failed_checks": [c.name for c in d.checks if not c.passed]}
            decisions.append(out)
            if labelled:
                y = parse_label(row[label], f"row {i + 1}")
                tp += out["hit"] and y
                fp += out["hit"] and not y
                fn += (not out["hit"]) and y
                tn += (not out["hit"]) and not y
            bar.update(1)
    hits = sum(d["hit"] for d in decisions)
    summary: dict[str, Any] = {"n": len(rows), "hits": hits, "precision": None, "recall": None, "f1": None,
                               "false_positive_rate": None, "policy": policy.to_dict()}
    if labelled:
        precision = tp / (tp + fp) if tp + fp else None
        recall = tp / (tp + fn) if tp + fn else None
        f1 = 2 * precision * recall / (precision + recall) if precision and recall else (0.0 if precision is not None and recall is not None else None)
        summary.update(precision=_r(precision), recall=_r(recall), f1=_r(f1),
                       false_positive_rate=_r(fp / (fp + tn) if fp + tn else None), positives=tp + fn, negatives=fp + tn)
    return summary, decisions


def _r(x: float | None) -> float | None:
    return None if x is None else round(x, 6)


class PrecomputedEmbedder:
    """Serve vectors computed in one batched pass (replays never embed one text at a time)."""

    def __init__(self, inner, vectors: dict[str, np.ndarray]) -> None:
        self.inner, self.vectors = inner, vectors
        self.model_id, self.dim = inner.model_id, inner.dim

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self.inner.embed(missing)))
        return np.stack([self.vectors[t] for t in texts]) if texts else np.zeros((0, self.dim), np.float32)


def eval_stream(rows: Sequence[dict], *, embedder, policy: MatchPolicy, text: str = "text", group: str = "group",
                shuffle_seed: int | None = None, seeds: Sequence[int] | None = None, examples: int = 0,
                learning: LearningSettings | None = None) -> dict:
    """Replay rows through a fresh temporary cache; return hit and wrong-hit counts and rates.

    One replay in file order (or ``shuffle_seed``'s order); with ``seeds``, one replay per seed
    and their ``mean`` and ``worst`` (the seed with the most wrong hits) -- a single order of a
    few hundred requests moves the wrong-hit rate by a factor of two. ``examples``: keep up to
    that many wrong hits per replay (query, the stored text that answered, both groups).
    ``learning``: the cache's learning settings (None: the shipped ones, answer groups on).
    """
    vectors = embed_unique(embedder, [str(r[text]) for r in rows])
    if seeds is None:
        return _replay(rows, vectors, embedder, policy, text, group, shuffle_seed, examples, learning)
    runs = [_replay(rows, vectors, embedder, policy, text, group, seed, examples, learning) for seed in seeds]
    return summarize_runs(runs, policy)


_RATES = ("hit_rate", "wrong_rate", "recall_of_possible", "precision")
_COUNTS = ("hits", "wrong_hits", "possible_hits", "correct_hits", "exact_hits")


def summarize_runs(runs: Sequence[dict], policy: MatchPolicy) -> dict:
    """Return the runs of several seeds with their mean and worst (most wrong hits)."""
    mean = {"n": runs[0]["n"]}
    for name in _COUNTS + _RATES:
        values = [r[name] for r in runs if r[name] is not None]
        mean[name] = _r(sum(values) / len(values)) if values else None
    worst = max(runs, key=lambda r: (r["wrong_rate"], -r["hit_rate"]))
    return {"seeds": [r["seed"] for r in runs], "mean": mean, "worst": {k: v for k, v in worst.items() if k != "policy"},
            "runs": [{k: v for k, v in r.items() if k not in ("policy", "wrong_examples")} for r in runs],
            "wrong_examples": [e for r in runs for e in r.get("wrong_examples", [])], "policy": policy.to_dict()}


def _replay(rows, vectors, embedder, policy: MatchPolicy, text: str, group: str, seed: int | None, examples: int,
            learning: LearningSettings | None = None) -> dict:
    order = list(range(len(rows)))
    if seed is not None:
        random.Random(seed).shuffle(order)
    seen: set[str] = set()
    hits = wrong = possible = exact = 0
    wrong_examples: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="semcache-eval-") as directory:
        cache = SemanticCache(directory, embedder=PrecomputedEmbedder(embedder, vectors), policy=policy,
                              ttl=None, max_entries=None, max_bytes=None, embed_cache_size=0, flush_interval=None,
                              learning=learning)
        try:
            with progress(len(order), "replaying") as bar:
                for i in order:
                    query, answer = str(rows[i][text]), str(rows[i][group])
                    possible += answer in seen
                    hit = cache.lookup(query)
                    if hit is None:
                        cache.insert(query, answer)
                        seen.add(answer)
                    else:
                        hits += 1
                        exact += hit.kind == "exact"
                        if hit.response != answer:
                            wrong += 1
                            if len(wrong_examples) < examples:
                                wrong_examples.append({"query": query, "answered_by": hit.entry.query_text, "group": answer,
                                                       "answer_group": hit.response, "similarity": round(hit.similarity, 4),
                                                       "score": round(hit.decision.score, 4) if hit.decision else None})
                    bar.update(1)
        finally:
            cache.close()
    n = len(rows)
    out = {"n": n, "seed": seed, "hits": hits, "hit_rate": _r(hits / n), "wrong_hits": wrong, "wrong_rate": _r(wrong / n),
           "possible_hits": possible, "correct_hits": hits - wrong, "exact_hits": exact,
           "recall_of_possible": _r((hits - wrong) / possible) if possible else None,
           "precision": _r((hits - wrong) / hits) if hits else None, "policy": policy.to_dict()}
    if examples:
        out["wrong_examples"] = wrong_examples
    return out


def iter_jsonl(decisions: Iterable[dict]) -> Iterator[str]:
    for d in decisions:
        yield json.dumps(d) + "\n"


_SCORED = ("hit", "below-threshold", "exact")  # decided by the score; any other reason refused the pair before it


def threshold_scores(decisions: Sequence[dict]) -> np.ndarray:
    """Return each pair's score as the threshold sees it: a pair a check or the language refused
    scores -1 (the floor of the cosine scale), so ``score >= t`` is the hit rule at any ``t``."""
    return np.array([d["score"] if d["reason"] in _SCORED else -1.0 for d in decisions], dtype=np.float64)
