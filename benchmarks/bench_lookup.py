"""Measure the lookup path: exact and semantic hit latency, inserts, rebuild, memory, index choice.

Run ``python -m benchmarks.bench_lookup [--sizes 1000,10000,100000] [--smoke] [--out DIR]``; it
writes ``lookup.json`` and two plots to ``DIR`` (default ``benchmarks/results``).

Every cache holds its N entries in ONE partition, the worst case for the semantic tier. Vectors
are synthetic: unit vectors around 2,000 random "topics" (so the index sees clustered data, as
with real sentence embeddings), served by ``PrecomputedEmbedder`` so that lookups and inserts
measure the engine, not the model. The real model's cost is measured apart (``embedding``).
The caches run the shipped default ``MatchPolicy()`` (cosine + every check); ``policy_decide``
times its ``decide`` alone on five candidates, and ``beyond_embedding`` sets a semantic lookup's
p50 (everything but the model) beside the model's p50 on one query.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import math
import json
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, Sequence

import faiss
import numpy as np

from semcache.engine.cache import SemanticCache
from semcache.storage.index import APPROXIMATE_THRESHOLD, FaissIndex
from semcache.keys import normalize
from semcache.matching.policy import Candidate, MatchPolicy
from semcache.storage.disk import DiskStore
from semcache.storage.entry import Entry

from .common import Timer, machine_info, plot_lines, rss_bytes, write_json

DIM = 384  # all-MiniLM-L6-v2
TOPICS = 2_000
SPREAD = 1.2  # cosine to its topic centre ~0.64, to another topic ~0
NOISE = 0.2  # a "paraphrase": cosine ~0.98 to the stored vector, above any sane threshold
MODEL = "gpt-4o-mini"
TARGETS = {"exact_p50_ms": 0.5, "semantic_p50_ms_at_100k": 1.0, "rebuild_s_at_100k": 10.0}
RESPONSE = {
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1_700_000_000, "model": MODEL,
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "A typical cached answer of a few sentences. " * 10}}],
    "usage": {"prompt_tokens": 24, "completion_tokens": 110, "total_tokens": 134},
}
_SYLLABLES = ["ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "ze", "bo", "da", "fi", "gu", "he", "jo"]


class PrecomputedEmbedder:
    """An embedder that returns vectors registered in advance (a hash-seeded one otherwise)."""

    model_id = "bench-precomputed"
    dim = DIM

    def __init__(self) -> None:
        self._vectors: dict[str, np.ndarray] = {}

    def register(self, texts: Sequence[str], vectors: np.ndarray) -> None:
        self._vectors.update(zip(texts, vectors))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self._vector(t) for t in texts]).astype(np.float32, copy=False)

    def _vector(self, text: str) -> np.ndarray:
        vector = self._vectors.get(text)
        if vector is None:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
            vector = _unit(np.random.default_rng(seed).standard_normal((1, DIM)))[0]
        return vector


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    """Return ``n`` unit vectors scattered around ``TOPICS`` random centres."""
    centres = _unit(np.random.default_rng(7).standard_normal((TOPICS, DIM)))
    noise = rng.standard_normal((n, DIM)).astype(np.float32) / math.sqrt(DIM)
    return _unit(centres[rng.integers(TOPICS, size=n)] + SPREAD * noise)


def paraphrases(rng: np.random.Generator, vectors: np.ndarray) -> np.ndarray:
    """Return noisy copies of ``vectors``: what a reworded query embeds to."""
    noise = rng.standard_normal(vectors.shape).astype(np.float32) / math.sqrt(DIM)
    return _unit(vectors + NOISE * noise)


def text_of(i: int) -> str:
    """Return a unique lowercase question without digits (so the number check has nothing to veto)."""
    words, i = [], i + 1
    while i:
        i, r = divmod(i, len(_SYLLABLES) ** 2)
        words.append(_SYLLABLES[r // len(_SYLLABLES)] + _SYLLABLES[r % len(_SYLLABLES)])
    return "what does the word " + " ".join(words) + " mean in the old language"


def request_of(text: str) -> dict:
    return {"model": MODEL, "temperature": 0, "messages": [{"role": "user", "content": text}]}


# -- the engine end to end -------------------------------------------------------------------


def bulk_fill(directory: str, embedder: PrecomputedEmbedder, texts: list[str], vectors: np.ndarray) -> float:
    """Write entries straight to a DiskStore (no index), as SemanticCache.insert would; return seconds."""
    size = len(json.dumps(RESPONSE).encode()) + 4 * DIM
    store = DiskStore(directory)
    store.bind(embedder.model_id, embedder.dim)
    start, now = time.perf_counter(), time.time()
    for text, vector in zip(texts, vectors):
        key = normalize(request_of(text))
        usage = RESPONSE["usage"]
        store.put(Entry.create(id=store.next_id(), partition=key.partition, exact_key=key.exact_key, query_text=key.query_text,
                        embedding=vector, response=RESPONSE, model=MODEL, prompt_tokens=usage["prompt_tokens"],
                        completion_tokens=usage["completion_tokens"], created_at=now, size=size + len(text.encode())))
    elapsed = time.perf_counter() - start
    store.close()
    return elapsed


def bench_cache(n: int, *, policy: MatchPolicy, inserts: int, lookups: int, seed: int) -> dict:
    """Fill a one-partition cache with ``n`` entries and measure what a caller waits for."""
    rng = np.random.default_rng(seed + n)
    total = n + inserts
    texts = [text_of(i) for i in range(total)]
    vectors = clustered_vectors(rng, total)
    embedder = PrecomputedEmbedder()
    embedder.register(texts, vectors)
    picks = rng.integers(total, size=lookups)
    query_texts = [texts[i] + " today" for i in picks]
    embedder.register(query_texts, paraphrases(rng, vectors[picks]))
    directory = tempfile.mkdtemp(prefix=f"semcache-bench-{n}-")
    try:
        fill_s = bulk_fill(directory, embedder, texts[:n], vectors[:n])
        gc.collect()
        rss_before = rss_bytes()
        start = time.perf_counter()
        cache = SemanticCache(directory, embedder=embedder, policy=policy, ttl=None, max_entries=None, max_bytes=None)
        rebuild_s = time.perf_counter() - start
        rss_growth = rss_bytes() - rss_before
        try:
            insert_timer = Timer()
            for text in texts[n:]:
                with insert_timer:
                    cache.insert(request_of(text), RESPONSE)
            exact_timer, exact_hits = Timer(), 0
            for i in picks:
                with exact_timer:
                    hit = cache.lookup(request_of(texts[i]))
                exact_hits += hit is not None and hit.kind == "exact"
            semantic_timer, semantic_hits = Timer(), 0
            for text in query_texts:
                with semantic_timer:
                    hit = cache.lookup(request_of(text))
                semantic_hits += hit is not None and hit.kind == "semantic"
            # faiss's default OpenMP threads vs one thread: on a busy 2-core box the difference is
            # the whole semantic-lookup cost (see "index": flat vs flat_1_thread).
            one_thread_timer = Timer()
            with faiss_threads(1):
                for text in query_texts:
                    with one_thread_timer:
                        cache.lookup(request_of(text))
            entries = len(cache)
            volume = cache.store.volume()
        finally:
            cache.close()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    insert_s = sum(insert_timer.samples)
    return {
        "entries": n,
        "entries_after_inserts": entries,
        "index_kind": "ivf" if n > APPROXIMATE_THRESHOLD else "flat",
        "bulk_fill": {"entries": n, "seconds": round(fill_s, 3), "per_s": round(n / fill_s, 1),
                      "how": "DiskStore.put + next_id, one SQLite transaction per entry"},
        "rebuild_s": round(rebuild_s, 3),
        "rss_growth_bytes_per_entry": round(rss_growth / n, 1),
        "disk_bytes_per_entry": round(volume / entries, 1),
        "insert": {"per_s": round(inserts / insert_s, 1) if insert_s else None, **insert_timer.summary()},
        "exact_lookup": {"hit_rate": round(exact_hits / lookups, 4), **exact_timer.summary()},
        "semantic_lookup": {"hit_rate": round(semantic_hits / lookups, 4), **semantic_timer.summary()},
        "semantic_lookup_1_faiss_thread": one_thread_timer.summary(),
    }


@contextmanager
def faiss_threads(count: int) -> Iterator[None]:
    """Run the block with faiss limited to ``count`` OpenMP threads (process-wide), then restore."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


