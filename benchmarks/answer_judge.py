"""Measure the answer judge on its own: its error both ways on answer pairs of an intent stream.

    python -m benchmarks.answer_judge [--stream ../shared/data/banking77_train.jsonl] [--pairs 8]

The intent mock (``semcache.testing.mock_intent``) answers each group of the stream with one
answer, reworded per request. Pairs:

- **paraphrases**: two wordings of one group's answer (the judge should say "same");
- **near misses**: a wording of one group's answer and one of a *neighbouring* group's (the
  three groups whose queries' centroid is nearest, by the real model: Banking77's
  "card_arrival" / "card_delivery_estimate"), which should be "different".

Groups are split in two halves by name: ``same_above`` is chosen on the dev half (the loosest
0.01 step whose near-miss "same" rate is at most 0.5%: the judge is biased to "different") and
the error both ways is reported on the other half. Writes benchmarks/results/answer_judge.json.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, write_json
from semcache.embedding.sentence import SentenceTransformerEmbedder
from semcache.matching.answers import AnswerJudge
from semcache.testing.mock_intent import IntentAnswers

RESULTS = Path(__file__).parent / "results" / "answer_judge.json"
MAX_FALSE_SAME = 0.005


def load_stream(path: str, text: str = "text", group: str = "group") -> list[tuple[str, str]]:
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append((str(row[text]), str(row[group])))
    return rows


def neighbours(rows, embedder, per_group: int, k: int, rng: random.Random) -> dict[str, list[str]]:
    """Return each group's ``k`` nearest groups by the centroid of (a sample of) its queries."""
    by_group = defaultdict(list)
    for text, group in rows:
        by_group[group].append(text)
    groups = sorted(by_group)
    centroids = []
    for g in groups:
        texts = rng.sample(by_group[g], min(per_group, len(by_group[g])))
        c = embedder.embed(texts).mean(axis=0)
        centroids.append(c / np.linalg.norm(c))
    sims = np.stack(centroids) @ np.stack(centroids).T
    np.fill_diagonal(sims, -2)
    return {g: [groups[j] for j in np.argsort(-sims[i])[:k]] for i, g in enumerate(groups)}


def make_pairs(groups, near, intents: IntentAnswers, per_group: int, rng: random.Random):
    pairs = []  # (answer_a, answer_b, same, group_a)
    for g in groups:
        for i in range(per_group):
            pairs.append((intents.worded(g, f"p{i}a"), intents.worded(g, f"p{i}b"), True, g))
            h = near[g][i % len(near[g])]
            pairs.append((intents.worded(g, f"n{i}a"), intents.worded(h, f"n{i}b"), False, g))
    rng.shuffle(pairs)
    return pairs


def rates(verdicts, pairs) -> dict:
    pos = [v.same for v, p in zip(verdicts, pairs) if p[2]]
    neg = [v.same for v, p in zip(verdicts, pairs) if not p[2]]
    return {"paraphrases": len(pos), "near_misses": len(neg),
            "false_different": round(1 - float(np.mean(pos)), 4) if pos else None,
            "false_same": round(float(np.mean(neg)), 4) if neg else None}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", default="../shared/data/banking77_train.jsonl")
    parser.add_argument("--text", default="text")
    parser.add_argument("--group", default="group")
    parser.add_argument("--pairs", type=int, default=8, help="paraphrase and near-miss pairs per group")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    started = time.time()
    rng = random.Random(0)
    rows = load_stream(args.stream, args.text, args.group)
    intents = IntentAnswers.from_pairs(rows)
    embedder = SentenceTransformerEmbedder(adapter=None, backend="torch")
    near = neighbours(rows, embedder, per_group=20, k=3, rng=rng)
    groups = sorted(near)
    halves = {"dev": groups[0::2], "test": groups[1::2]}
    pairs = {name: make_pairs(gs, near, intents, args.pairs, rng) for name, gs in halves.items()}
    texts = sorted({t for ps in pairs.values() for a, b, _, _ in ps for t in (a, b)})
    vectors = dict(zip(texts, embedder.embed(texts)))

    def verdicts(judge, ps):
        return [judge.judge(a, b, vectors[a], vectors[b]) for a, b, _, _ in ps]

    curve = []
    for step in np.arange(0.70, 0.995, 0.01):
        judge = AnswerJudge(same_above=round(float(step), 2))
        curve.append({"same_above": judge.same_above, "dev": rates(verdicts(judge, pairs["dev"]), pairs["dev"]),
                      "test": rates(verdicts(judge, pairs["test"]), pairs["test"])})
    allowed = [c for c in curve if c["dev"]["false_same"] <= MAX_FALSE_SAME]
    chosen = min(allowed, key=lambda c: c["same_above"]) if allowed else curve[-1]
    default = AnswerJudge()
    reasons = defaultdict(int)
    for v in verdicts(default, pairs["test"]):
        reasons[v.reason.split(":")[0]] += 1
    shipped = next(c for c in curve if c["same_above"] == default.same_above)
    result = {
        "command": "python -m benchmarks.answer_judge --stream " + args.stream + f" --pairs {args.pairs}",
        "stream": Path(args.stream).name, "groups": len(groups), "model": embedder.model_id,
        "rule": f"same_above chosen on the dev half of the groups: the loosest 0.01 step with near-miss false-same <= {MAX_FALSE_SAME}",
        "chosen": chosen,
        "default": {**shipped, "test_reasons": dict(reasons)},
        "curve": curve,
        "example_near_miss": next([a, b] for a, b, same, _ in pairs["test"] if not same),
        "seconds": round(time.time() - started, 1), "machine": machine_info(),
    }
    write_json(args.out, result)
    print(json.dumps({k: result[k] for k in ("chosen", "default")}, indent=1))
    return result


if __name__ == "__main__":
    main()
