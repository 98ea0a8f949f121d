"""semcache beside its peers: GPTCache, plain cosine and an exact-match cache, same model, data and run.

    python -m benchmarks.bench_peers [--smoke] [--pairs /work/shared/data/qqp_dev.jsonl] [--out DIR]

Contenders, all fed by ONE all-MiniLM-L6-v2 (the packaged model, unit-norm vectors, dim 384):

  semcache            ``SemanticCache`` with ``MatchPolicy()``, its shipped default: cosine >= 0.90 and every
                      contradiction check (numbers, names, identifiers, ...), English queries;
  semcache-cosine     ``SemanticCache`` with ``MatchPolicy.cosine()`` (plain cosine at the same threshold, no
                      checks, every language: GPTCache's rule with semcache's engine);
  exact-only          a dict on semcache's exact key: what an exact-match cache can do;
  gptcache-default    GPTCache (``gptcache`` from PyPI, an optional bench extra) as its docs set it up:
                      ``Cache.init`` with ``get_prompt``, our embedder as ``embedding_func``,
                      ``manager_factory("sqlite,faiss")``, ``SearchDistanceEvaluation()`` and
                      ``Config()`` (similarity_threshold 0.8), through ``adapter.api.get/put``;
  gptcache-best       the same at its best threshold from the sweep (see ``best_gptcache``).

GPTCache's threshold scale: its FAISS store returns the squared L2 distance d; the evaluation
scores 4 - d and a hit needs score >= 4 * t. For unit vectors d = 2 - 2 cos, so a hit needs
cosine >= 2t - 1: the default t = 0.8 is cosine 0.6. Only its nearest vector is considered (top_k 1).

Data (streams replay in a seeded random order; on a miss the text is stored with its group as
the answer, so a hit is wrong when it returns another group):
  workload        ``semcache.tools.workload.generate`` (intents are the groups);
  hard_negatives  benchmarks/data/hard_negatives.jsonl as pairs: would b hit an entry stored for a?
  qqp             with ``--pairs``: the held-out questions (``group_split(pairs, 0.2, 0)``, the
                  same held-out split every QQP benchmark reports on), groups = connected components over duplicate
                  edges, whole groups sampled (seeded) up to ``--qqp-questions``. Read by path only.

Quality comes from the real engines on precomputed vectors. The threshold sweeps (the curves)
replay the same decision rules in numpy (semcache: ``policy.decide`` on the top-5 cosines;
GPTCache: nearest cosine >= 2t - 1) and are checked against the engines at the operating
points (``agreement``). Latency is measured twice: beyond the embedding (precomputed vectors)
and end to end with the model on the first ``--model-requests`` requests of each stream (the
embedding LRU of semcache is off there, so both embed every lookup they cannot answer exactly).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

from semcache.engine.cache import SemanticCache
from semcache.tools.data import group_split, intent_groups, read_pairs
from semcache.tools.evaluate import PrecomputedEmbedder, eval_pairs
from semcache.keys import normalize
from semcache.matching.policy import Candidate, MatchPolicy
from semcache.tools.workload import generate

from .common import Timer, machine_info, summarize, write_json

ROOT = Path(__file__).resolve().parent
HARD_NEGATIVES = ROOT / "data" / "hard_negatives.jsonl"
TOP_K = 5  # semcache's default top_k
GPTCACHE_SWEEP = (0.8, 0.85, 0.9, 0.925, 0.95, 0.96, 0.97, 0.975, 0.98, 0.99, 0.995)
COSINE_SWEEP = (0.75, 0.8, 0.85, 0.9, 0.925, 0.95, 0.97, 0.98, 0.99)
DEFAULT_SWEEP = (0.8, 0.82, 0.84, 0.86, 0.88, 0.9, 0.92, 0.94, 0.96, 0.98)  # cosine, with the default's checks
FULL = {"workload_requests": 600, "qqp_questions": 2000, "model_requests": 300, "hard_negative_rows": 0}
SMOKE = {"workload_requests": 40, "qqp_questions": 120, "model_requests": 8, "hard_negative_rows": 24}


def gptcache_cosine(threshold: float) -> float:
    """Return the cosine a GPTCache ``similarity_threshold`` stands for (unit vectors, L2 FAISS)."""
    return 2.0 * threshold - 1.0


# -- contenders: lookup(text) -> (answer or None, kind), insert(text, answer) ---------------------


class SemcacheContender:
    """A fresh ``SemanticCache`` in a temporary directory (no TTL, no caps, no embedding LRU)."""

    def __init__(self, embedder, policy: MatchPolicy) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="bench-peers-semcache-")
        self.cache = SemanticCache(self._dir.name, embedder=embedder, policy=policy, ttl=None, max_entries=None,
                                   max_bytes=None, embed_cache_size=0, flush_interval=3600)

    def lookup(self, text: str):
        hit = self.cache.lookup(text)
        return (None, "miss") if hit is None else (hit.response, hit.kind)

    def insert(self, text: str, answer: str) -> None:
        self.cache.insert(text, answer, usage=(0, 0))

    def close(self) -> None:
        self.cache.close()
        self._dir.cleanup()


class ExactContender:
    """A dict keyed by semcache's exact key (same text normalization, no embedding)."""

    def __init__(self) -> None:
        self._answers: dict[str, str] = {}

    def lookup(self, text: str):
        answer = self._answers.get(normalize(text).exact_key)
        return (None, "miss") if answer is None else (answer, "exact")

    def insert(self, text: str, answer: str) -> None:
        self._answers[normalize(text).exact_key] = answer

    def close(self) -> None:
        self._answers.clear()


