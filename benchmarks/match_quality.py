"""Measure match quality: pair metrics, a cache-stream replay, hard negatives, decide() cost.

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.match_quality --pairs /work/shared/data/qqp_dev.jsonl \\
        --paraphrases /work/shared/data/paraphrases_999.jsonl
    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.match_quality            # hard negatives only
    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.match_quality --smoke    # seconds, for tests

Labelled pairs are split by question exactly as in train_verifier (group_split, seed 0,
20% held out) and only the held-out part is reported. The stream replay takes the held-out
questions, groups them into intents (connected components over duplicate edges), replays
them in a random order against a growing cache (store on miss, top-5 candidates by cosine,
``MatchPolicy.decide``), and counts a hit as wrong when the entry belongs to another intent.
Writes benchmarks/results/match_quality.json and match_quality.png.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from benchmarks.train_verifier import embed_cached, load_dataset, load_embedder
from semcache.matching.metrics import best_f1, pr_points, roc_auc, threshold_for_precision
from semcache.tools.data import group_split, intent_groups, read_pairs
from semcache.matching.policy import Candidate, MatchPolicy

ROOT = Path(__file__).resolve().parent.parent
HARD_NEGATIVES = ROOT / "benchmarks/data/hard_negatives.jsonl"
SMOKE_PAIRS = [  # (a, b, label): enough to exercise every code path in seconds
    ("How do I learn Python?", "What is the best way to learn Python?", 1),
    ("How do I learn Python?", "How do I learn Java?", 0),
    ("What is 15% of 240?", "What is 15% of 340?", 0),
    ("What is 15% of 240?", "Calculate fifteen percent of 240.", 1),
    ("Why is the sky blue?", "What makes the sky blue?", 1),
    ("Why is the sky blue?", "Why is the sea salty?", 0),
    ("Who won the World Cup in 2018?", "Which country won the 2018 World Cup?", 1),
    ("Who won the World Cup in 2018?", "Who won the World Cup in 2014?", 0),
]


@lru_cache(maxsize=1)
def policies() -> dict[str, MatchPolicy]:
    """The shipped default (the cascade with its pair classifier), the previous default and the baselines."""
    from semcache.embedding.pair import PairClassifier

    default = MatchPolicy().with_pair(PairClassifier())
    return {
        "default": default,
        "learned (previous default)": MatchPolicy.learned(),
        "cosine": MatchPolicy.cosine(),
        "cosine+checks": MatchPolicy.cosine(checks=default.checks),
    }


def at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    hit = scores >= threshold
    tp, fp = int((hit & (labels == 1)).sum()), int((hit & (labels == 0)).sum())
    return {"threshold": threshold, "precision": tp / max(tp + fp, 1), "recall": tp / max(int(labels.sum()), 1),
            "fpr": fp / max(int((labels == 0).sum()), 1), "accept_rate": float(hit.mean())}


def pair_report(name: str, policy: MatchPolicy, data: dict, fit, held) -> tuple[dict, np.ndarray]:
    scores = policy.score_pairs(data["texts_a"], data["texts_b"], data["sims"], data["va"], data["vb"])
    y = data["labels"]
    f1, f1_t = best_f1(scores[held], y[held])
    out = {"roc_auc": roc_auc(scores[held], y[held]), "best_f1": f1, "best_f1_threshold": f1_t,
           "default": at_threshold(scores[held], y[held], policy.threshold)}
    for target in (0.85, 0.90, 0.95):  # thresholds chosen on the fit part, reported on held-out
        t = threshold_for_precision(scores[fit], y[fit], target, min_accepted=50)
        out[f"p{round(target * 100)}_threshold_from_fit"] = at_threshold(scores[held], y[held], round(t, 4))
    print(f"{name:14} AUC {out['roc_auc']:.3f}  F1 {f1:.3f}@{f1_t:.3f}  default P {out['default']['precision']:.3f} R {out['default']['recall']:.3f}")
    return out, scores


def stream_replay(policy: MatchPolicy, questions: list[str], vectors: np.ndarray, group: dict[str, int], k: int = 5, seed: int = 0) -> dict:
    """Replay questions in a seeded random order against a growing cache; return hit and wrong-hit rates."""
    order = list(range(len(questions)))
    random.Random(seed).shuffle(order)
    stored = np.zeros((len(order), vectors.shape[1]), dtype=np.float32)
    stored_q: list[int] = []
    hits = wrong = 0
    latencies = []
    examples = []
    for i in order:
        if stored_q:
            sims = stored[: len(stored_q)] @ vectors[i]
            top = np.argsort(-sims)[:k] if len(sims) > k else np.argsort(-sims)
            candidates = [Candidate(j, questions[stored_q[j]], float(sims[j]), stored[j]) for j in top]
            started = time.perf_counter()
            decision = policy.decide(questions[i], candidates, vectors[i])
            latencies.append(time.perf_counter() - started)
            if decision.hit:
                hits += 1
                matched = questions[stored_q[decision.entry_id]]
                if group[matched] != group[questions[i]]:
                    wrong += 1
                    if len(examples) < 15:
                        examples.append({"query": questions[i], "matched": matched, "score": round(decision.score, 3)})
                continue
        stored[len(stored_q)] = vectors[i]
        stored_q.append(i)
    n = len(order)
    intents = len(set(group[q] for q in questions))
    return {"requests": n, "intents": intents, "max_possible_hit_rate": (n - intents) / n, "hits": hits,
            "hit_rate": hits / n, "wrong_hits": wrong, "wrong_hit_rate": wrong / n,
            "wrong_share_of_hits": wrong / max(hits, 1),
            "decide_p50_ms": 1e3 * statistics.median(latencies) if latencies else None, "wrong_examples": examples}


def suite_report(policy: MatchPolicy, rows: list[dict], vectors: dict[str, np.ndarray]) -> dict:
    a = [r["text_a"] for r in rows]
    b = [r["text_b"] for r in rows]
    va, vb = np.stack([vectors[t] for t in a]), np.stack([vectors[t] for t in b])
    sims = np.einsum("ij,ij->i", va, vb)
    scores = policy.score_pairs(a, b, sims, va, vb)
    y = np.array([r["label"] for r in rows])
    out = at_threshold(scores, y, policy.threshold)
    out["by_kind"] = {}
    for kind in sorted({r["kind"] for r in rows if "kind" in r}):
        idx = np.array([i for i, r in enumerate(rows) if r.get("kind") == kind])
        out["by_kind"][kind] = {k: round(v, 3) for k, v in at_threshold(scores[idx], y[idx], policy.threshold).items() if k in ("recall", "fpr")}
    out["false_positives"] = [{"a": a[i], "b": b[i], "kind": rows[i].get("kind"), "score": round(float(scores[i]), 3)}
                              for i in np.nonzero((scores >= policy.threshold) & (y == 0))[0]]
    return out


def decide_cost(policy: MatchPolicy, questions: list[str], vectors: np.ndarray, k: int = 5, n: int = 300) -> float:
    """Return decide()'s p50 in ms with k candidates drawn from the nearest stored questions."""
    rng = np.random.default_rng(0)
    times = []
    for i in rng.choice(len(questions), size=min(n, len(questions)), replace=False):
        sims = vectors @ vectors[i]
        sims[i] = -2
        top = np.argsort(-sims)[:k]
        candidates = [Candidate(int(j), questions[j], float(sims[j]), vectors[j]) for j in top]
        started = time.perf_counter()
        policy.decide(questions[i], candidates, vectors[i])
        times.append(time.perf_counter() - started)
    return 1e3 * statistics.median(times)