# -- flat versus IVF -------------------------------------------------------------------------


def _search_timer(index: FaissIndex, queries: np.ndarray, k: int) -> tuple[dict, np.ndarray]:
    timer, found = Timer(), []
    for query in queries:
        with timer:
            _, ids = index.search(query, k)
        found.append(np.pad(ids, (0, k - len(ids)), constant_values=-1))
    return timer.summary(), np.stack(found)


def bench_index(n: int, *, nprobes: Sequence[int], queries: int, seed: int, k: int = 5) -> dict:
    """Compare exact search with the engine's IVF at ``n`` vectors: latency, build time, recall."""
    rng = np.random.default_rng(seed + 17 * n)
    vectors = clustered_vectors(rng, n)
    targets = vectors[rng.integers(n, size=queries)]
    probes = paraphrases(rng, targets)
    ids = np.arange(n, dtype=np.int64)
    flat = FaissIndex(DIM, approximate_threshold=n + 1)
    flat.add(ids, vectors)
    result: dict = {"size": n}
    result["flat"], truth = _search_timer(flat, probes, k)
    with faiss_threads(1):
        result["flat_1_thread"], _ = _search_timer(flat, probes, k)
    del flat
    gc.collect()
    rss_before, start = rss_bytes(), time.perf_counter()
    ivf = FaissIndex(DIM, approximate_threshold=0)  # trains exactly as the engine does past its threshold
    ivf.add(ids, vectors)
    result["ivf_build_s"] = round(time.perf_counter() - start, 3)
    result["ivf_rss_growth_bytes_per_vector"] = round((rss_bytes() - rss_before) / n, 1)
    result["ivf_nlist"] = int(ivf._index.nlist)
    result["ivf"] = {}
    for nprobe in nprobes:
        ivf._index.nprobe = nprobe  # the knob FaissIndex sets from its ``nprobe`` argument at training
        summary, found = _search_timer(ivf, probes, k)
        recall_1 = float(np.mean(found[:, 0] == truth[:, 0]))
        recall_k = float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found.tolist(), truth.tolist())]))
        result["ivf"][str(nprobe)] = {**summary, "recall_at_1": round(recall_1, 4), f"recall_at_{k}": round(recall_k, 4)}
    return result