class GPTCacheContender:
    """GPTCache 'similar cache': sqlite scalar store + FAISS, SearchDistanceEvaluation, ``threshold``."""

    def __init__(self, embedder, threshold: float) -> None:
        with warnings.catch_warnings():  # gptcache's SQLAlchemy models use APIs deprecated in SQLAlchemy 2
            warnings.simplefilter("ignore")
            from gptcache import Cache, Config
            from gptcache.adapter.api import get, put
            from gptcache.manager import manager_factory
            from gptcache.processor.pre import get_prompt
            from gptcache.similarity_evaluation import SearchDistanceEvaluation

            self._dir = tempfile.TemporaryDirectory(prefix="bench-peers-gptcache-")
            self._manager = manager_factory("sqlite,faiss", data_dir=self._dir.name, vector_params={"dimension": embedder.dim})
            self.cache = Cache()
            self.cache.init(pre_embedding_func=get_prompt, embedding_func=lambda data, **_: embedder.embed([data])[0],
                            data_manager=self._manager, similarity_evaluation=SearchDistanceEvaluation(),
                            config=Config(similarity_threshold=threshold))
        self._get, self._put = get, put

    def lookup(self, text: str):
        answer = self._get(text, cache_obj=self.cache)
        return (None, "miss") if answer is None else (answer, "semantic")

    def insert(self, text: str, answer: str) -> None:
        self._put(text, answer, cache_obj=self.cache)

    def close(self) -> None:
        self._manager.close()
        # Cache.init registered an atexit close; the directory is gone by then, so make it a no-op.
        self._manager.close = lambda: None
        self._dir.cleanup()


# -- replays ---------------------------------------------------------------------------------


def replay(contender, texts: Sequence[str], groups: Sequence[str], limit: int | None = None) -> dict:
    """Replay texts in order; store a miss with its group; return quality and latency by outcome."""
    timers = {"exact_hit": Timer(), "semantic_hit": Timer(), "miss": Timer()}
    insert, lookup_all = Timer(), []
    hits = wrong = exact = 0
    n = len(texts) if limit is None else min(limit, len(texts))
    try:
        for text, group in zip(texts[:n], groups[:n]):
            start = time.perf_counter()
            answer, kind = contender.lookup(text)
            elapsed = time.perf_counter() - start
            lookup_all.append(elapsed)
            if answer is None:
                timers["miss"].samples.append(elapsed)
                with insert:
                    contender.insert(text, group)
                continue
            hits += 1
            wrong += answer != group
            exact += kind == "exact"
            timers["exact_hit" if kind == "exact" else "semantic_hit"].samples.append(elapsed)
    finally:
        contender.close()
    return {"requests": n, "hits": hits, "wrong_hits": wrong, "exact_hits": exact, "hit_rate": round(hits / n, 4),
            "wrong_hit_rate": round(wrong / n, 4), "precision": round((hits - wrong) / hits, 4) if hits else None,
            "lookup_ms": {"all": summarize(lookup_all), **{k: t.summary() for k, t in timers.items()}},
            "insert_ms": insert.summary()}


