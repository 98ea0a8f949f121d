"""Train the shipped embedding adapter (LoRA on all-MiniLM-L6-v2) and write semcache/data/adapter.npz.

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.train_embedder --pairs ../shared/data/qqp_dev.jsonl

The pairs are split three ways by question (connected components, so no question is on two
sides): 20% held out for every reported number (the same split as ``bench_peers``' QQP stream:
``group_split`` seed 0), then 15% of the rest kept back ("verify": pairs the adapter never saw,
for choosing a threshold on the tuned cosine); the adapter trains on what is left. On 2 CPU cores one epoch takes about 15 minutes. Writes the adapter
and benchmarks/results/embedder_train.json (held-out cosine quality before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from semcache.tools.data import Pair, group_split, read_pairs

ROOT = Path(__file__).resolve().parent.parent
VERIFIER_SHARE = 0.15


def splits(pairs: list[Pair], seed: int = 0) -> dict[str, list[int]]:
    """Indices of the pairs for the adapter ("tune"), choosing a threshold ("verify") and the report ("held")."""
    fit, held = group_split(pairs, 0.2, seed)
    tune_part, verify_part = group_split([pairs[i] for i in fit], VERIFIER_SHARE, seed + 1)
    return {"tune": [fit[i] for i in tune_part], "verify": [fit[i] for i in verify_part], "held": held}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", required=True, help="labelled pairs (.jsonl/.csv), e.g. qqp_dev.jsonl")
    parser.add_argument("--out", type=Path, default=ROOT / "semcache/data/adapter.npz")
    parser.add_argument("--report", type=Path, default=ROOT / "benchmarks/results/embedder_train.json")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--prompt-styles", type=float, default=0.0, metavar="SHARE",
                        help="rewrite one side of this share of the training pairs in a prompt style, and add half as "
                             "many (question, rewrite) duplicates (benchmarks/prompt_styles.py); 0 = QQP as is")
    args = parser.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    from semcache.embedding.sentence import SentenceTransformerEmbedder
    from semcache.embedding.adapter import apply_adapter
    from semcache.tools.tune import cosine_quality, tune

    pairs = read_pairs(args.pairs)
    parts = splits(pairs, args.seed)
    train = [pairs[i] for i in parts["tune"]]
    if args.prompt_styles:
        from benchmarks.prompt_styles import augment

        train = augment(train, args.seed, share=args.prompt_styles, self_share=args.prompt_styles / 2)
    held = [pairs[i] for i in parts["held"]]
    embedder = SentenceTransformerEmbedder(adapter=None, backend="torch")  # trained in place
    before = cosine_quality(embedder, held)
    print("held-out cosine before", json.dumps(before), flush=True)
    started = time.perf_counter()

    def progress(step: int, steps: int, loss: float) -> None:
        if step % 50 == 0 or step == steps:
            print(f"step {step}/{steps} loss {loss:.3f} {time.perf_counter() - started:.0f}s", flush=True)

    result = tune(embedder._model, train, base_model=embedder.model_id, rank=args.rank, epochs=args.epochs,
                  lr=args.lr, seed=args.seed, progress=progress)
    result.adapter.info["source"] = Path(args.pairs).name
    args.out.parent.mkdir(parents=True, exist_ok=True)
    result.adapter.save(args.out)
    apply_adapter(embedder._model, result.adapter)
    after = cosine_quality(embedder, held)
    print("held-out cosine after", json.dumps(after), flush=True)
    report = {"pairs": len(pairs), "tune_pairs": len(train), "verify_pairs": len(parts["verify"]), "held_out_pairs": len(held),
              "prompt_styles": args.prompt_styles, "rank": args.rank, "epochs": args.epochs, "lr": args.lr, "steps": result.steps,
              "train_seconds": round(result.seconds, 1), "adapter_bytes": args.out.stat().st_size,
              "adapter_digest": result.adapter.digest, "held_out_cosine_before": before, "held_out_cosine_after": after,
              "loss_first_50": round(float(np.mean(result.losses[:50])), 4), "loss_last_50": round(float(np.mean(result.losses[-50:])), 4)}
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} ({report['adapter_bytes']} bytes) and {args.report}")


if __name__ == "__main__":
    main()
