"""Replay a labelled stream through a real cache that learns from its own traffic, against the static default.

    python -m benchmarks.learning --stream ../shared/data/banking77_train.jsonl --sample 3000 \\
        [--text text --group group] [--seeds 5] [--out benchmarks/results/learning_banking77.json]
    python -m benchmarks.learning --stream quality:qqp --sample 0      # the quality benchmark's report streams
    python -m benchmarks.learning --overhead 10000                     # lookup time with the layer on and off

Each query of the stream (``{"text", "group"}`` lines) is asked of a ``SemanticCache`` (real
all-MiniLM-L6-v2 vectors, the real store, index, policy, answer judge and calibration) whose
upstream is the intent mock (``semcache.testing.mock_intent``): one answer per group, worded per
request. A hit is wrong when the served entry's query belongs to another group. Two runs per
shuffle seed on the same order:

- ``static``: the static default (the cache's default match policy, answer groups off);
- ``learning``: the same policy with the answer groups and free-label calibration on
  (``--target`` precision; exploration off, so no extra upstream calls).

Rates are per request, means over the seeds; ``worst`` is the learning run with the most wrong
hits. ``static_curve`` is the static policy at other thresholds (same seeds), so "at equal
wrong rate" and "at equal hits" can be read off. Every distinct text (queries and the mock's
answers) is embedded once and reused across seeds and runs (a dict-backed embedder).
Prints one JSON object; ``--out`` also writes it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from benchmarks.common import machine_info, write_json
from semcache.embedding.sentence import SentenceTransformerEmbedder
from semcache.engine.cache import SemanticCache
from semcache.engine.learning import LearningSettings
from semcache.matching.groups import GroupRule
from semcache.matching.policy import MatchPolicy
from semcache.testing.mock_intent import IntentAnswers

VECTORS = Path(os.environ.get("SEMCACHE_BENCH_VECTORS", Path.home() / ".cache" / "semcache" / "bench-vectors"))


class DictEmbedder:
    """Vectors of known texts from a dict; anything else from the real model (and remembered)."""

    def __init__(self, vectors: dict[str, np.ndarray], model) -> None:
        self.vectors, self._model = vectors, model
        self.model_id, self.dim = model.model_id, model.dim

    def embed(self, texts):
        missing = [t for t in dict.fromkeys(texts) if t not in self.vectors]
        if missing:
            self.vectors.update(zip(missing, self._model.embed(missing)))
        return np.stack([self.vectors[t] for t in texts]).astype(np.float32) if texts else np.zeros((0, self.dim), np.float32)


def load_vectors(texts: list[str], model) -> dict[str, np.ndarray]:
    """Embed ``texts`` once, keeping the vectors in a file keyed by the texts' digest."""
    digest = hashlib.sha256(("\x1e".join(sorted(texts)) + model.model_id).encode()).hexdigest()[:20]
    path = VECTORS / f"{digest}.npy"
    ordered = sorted(texts)
    if path.exists():
        array = np.load(path)
    else:
        array = model.embed(ordered)
        VECTORS.mkdir(parents=True, exist_ok=True)
        np.save(path, array)
    return dict(zip(ordered, array))


def load_stream(path: str, text: str, group: str) -> list[tuple[str, str]]:
    """Read ``{text, group}`` lines; ``quality:qqp`` / ``quality:prompts`` build the quality benchmark's
    report streams instead (QQP intent groups of 2,000 questions; the prompt benchmark's test split)."""
    if path.startswith("quality:"):
        from benchmarks import quality

        name = path.removeprefix("quality:")
        if name == "qqp":
            stream = quality.qqp(quality.SHARED / "qqp_dev.jsonl", "report", questions=2000)
        elif name == "prompts":
            stream = quality.prompt_sets("report")[0]
        elif name == "banking77":
            stream = quality.banking77(quality.SHARED / "banking77_train.jsonl", "report")
        else:
            raise SystemExit(f"unknown quality stream {name!r}: qqp, prompts or banking77")
        return [(t.strip(), g) for t, g in zip(stream.texts, stream.groups)]
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            row = json.loads(line)
            rows.append((str(row[text]).strip(), str(row[group])))
    return rows