def simulate(texts: Sequence[str], groups: Sequence[str], vectors: dict[str, np.ndarray], decide) -> dict:
    """Replay with an exact tier and ``decide(query, vector, sims, stored_texts)`` -> index or None."""
    dim = len(next(iter(vectors.values())))
    stored = np.zeros((len(texts), dim), np.float32)
    stored_texts, stored_groups, exact = [], [], {}
    hits = wrong = 0
    for text, group in zip(texts, groups):
        key = normalize(text).exact_key
        j = exact.get(key)
        if j is None and stored_texts:
            j = decide(text, vectors[text], stored[:len(stored_texts)] @ vectors[text], stored_texts)
        if j is not None:
            hits += 1
            wrong += stored_groups[j] != group
            continue
        exact[key] = len(stored_texts)
        stored[len(stored_texts)] = vectors[text]
        stored_texts.append(text)
        stored_groups.append(group)
    n = len(texts)
    return {"hits": hits, "wrong_hits": wrong, "hit_rate": round(hits / n, 4), "wrong_hit_rate": round(wrong / n, 4),
            "precision": round((hits - wrong) / hits, 4) if hits else None}


def semcache_rule(policy: MatchPolicy):
    def decide(text, vector, sims, stored_texts):
        top = np.argsort(-sims)[:TOP_K]
        candidates = [Candidate(int(j), stored_texts[j], float(sims[j])) for j in top]
        decision = policy.decide(text, candidates)
        return decision.entry_id if decision.hit else None
    return decide


def gptcache_rule(threshold: float):
    def decide(text, vector, sims, stored_texts):
        j = int(np.argmax(sims))  # GPTCache's FAISS store returns top_k=1 by default
        return j if 2.0 - 2.0 * float(sims[j]) <= 4.0 - 4.0 * threshold + 1e-6 else None
    return decide


def curves(texts, groups, vectors, default: MatchPolicy, sweeps: dict) -> dict:
    """Hit rate and wrong-hit rate per threshold for semcache, plain cosine and GPTCache."""
    out = {"semcache": [], "semcache-cosine": [], "gptcache": []}
    for t in sorted(set(sweeps["default"]) | {default.threshold}):
        out["semcache"].append({"threshold": t, **simulate(texts, groups, vectors, semcache_rule(default.with_threshold(t)))})
    for t in sorted(set(sweeps["cosine"]) | {MatchPolicy.cosine().threshold}):  # its engine point is checked too
        out["semcache-cosine"].append({"threshold": t, **simulate(texts, groups, vectors, semcache_rule(MatchPolicy.cosine(t)))})
    for t in sweeps["gptcache"]:
        out["gptcache"].append({"threshold": t, "cosine": round(gptcache_cosine(t), 4), **simulate(texts, groups, vectors, gptcache_rule(t))})
    return out


def best_gptcache(points: list[dict], wrong_budget: float) -> dict:
    """GPTCache's best threshold: the highest hit rate with a wrong-hit rate <= ``wrong_budget``
    (semcache's own); when no threshold is that clean, the one with the fewest wrong hits."""
    within = [p for p in points if p["wrong_hit_rate"] <= wrong_budget]
    if within:
        return max(within, key=lambda p: (p["hit_rate"], -p["threshold"]))
    return min(points, key=lambda p: (p["wrong_hit_rate"], -p["hit_rate"]))


def hit_rate_at(points: list[dict], wrong_rate: float) -> float:
    """The best hit rate a curve reaches without exceeding ``wrong_rate`` (0 when none does)."""
    return max([p["hit_rate"] for p in points if p["wrong_hit_rate"] <= wrong_rate], default=0.0)


# -- datasets --------------------------------------------------------------------------------


def workload_stream(n: int, seed: int) -> tuple[list[str], list[str]]:
    requests = generate(n, seed=seed)
    return [r.text for r in requests], [r.intent for r in requests]


def qqp_stream(path: str, questions: int, seed: int) -> tuple[list[str], list[str]]:
    """Held-out QQP questions grouped by duplicate edges, whole groups sampled, shuffled (seeded)."""
    pairs = read_pairs(path)
    _, held = group_split(pairs, 0.2, 0)
    members: dict[int, list[str]] = {}
    for question, intent in intent_groups(pairs, held).items():
        members.setdefault(intent, []).append(question)
    components = sorted(members.values())
    rng = random.Random(seed)
    rng.shuffle(components)
    texts, groups = [], []
    for number, component in enumerate(components):
        if len(texts) >= questions:
            break
        texts += component
        groups += [f"qqp-{number}"] * len(component)
    order = list(range(len(texts)))
    rng.shuffle(order)
    return [texts[i] for i in order], [groups[i] for i in order]