def plot(curves: dict, marks: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, pts in curves.items():
        left.plot(pts["recall"], pts["precision"], label=name)
        right.plot(pts["accept_rate"], pts["precision"], label=name)
    for name, (recall, precision, accept) in marks.items():
        left.scatter([recall], [precision], marker="o", zorder=5)
        left.annotate(f"{name} default", (recall, precision), textcoords="offset points", xytext=(5, 5), fontsize=8)
        right.scatter([accept], [precision], marker="o", zorder=5)
    left.set(xlabel="recall", ylabel="precision", title="Held-out QQP pairs (split by question)", ylim=(0.3, 1.01))
    right.set(xlabel="hit rate (share of pairs accepted)", ylabel="precision", title="Precision vs hit rate", ylim=(0.3, 1.01))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", help="labelled pairs (.jsonl/.csv), e.g. /work/shared/data/qqp_dev.jsonl")
    parser.add_argument("--hard-negatives", default=str(HARD_NEGATIVES))
    parser.add_argument("--paraphrases", help="all-positive pairs (e.g. paraphrases_999.jsonl): recall at the default")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/semcache_match"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/match_quality.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "benchmarks/results/match_quality.png")
    parser.add_argument("--smoke", action="store_true", help="tiny built-in pairs, no plot; seconds")
    parser.add_argument("--stream-limit", type=int, default=0, help="replay at most this many questions (0 = all held-out)")
    args = parser.parse_args(argv)

    embedder = load_embedder()
    result: dict = {"policies": {n: p.to_dict() | {"verifier": None} for n, p in policies().items()}}
    if args.smoke:
        pairs = SMOKE_PAIRS
        texts = sorted({t for a, b, _ in pairs for t in (a, b)})
        vecs = np.asarray(embedder.embed(texts), dtype=np.float32)
        vec = dict(zip(texts, vecs))
        rows = [{"text_a": a, "text_b": b, "label": y, "kind": "smoke"} for a, b, y in pairs]
        result["smoke"] = {n: suite_report(p, rows, vec) for n, p in policies().items()}
        groups = {t: i for i, t in enumerate(texts)}
        result["smoke_stream"] = stream_replay(policies()["default"], texts, vecs, groups)
        print(json.dumps(result["smoke"]["default"], indent=1)[:400])
        return
    curves, marks = {}, {}
    if args.pairs:
        data = load_dataset(args.pairs, args.cache_dir, embedder)
        fit, held = (np.array(p) for p in group_split(data["pairs"], 0.2, 0))
        result["pairs"] = {"path": Path(args.pairs).name, "held_out_pairs": int(len(held)), "held_out_positives": int(data["labels"][held].sum())}
        for name, policy in policies().items():
            report, scores = pair_report(name, policy, data, fit, held)
            result["pairs"][name] = report
            curves[name] = pr_points(scores[held], data["labels"][held])
            d = report["default"]
            marks[name] = (d["recall"], d["precision"], d["accept_rate"])
        held_q = sorted({t for i in held for t in data["pairs"][i][:2]})
        group = intent_groups(data["pairs"], held)
        if args.stream_limit:
            held_q = random.Random(1).sample(held_q, min(args.stream_limit, len(held_q)))
        row = {t: i for i, t in enumerate(data["texts"])}
        qvec = data["vectors"][[row[q] for q in held_q]]
        result["stream"] = {}
        for name, policy in policies().items():
            result["stream"][name] = stream_replay(policy, held_q, qvec, group)
            s = result["stream"][name]
            print(f"stream {name:14} hit rate {s['hit_rate']:.3f} wrong {s['wrong_hit_rate']:.4f} of requests (max hit rate {s['max_possible_hit_rate']:.3f})")
        result["decide_p50_ms_k5"] = decide_cost(policies()["default"], held_q, qvec)
        # The wrong hits' texts are the user's data (QQP's terms keep it out of the repository):
        # they go to the uncommitted logs folder, for reading by eye.
        examples = {name: stream.pop("wrong_examples") for name, stream in result["stream"].items()}
        log = args.out.parent / "logs" / "match_quality_wrong_hits.json"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(json.dumps(examples, indent=2) + "\n")
    rows = [json.loads(line) for line in Path(args.hard_negatives).read_text().splitlines() if line.strip()]
    suite_texts = sorted({r[k] for r in rows for k in ("text_a", "text_b")})
    vec = dict(zip(suite_texts, embed_cached(suite_texts, args.cache_dir, embedder)))
    result["hard_negatives"] = {"path": Path(args.hard_negatives).name, "pairs": len(rows)}
    for name, policy in policies().items():
        rep = suite_report(policy, rows, vec)
        result["hard_negatives"][name] = rep
        print(f"hard negatives {name:14} FPR {rep['fpr']:.3f} recall {rep['recall']:.3f}")
    if args.paraphrases:
        para = read_pairs(args.paraphrases)
        ptexts = sorted({t for a, b, _ in para for t in (a, b)})
        pvec = dict(zip(ptexts, embed_cached(ptexts, args.cache_dir, embedder)))
        prow = [{"text_a": a, "text_b": b, "label": y} for a, b, y in para]
        result["paraphrases"] = {n: {"recall": suite_report(p, prow, pvec)["recall"]} for n, p in policies().items()}
        print("paraphrases recall", {n: round(v["recall"], 3) for n, v in result["paraphrases"].items()})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, default=float) + "\n")
    if curves:
        plot(curves, marks, args.plot)


if __name__ == "__main__":
    main()