def recommend(index_results: list[dict], nprobes: Sequence[int], budget_ms: float) -> dict:
    """Pick nprobe (smallest with recall@1 >= 0.99 everywhere) and the flat-to-IVF threshold.

    The threshold is the largest measured size whose flat p50 (engine's thread setting) stays
    within ``budget_ms``; below every size, the smallest size measured.
    """
    good = [p for p in nprobes if all(r["ivf"][str(p)]["recall_at_1"] >= 0.99 for r in index_results)]
    nprobe = min(good) if good else max(nprobes)
    within = [r["size"] for r in index_results if r["flat"]["p50_ms"] <= budget_ms]
    threshold = max(within) if within else min(r["size"] for r in index_results)
    return {"nprobe": nprobe, "approximate_threshold": threshold, "flat_budget_ms": budget_ms,
            "rule": "nprobe: smallest with IVF recall@1 >= 0.99 at every size; threshold: largest size with flat p50 <= budget"}


# -- the match policy and the real model -----------------------------------------------------


def bench_policy(policy: MatchPolicy, repeats: int, seed: int) -> dict:
    """Time ``policy.decide`` on five candidates (the default top_k), all below the threshold, so
    every check runs on every candidate: the policy's whole cost beyond the index search.

    ``new_query``: a fresh query text each time (its facts are parsed once per lookup, as a real
    query's are; the stored texts' facts are cached, as in the engine). ``same_query``: one query
    text repeated (everything cached): the floor.
    """
    rng = np.random.default_rng(seed)
    vectors = clustered_vectors(rng, 6)
    candidates = [Candidate(i, text_of(i), min(float(vectors[0] @ vectors[i]), policy.threshold - 0.05))
                  for i in range(1, 6)]
    queries = [text_of(1_000_000 + i) + " today" for i in range(repeats)]
    out: dict = {"candidates": len(candidates), "policy": policy.to_dict()}
    for name, texts in (("new_query", queries), ("same_query", [queries[0]] * repeats)):
        timer = Timer()
        for text in texts:
            with timer:
                decision = policy.decide(text, candidates)
        out[name] = timer.summary()
        out[name]["reason"] = decision.reason
    out["p50_ms"] = out["new_query"]["p50_ms"]
    return out