# -- the run ---------------------------------------------------------------------------------


def stream_report(name: str, texts, groups, embedder, vectors, default: MatchPolicy, sweeps: dict, model_requests: int,
                  gptcache: bool) -> dict:
    """Curves, the engines at their operating points, and latency with the model, for one stream."""
    print(f"[peers] {name}: {len(texts)} requests, {len(set(groups))} groups", file=sys.stderr, flush=True)
    fast = PrecomputedEmbedder(embedder, vectors)
    report: dict = {"kind": "stream", "requests": len(texts), "groups": len(set(groups)),
                    "max_hit_rate": round(1 - len(set(groups)) / len(texts), 4)}
    report["curves"] = curves(texts, groups, vectors, default, sweeps)
    cosine = MatchPolicy.cosine()
    systems = {"semcache": (lambda e: SemcacheContender(e, default), default.threshold, "cosine + checks"),
               "semcache-cosine": (lambda e: SemcacheContender(e, cosine), cosine.threshold, "cosine"),
               "exact-only": (lambda e: ExactContender(), None, "exact key")}
    semcache_engine = replay(SemcacheContender(fast, default), texts, groups)
    if gptcache:
        best = best_gptcache(report["curves"]["gptcache"], semcache_engine["wrong_hit_rate"])
        default_t = _gptcache_default_threshold()
        systems["gptcache-default"] = (lambda e: GPTCacheContender(e, default_t), default_t, "gptcache t (cosine 2t-1)")
        systems["gptcache-best"] = (lambda e: GPTCacheContender(e, best["threshold"]), best["threshold"], "gptcache t (cosine 2t-1)")
    report["systems"] = {}
    for system, (make, threshold, scale) in systems.items():
        result = semcache_engine if system == "semcache" else replay(make(fast), texts, groups)
        report["systems"][system] = {"threshold": threshold, "scale": scale, **result}
    report["agreement"] = _agreement(report)
    report["with_model"] = {}
    for system in ("semcache", "exact-only", *(("gptcache-default",) if gptcache else ())):
        report["with_model"][system] = replay(systems[system][0](embedder), texts, groups, limit=model_requests)
    return report


def _gptcache_default_threshold() -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from gptcache import Config
    return float(Config().similarity_threshold)


def _agreement(report: dict) -> dict:
    """Engine vs numpy replay (hit and wrong counts) at each operating point the curves contain."""
    out = {}
    for system, curve in (("semcache", "semcache"), ("semcache-cosine", "semcache-cosine"),
                          ("gptcache-default", "gptcache"), ("gptcache-best", "gptcache")):
        engine = report["systems"].get(system)
        point = next((p for p in report["curves"][curve] if engine and p["threshold"] == engine["threshold"]), None)
        if engine and point:
            out[system] = {"engine": [engine["hits"], engine["wrong_hits"]], "replay": [point["hits"], point["wrong_hits"]]}
    return out


def pairs_report(rows: list[dict], embedder, vectors, default: MatchPolicy, gptcache_threshold: float | None) -> dict:
    """Would b hit an entry stored for a? Per system: recall on duplicates, false-positive rate."""
    fast = PrecomputedEmbedder(embedder, vectors)
    labels = np.array([int(r["label"]) for r in rows])
    out: dict = {"kind": "pairs", "pairs": len(rows), "positives": int(labels.sum()), "systems": {}}

    def summary(hit: np.ndarray, threshold) -> dict:
        tp, fp = int((hit & (labels == 1)).sum()), int((hit & (labels == 0)).sum())
        return {"threshold": threshold, "recall": round(tp / max(int(labels.sum()), 1), 4),
                "false_positive_rate": round(fp / max(int((labels == 0).sum()), 1), 4),
                "precision": round(tp / (tp + fp), 4) if tp + fp else None}

    for name, policy in (("semcache", default), ("semcache-cosine", MatchPolicy.cosine())):
        _, decisions = eval_pairs(rows, embedder=fast, policy=policy)
        out["systems"][name] = summary(np.array([d["hit"] for d in decisions]), policy.threshold)
    same = np.array([normalize(r["text_a"]).exact_key == normalize(r["text_b"]).exact_key for r in rows])
    out["systems"]["exact-only"] = summary(same, None)
    if gptcache_threshold is not None:
        # GPTCache's rule on one stored entry: 4 - squared L2 >= 4 t (see the module docstring).
        dist = np.array([float(np.sum((vectors[r["text_a"]] - vectors[r["text_b"]]) ** 2)) for r in rows])
        out["systems"]["gptcache-default"] = summary(4.0 - dist >= 4.0 * gptcache_threshold - 1e-6, gptcache_threshold)
    return out