def replay(rows, order, embedder, policy, intents, learning: LearningSettings) -> dict:
    """One pass of the stream through a fresh cache; return its rates and the learning evidence."""
    hits = wrong = semantic = semantic_wrong = upstream = 0
    group_of_entry: dict[int, str] = {}
    by_reason: dict[str, list[int]] = {}  # reason -> [hits, wrong]
    with tempfile.TemporaryDirectory() as directory:
        cache = SemanticCache(directory, embedder=embedder, policy=policy, flush_interval=0, learning=learning,
                              embed_cache_size=0, ttl=None)
        try:
            for index in order:
                text, group = rows[index]
                calls = []

                def call(request, text=text):
                    calls.append(1)
                    return intents.answer(text, text)

                result = cache.complete(text, call)
                upstream += len(calls)
                if result.status == "hit":
                    hits += 1
                    served = group_of_entry.get(result.entry_id)
                    is_wrong = served != group
                    wrong += is_wrong
                    if result.hit.kind == "semantic":
                        semantic += 1
                        semantic_wrong += is_wrong
                        reason = result.decision.reason.split(":")[0]
                        by_reason.setdefault(reason, [0, 0])
                        by_reason[reason][0] += 1
                        by_reason[reason][1] += is_wrong
                elif result.entry_id is not None:
                    group_of_entry[result.entry_id] = group
            report = cache.learning.report([""])
            path = list(cache.learning.threshold_path)
        finally:
            cache.close()
    n = len(order)
    estimate = report["by_tenant"].get("", {})
    return {"hit_rate": hits / n, "wrong_rate": wrong / n, "precision": 1 - wrong / hits if hits else None,
            "semantic_precision": 1 - semantic_wrong / semantic if semantic else None, "upstream_calls": upstream,
            "estimated_precision": estimate.get("estimated_precision"), "bound": estimate.get("bound"),
            "labels": estimate.get("labels", 0), "threshold_path": path, "by_reason": by_reason}


def mean(runs: list[dict], key: str):
    values = [r[key] for r in runs if r.get(key) is not None]
    return round(float(np.mean(values)), 5) if values else None


def summary(runs: list[dict], keys=("hit_rate", "wrong_rate", "precision")) -> dict:
    return {k: mean(runs, k) for k in keys}