def bench_model(queries: int, batches: int) -> dict:
    """Time the packaged all-MiniLM-L6-v2 on one short query, and on batches of 32."""
    from semcache.embedding.sentence import SentenceTransformerEmbedder

    start = time.perf_counter()
    embedder = SentenceTransformerEmbedder()
    load_s = time.perf_counter() - start
    verbs = ["reset", "install", "cancel", "export", "rename", "merge", "delete", "share", "sort", "print"]
    things = ["my password", "a branch", "the invoice", "a pdf file", "the printer", "my account", "a spreadsheet",
              "a docker image", "the subscription", "a python list"]
    texts = [f"how do I {v} {t} on {os_}" for os_ in ("linux", "windows", "a mac") for v in verbs for t in things]
    embedder.embed(texts[:8])  # warm-up: first calls allocate
    single = Timer()
    for text in texts[:queries]:
        with single:
            embedder.embed([text])
    batch = Timer()
    for b in range(batches):
        chunk = [texts[(b * 32 + j) % len(texts)] for j in range(32)]
        with batch:
            embedder.embed(chunk)
    return {"model": embedder.model_id, "load_s": round(load_s, 3), "batch_1": single.summary(),
            "batch_32": batch.summary(), "batch_32_per_text_p50_ms": round(batch.summary()["p50_ms"] / 32, 4)}


def beyond_embedding(results: dict) -> dict:
    """A semantic lookup's p50 without the model at each size, beside the model's p50 on one query."""
    model = _p50(results.get("embedding") or {}, "batch_1")
    out: dict = {"embedding_batch_1_p50_ms": model, "sizes": {}}
    for cache in results["cache"]:
        lookup = cache["semantic_lookup"]["p50_ms"]
        out["sizes"][str(cache["entries"])] = {"semantic_lookup_p50_ms": lookup,
                                               "share_of_embedding": round(lookup / model, 4) if model else None}
    return out


def _p50(data: dict, key: str) -> float | None:
    return (data.get(key) or {}).get("p50_ms")


# -- driver ----------------------------------------------------------------------------------


def _sizes(text: str) -> list[int]:
    try:
        return [int(s.replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_lookup", description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=_sizes, default=None, help="cache sizes (default 1000,10000,100000)")
    parser.add_argument("--index-sizes", type=_sizes, default=None, help="flat-vs-IVF sizes (default 10k..200k)")
    parser.add_argument("--nprobes", type=_sizes, default=None, help="IVF nprobe values (default 4,8,16,32)")
    parser.add_argument("--lookups", type=int, default=None, help="lookups per tier and size (default 2000)")
    parser.add_argument("--inserts", type=int, default=None, help="normal insert() calls per size (default 2000)")
    parser.add_argument("--no-model", action="store_true", help="skip the real embedding model")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, no model: checks the script in seconds")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"), help="output directory")
    args = parser.parse_args(argv)
    small = args.smoke
    args.sizes = args.sizes or ([200] if small else [1_000, 10_000, 100_000])
    args.index_sizes = args.index_sizes or ([500, 1_000] if small else [10_000, 25_000, 50_000, 100_000, 200_000])
    args.nprobes = args.nprobes or ([4, 16] if small else [4, 8, 16, 32])
    args.lookups = args.lookups or (60 if small else 2_000)
    args.inserts = args.inserts or (20 if small else 2_000)
    args.no_model = args.no_model or small
    return args