def targets(datasets: dict) -> dict:
    """The issue's three targets, on the QQP stream when present, else the generated workload."""
    primary = "qqp" if "qqp" in datasets else "workload"
    if "gptcache-default" not in datasets[primary]["systems"]:
        return {}
    out = {}
    # QQP questions are all distinct: exact hits come from the generated workload's repeats.
    repeats = datasets["workload"]
    for where, key in (("beyond the embedding", "systems"), ("with the model", "with_model")):
        # The strict default may make no semantic hit in the first requests of one stream (timed
        # with the model): take the first stream where both systems made some.
        name = next((n for n in (primary, "workload") if n in datasets
                     and datasets[n][key]["semcache"]["lookup_ms"]["semantic_hit"].get("p50_ms")
                     and datasets[n][key]["gptcache-default"]["lookup_ms"]["semantic_hit"].get("p50_ms")), primary)
        data = datasets[name]
        ours, theirs = data[key]["semcache"]["lookup_ms"], data[key]["gptcache-default"]["lookup_ms"]
        semantic, exact, peer = (ours["semantic_hit"].get("p50_ms"), repeats[key]["semcache"]["lookup_ms"]["exact_hit"].get("p50_ms"),
                                 theirs["semantic_hit"].get("p50_ms"))
        ratio = round(semantic / peer, 4) if semantic and peer else None
        out[f"semantic_hit_p50_vs_gptcache ({where})"] = {
            "dataset": name, "measured": ratio, "required": "<= 0.5", "passed": ratio is not None and ratio <= 0.5,
            "detail": f"semcache semantic hit p50 {semantic} ms vs GPTCache hit p50 {peer} ms"}
        ratio = round(exact / peer, 4) if exact and peer else None
        out[f"exact_hit_p50_vs_gptcache ({where})"] = {
            "dataset": name, "measured": ratio, "required": "<= 0.05", "passed": ratio is not None and ratio <= 0.05,
            "detail": f"semcache exact hit p50 {exact} ms vs GPTCache hit p50 {peer} ms"}
    for name, data in datasets.items():
        if data["kind"] != "stream" or "gptcache-default" not in data["systems"]:
            continue
        ours = data["systems"]["semcache"]
        theirs = hit_rate_at(data["curves"]["gptcache"], ours["wrong_hit_rate"])
        out[f"hit_rate_at_equal_wrong_rate ({name})"] = {
            "dataset": name, "measured": {"semcache": ours["hit_rate"], "gptcache_best_at_same_wrong_rate": theirs,
                                          "wrong_hit_rate": ours["wrong_hit_rate"]},
            "required": "semcache hit rate > GPTCache's at any threshold with wrong-hit rate <= semcache's",
            "passed": ours["hit_rate"] > theirs}
    return out