def overhead(entries: int, lookups: int, dim: int = 384, seed: int = 0) -> dict:
    """Time lookups at ``entries`` stored entries with the learning layer on and off (vectors from a
    dict, so the time is all beyond the embedding); return the p50s in milliseconds."""
    from semcache.storage.disk import DiskStore
    from semcache.storage.entry import Entry

    rng = np.random.default_rng(seed)
    base = rng.standard_normal((entries // 20, dim)).astype(np.float32)  # topics, 20 entries each
    vectors = np.repeat(base, 20, axis=0) + 0.35 * rng.standard_normal((entries, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [f"stored question {i}" for i in range(entries)]
    queries = [f"asked question {i}" for i in range(lookups)]
    picks = rng.integers(0, entries, lookups)
    asked = vectors[picks] + 0.25 * rng.standard_normal((lookups, dim)).astype(np.float32)
    asked /= np.linalg.norm(asked, axis=1, keepdims=True)
    table = dict(zip(texts, vectors)) | dict(zip(queries, asked))

    class Fixed:
        model_id, dim_ = "bench-fixed", dim

        def embed(self, batch):
            return np.stack([table[t] for t in batch])

    embedder = Fixed()
    embedder.dim = dim
    out = {}
    with tempfile.TemporaryDirectory() as directory:
        with SemanticCache(directory, embedder=embedder, flush_interval=0) as cache:  # keys as the cache makes them
            store = cache.store
            for i, text in enumerate(texts):
                key = cache.key(text)
                store.put(Entry.create(response=f"answer {i // 20}", id=store.next_id(), partition=key.partition,
                                       exact_key=key.exact_key, query_text=key.query_text, embedding=vectors[i],
                                       answer_group=None if i % 20 == 0 else i - i % 20 + 1, created_at=time.time()))
        # Both caches on the one directory, asked in turn, so the machine's load falls on both alike.
        caches = {name: SemanticCache(directory, embedder=embedder, flush_interval=0, learning=learning, embed_cache_size=0)
                  for name, learning in (("static", LearningSettings(groups=None)), ("learning", LearningSettings()))}
        try:
            samples: dict[str, list[float]] = {name: [] for name in caches}
            same: dict[str, list[float]] = {name: [] for name in caches}
            for round_, q in enumerate(queries * 2):
                took, hit = {}, {}
                for name, cache in (list(caches.items())[::-1] if round_ % 2 else caches.items()):  # alternate who goes first
                    start = time.perf_counter()
                    hit[name] = cache.lookup(q) is not None
                    took[name] = time.perf_counter() - start
                if round_ < 200:  # the first lookups warm up
                    continue
                for name in caches:
                    samples[name].append(took[name])
                    if hit["static"] == hit["learning"]:  # a hit reads its answer from the store: compare like with like
                        same[name].append(took[name])
            out = {name: round(float(np.percentile(values, 50)) * 1e3, 4) for name, values in samples.items()}
            out.update({f"{name}_same_outcome": round(float(np.percentile(values, 50)) * 1e3, 4) for name, values in same.items()})
            out["same_outcome_share"] = round(len(same["static"]) / len(samples["static"]), 3)
        finally:
            for cache in caches.values():
                cache.close()
    out["added_p50_ms"] = round(out["learning_same_outcome"] - out["static_same_outcome"], 4)
    return {"entries": entries, "lookups": lookups, "p50_ms": out}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stream", required=False, help="a {text, group} JSONL file, or quality:qqp|prompts|banking77")
    parser.add_argument("--overhead", type=int, default=0, help="only time lookups at this many entries (no stream)")
    parser.add_argument("--text", default="text")
    parser.add_argument("--group", default="group")
    parser.add_argument("--sample", type=int, default=3000, help="queries drawn from the stream (0: all)")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--threshold", type=float, default=None, help="the static policy's threshold (default: the cache's)")
    parser.add_argument("--target", type=float, default=None, help="target precision for calibration (default: off)")
    parser.add_argument("--no-groups", action="store_true")
    parser.add_argument("--groups", default="", help="answer-group settings, e.g. margin=0.02,loose_margin=0.06,floor=0.7")
    parser.add_argument("--first-seed", type=int, default=0, help="shuffle seeds start here (tune on others than you report)")
    parser.add_argument("--skip-static", action="store_true", help="only the learning runs (another operating point)")
    parser.add_argument("--curve", default="", help="comma-separated static thresholds to run too")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.overhead:
        result = {"overhead": overhead(args.overhead, 2000),
                  "command": "python -m benchmarks.learning " + " ".join(argv if argv is not None else os.sys.argv[1:])}
        if args.out:
            write_json(args.out, {**result, "machine": machine_info()})
        print(json.dumps(result))
        return result
    if not args.stream:
        parser.error("--stream is required (or --overhead N)")
    started = time.time()
    rows = load_stream(args.stream, args.text, args.group)
    if args.sample and args.sample < len(rows):
        rows = random.Random(1234).sample(rows, args.sample)
    intents = IntentAnswers.from_pairs(rows)
    model = SentenceTransformerEmbedder(adapter=None, backend="torch")
    texts = sorted({t for t, _ in rows} | {intents.answer(t, t) for t, _ in rows})
    embedder = DictEmbedder(load_vectors(texts, model), model)
    policy = MatchPolicy() if args.threshold is None else MatchPolicy().with_threshold(args.threshold)
    rule = GroupRule(**{k: (int if k == "support" else float)(v) for k, v in (p.split("=") for p in filter(None, args.groups.split(",")))})
    learning = LearningSettings(groups=None if args.no_groups else rule, target_precision=args.target)
    static = LearningSettings(groups=None)
    orders = [random.Random(seed).sample(range(len(rows)), len(rows))
              for seed in range(args.first_seed, args.first_seed + args.seeds)]
    learned = [replay(rows, order, embedder, policy, intents, learning) for order in orders]
    base = [] if args.skip_static else [replay(rows, order, embedder, policy, intents, static) for order in orders]
    curve = []
    for raw in filter(None, args.curve.split(",")):
        runs = [replay(rows, order, embedder, policy.with_threshold(float(raw)), intents, static) for order in orders]
        curve.append({"threshold": float(raw), **summary(runs)})
    worst = max(range(len(learned)), key=lambda i: learned[i]["wrong_rate"])
    result = {
        "learning": {**summary(learned), "estimated_precision": mean(learned, "estimated_precision"),
                     "semantic_precision": mean(learned, "semantic_precision"),
                     "bound": [mean([{"b": r["bound"][0]} for r in learned if r["bound"]], "b"),
                               mean([{"b": r["bound"][1]} for r in learned if r["bound"]], "b")],
                     "labels": mean(learned, "labels"), "threshold_path": learned[0]["threshold_path"],
                     "upstream_calls": mean(learned, "upstream_calls")},
        "static": {**summary(base), "semantic_precision": mean(base, "semantic_precision"),
                   "upstream_calls": mean(base, "upstream_calls")},
        "worst": {"seed": worst, **{k: v for k, v in learned[worst].items() if k != "threshold_path"}},
        "per_seed": [{k: r[k] for k in ("hit_rate", "wrong_rate", "semantic_precision", "estimated_precision", "bound")}
                     for r in learned],
        "static_curve": curve,
        "settings": {"policy": policy.to_dict(), "groups": None if learning.groups is None else vars(learning.groups),
                     "target_precision": args.target, "judge_same_above": learning.judge.same_above},
        "stream": Path(args.stream).name, "queries": len(rows), "groups": len({g for _, g in rows}), "seeds": args.seeds,
        "command": "python -m benchmarks.learning " + " ".join(argv if argv is not None else os.sys.argv[1:]),
        "seconds": round(time.time() - started, 1),
    }
    if args.out:
        write_json(args.out, {**result, "machine": machine_info()})
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