def plot(results: dict, out: Path) -> list[str]:
    cache = results["cache"]
    xs = [c["entries"] for c in cache]
    series = {f"{tier} {p}": (xs, [c[f"{tier}_lookup"][f"{p}_ms"] for c in cache])
              for tier in ("exact", "semantic") for p in ("p50", "p99")}
    paths = [plot_lines(out / "lookup.png", series, title="SemanticCache.lookup latency (one partition, no model)",
                        xlabel="entries", ylabel="ms", hlines={"0.5 ms exact target": 0.5, "1 ms semantic target": 1.0})]
    index = results["index"]
    xs = [r["size"] for r in index]
    series = {"flat p50": (xs, [r["flat"]["p50_ms"] for r in index]),
              "flat p50 (1 faiss thread)": (xs, [r["flat_1_thread"]["p50_ms"] for r in index])}
    for nprobe in results["parameters"]["nprobes"]:
        series[f"ivf nprobe={nprobe} p50"] = (xs, [r["ivf"][str(nprobe)]["p50_ms"] for r in index])
    paths.append(plot_lines(out / "lookup_index.png", series, title="FaissIndex search, k=5: flat vs IVF",
                            xlabel="vectors in the partition", ylabel="ms"))
    return [str(p) for p in paths]


def _progress(what: str, started: float) -> None:
    print(f"[{time.perf_counter() - started:6.1f}s] {what}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the benchmark, write ``lookup.json`` and the plots to ``--out``, return the results."""
    args = parse_args(argv)
    out = Path(args.out)
    started = time.perf_counter()
    results: dict = {
        "benchmark": "lookup",
        "command": "python -m benchmarks.bench_lookup " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": machine_info(),
        "parameters": {"sizes": args.sizes, "index_sizes": args.index_sizes, "nprobes": args.nprobes,
                       "lookups": args.lookups, "inserts": args.inserts, "seed": args.seed, "dim": DIM,
                       "topics": TOPICS, "spread": SPREAD, "paraphrase_noise": NOISE, "top_k": 5,
                       "approximate_threshold": APPROXIMATE_THRESHOLD, "ivf_nprobe_default": FaissIndex(DIM).nprobe},
        "targets": TARGETS,
    }
    # The shipped default (cosine + every check, English) end to end: the synthetic queries are an
    # English question plus " today", which no check vetoes, so a paraphrase vector is a hit.
    policy = MatchPolicy()
    results["parameters"]["policy"] = policy.to_dict()
    results["cache"], results["index"] = [], []
    for n in args.sizes:
        _progress(f"cache with {n} entries", started)
        results["cache"].append(bench_cache(n, policy=policy, inserts=args.inserts, lookups=args.lookups, seed=args.seed))
    for n in args.index_sizes:
        _progress(f"flat vs IVF at {n} vectors", started)
        results["index"].append(bench_index(n, nprobes=args.nprobes, queries=min(args.lookups, 300), seed=args.seed))
    results["recommendation"] = recommend(results["index"], args.nprobes, budget_ms=TARGETS["semantic_p50_ms_at_100k"] / 2)
    results["policy_decide"] = bench_policy(policy, args.lookups, args.seed)
    if not args.no_model:
        _progress("embedding model", started)
    results["embedding"] = None if args.no_model else bench_model(queries=200, batches=20)
    results["beyond_embedding"] = beyond_embedding(results)
    results["machine"]["loadavg_at_end"] = machine_info().get("loadavg_1_5_15")
    results["duration_s"] = round(time.perf_counter() - started, 1)
    results["plots"] = plot(results, out)
    write_json(out / "lookup.json", results)
    return results


if __name__ == "__main__":
    main()
