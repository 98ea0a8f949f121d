"""Compare embedding adapters end to end, the way the shipped one was chosen.

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.compare_adapters --pairs ../shared/data/qqp_dev.jsonl \\
        --paraphrases ../shared/data/paraphrases_999.jsonl --adapter default --adapter /tmp/other.npz

For each adapter: embed the QQP pairs with it, fit the scalar verifier on the pairs no adapter
saw (``train_embedder``'s "verify" part), pick the threshold by the shipped rule (the lowest on
``--grid`` whose stream replay of the verify part keeps wrong hits <= 0.5% of requests), and
report on the held-out part at that threshold and at ``--also``: pair precision/recall, stream
hit and wrong-hit rates, the hard-negative suite and the paraphrases. Writes
benchmarks/results/adapter_variants.json. An adapter is "default", "none" or an .npz path.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from benchmarks.match_quality import stream_replay, suite_report
from benchmarks.train_embedder import splits
from benchmarks.train_verifier import VARIANTS, embed_cached, fit_variant, load_dataset, summarize
from semcache.tools.data import intent_groups, read_pairs
from semcache.matching.policy import DEFAULT_CHECKS, MatchPolicy
from semcache.matching.verifier import FEATURES

ROOT = Path(__file__).resolve().parent.parent
WRONG_BUDGET = 0.005


def suite_rows(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def evaluate(adapter: str, args) -> dict:
    from semcache.embedding.sentence import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder(adapter=None if adapter == "none" else adapter)
    data = load_dataset(args.pairs, args.cache_dir, embedder)
    parts = splits(data["pairs"])
    fit, held = np.array(sorted(parts["verify"])), np.array(parts["held"])
    y = data["labels"]
    scalar = MatchPolicy.cosine().pair_features(data["texts_a"], data["texts_b"], data["sims"])
    veto = scalar[:, [FEATURES.index(f"fail_{n}") for n in DEFAULT_CHECKS]].any(axis=1)
    verifier = fit_variant(scalar[fit], y[fit], VARIANTS[0])
    base = MatchPolicy().with_verifier(verifier)
    row = {t: i for i, t in enumerate(data["texts"])}

    def stream(idx):
        questions = sorted({t for i in idx for t in data["pairs"][i][:2]})
        return questions, data["vectors"][[row[q] for q in questions]], intent_groups(data["pairs"], idx)

    def vectors_of(rows):
        texts = sorted({r[k] for r in rows for k in ("text_a", "text_b")})
        return dict(zip(texts, embed_cached(texts, args.cache_dir, embedder)))

    suite = suite_rows(args.suite)
    suite_vecs = vectors_of(suite)
    para = [{"text_a": a, "text_b": b, "label": label} for a, b, label in read_pairs(args.paraphrases)] if args.paraphrases else []
    para_vecs = vectors_of(para) if para else {}
    out = {"adapter": adapter, "model_id": embedder.model_id,
           "held_out_cosine": summarize(data["sims"][held], y[held]),
           "held_out_verifier": summarize(np.where(veto[held], 0.0, verifier.score_rows(scalar[held])), y[held]),
           "verify_stream": {}, "held_out": {}}
    verify_stream = stream(fit)
    for t in args.grid:
        s = stream_replay(base.with_threshold(t), *verify_stream)
        out["verify_stream"][str(t)] = {"hit_rate": s["hit_rate"], "wrong_hit_rate": s["wrong_hit_rate"]}
        print(adapter, "verify", t, out["verify_stream"][str(t)], flush=True)
        if "threshold" not in out and s["wrong_hit_rate"] <= WRONG_BUDGET:
            out["threshold"] = t
    held_stream = stream(held)
    texts_a, texts_b = [data["texts_a"][i] for i in held], [data["texts_b"][i] for i in held]
    for t in sorted({out.get("threshold", max(args.grid)), *args.also}):
        policy = base.with_threshold(t)
        hit = policy.score_pairs(texts_a, texts_b, data["sims"][held]) >= t
        tp = int((hit & (y[held] == 1)).sum())
        s = stream_replay(policy, *held_stream)
        h = suite_report(policy, suite, suite_vecs)
        entry = {"pair_precision": tp / max(int(hit.sum()), 1), "pair_recall": tp / max(int(y[held].sum()), 1),
                 "stream_hit_rate": s["hit_rate"], "stream_wrong_hit_rate": s["wrong_hit_rate"],
                 "hard_negatives_recall": h["recall"], "hard_negatives_fpr": h["fpr"]}
        if para:
            entry["paraphrases_recall"] = suite_report(policy, para, para_vecs)["recall"]
        out["held_out"][str(t)] = {k: round(v, 4) for k, v in entry.items()}
        print(adapter, "held", t, out["held_out"][str(t)], flush=True)
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--paraphrases", default=None)
    parser.add_argument("--suite", default=str(ROOT / "benchmarks/data/hard_negatives.jsonl"))
    parser.add_argument("--adapter", action="append", required=True, help="default, none, or an adapter .npz (repeat)")
    parser.add_argument("--grid", default="0.84,0.85,0.86,0.88", help="thresholds tried on the verify stream, ascending")
    parser.add_argument("--also", default="0.80", help="more thresholds reported on the held-out part")
    parser.add_argument("--cache-dir", type=Path, default=Path("/tmp/semcache_match"))
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/adapter_variants.json")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args.grid = [float(t) for t in args.grid.split(",")]
    args.also = [float(t) for t in args.also.split(",") if t]
    results = [evaluate(adapter, args) for adapter in args.adapter]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"command": "python -m benchmarks.compare_adapters " + " ".join(argv or sys.argv[1:]),
                                    "wrong_budget": WRONG_BUDGET, "adapters": results}, indent=2) + "\n")
    print("wrote", args.out)


if __name__ == "__main__":
    main()