def plot(path: Path, name: str, data: dict) -> str:
    """Precision of hits against hit rate for each threshold sweep, with the default points marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = {"semcache": "tab:green", "semcache-cosine": "tab:blue", "gptcache": "tab:red"}
    for curve, points in data["curves"].items():
        points = [p for p in points if p["precision"] is not None]
        ax.plot([p["hit_rate"] for p in points], [p["precision"] for p in points], "-o", ms=3, color=colors[curve],
                label=f"{curve} (threshold sweep)")
    for system, marker in (("semcache", "*"), ("semcache-cosine", "s"), ("gptcache-default", "X"), ("gptcache-best", "D"),
                           ("exact-only", "P")):
        point = data["systems"].get(system)
        if point and point["precision"] is not None:
            ax.scatter([point["hit_rate"]], [point["precision"]], marker=marker, s=90, zorder=5, color="black")
            ax.annotate(system, (point["hit_rate"], point["precision"]), textcoords="offset points", xytext=(6, -10), fontsize=8)
    ax.axvline(data["max_hit_rate"], color="grey", linestyle=":", linewidth=1)
    ax.set(xlabel="hit rate (share of requests answered from the cache)", ylabel="precision (correct hits / hits)",
           title=f"{name}: {data['requests']} requests, {data['groups']} groups (dotted: max hit rate)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return str(path)


def gptcache_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("gptcache")
    except Exception:  # not installed: GPTCache is an optional bench extra
        return None


def main(argv: Sequence[str] | None = None, *, embedder=None) -> dict:
    """Run the comparison, write ``peers.json`` and ``peers_<dataset>.png`` to ``--out``, return the results."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_peers", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", help="QQP-style labelled pairs (e.g. /work/shared/data/qqp_dev.jsonl), read by path")
    parser.add_argument("--hard-negatives", default=str(HARD_NEGATIVES))
    parser.add_argument("--qqp-questions", type=int, help=f"questions sampled from the held-out split (default {FULL['qqp_questions']})")
    parser.add_argument("--workload-requests", type=int, help=f"generated requests (default {FULL['workload_requests']})")
    parser.add_argument("--model-requests", type=int, help=f"requests per stream timed with the model (default {FULL['model_requests']})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help=f"seconds after the model loads: {SMOKE}")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args(argv)
    for key, value in (SMOKE if args.smoke else FULL).items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    started = time.perf_counter()
    if embedder is None:
        from semcache.embedding.sentence import SentenceTransformerEmbedder

        embedder = SentenceTransformerEmbedder()
    has_gptcache = gptcache_version() is not None
    default = MatchPolicy()
    sweeps = {"default": DEFAULT_SWEEP, "cosine": COSINE_SWEEP, "gptcache": GPTCACHE_SWEEP}
    if args.smoke:
        sweeps = {"default": (0.86, 0.9), "cosine": (0.9,), "gptcache": (0.8, 0.95)}
    streams = {"workload": workload_stream(args.workload_requests, args.seed)}
    if args.pairs:
        streams["qqp"] = qqp_stream(args.pairs, args.qqp_questions, args.seed)
    rows = read_jsonl(args.hard_negatives)
    rows = rows[:args.hard_negative_rows] if args.hard_negative_rows else rows
    texts = sorted({t for s, _ in streams.values() for t in s} | {r[k] for r in rows for k in ("text_a", "text_b")})
    vectors = dict(zip(texts, np.concatenate([embedder.embed(texts[i:i + 256]) for i in range(0, len(texts), 256)])))
    datasets = {}
    for name, (stream_texts, groups) in streams.items():
        datasets[name] = stream_report(name, stream_texts, groups, embedder, vectors, default, sweeps,
                                       args.model_requests, has_gptcache)
    datasets["hard_negatives"] = pairs_report(rows, embedder, vectors, default,
                                              _gptcache_default_threshold() if has_gptcache else None)
    result = {
        "benchmark": "peers",
        "command": "python -m benchmarks.bench_peers " + " ".join(sys.argv[1:] if argv is None else argv),
        "smoke": args.smoke,
        "machine": machine_info(),
        "model": getattr(embedder, "model_id", "?"),
        "gptcache_version": gptcache_version(),
        "gptcache_note": None if has_gptcache else "gptcache is not installed (optional bench extra): peers skipped",
        "gptcache_threshold_scale": "hit iff 4 - squared L2 >= 4t, i.e. cosine >= 2t - 1 for unit vectors; default t=0.8 is cosine 0.6; top_k 1",
        "semcache_policy": default.to_dict(),
        "datasets": datasets,
    }
    result["targets"] = targets(datasets)
    result["plots"] = [plot(args.out / f"peers_{name}.png", name, data) for name, data in datasets.items() if data["kind"] == "stream"]
    result["duration_s"] = round(time.perf_counter() - started, 1)
    write_json(args.out / "peers.json", result)
    for name, target in result["targets"].items():
        print(f"{'PASS' if target['passed'] else 'FAIL'}  {name}: {target['measured']} (required {target['required']})")
    print(f"wrote {args.out / 'peers.json'} in {result['duration_s']} s")
    return result


def read_jsonl(path: str | Path) -> list[dict]:
    import json

    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


if __name__ == "__main__":
    main()
