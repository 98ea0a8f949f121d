"""The project's prompt benchmark: intent groups and one-detail near misses, split by family.

    from benchmarks.prompts import load
    bench = load()                      # every file in benchmarks/data/prompts/ + the hard negatives
    dev = bench.select(split="dev", lang="en")
    dev.stream_rows()                   # [{"text", "group"}]: groups plus near misses as intents of their own
    dev.pairs()                         # [(a, b, label, kind)]: paraphrase pairs (1) and near misses (0)

Data (``benchmarks/data/prompts/README.md`` says how it was written): one JSON object per line,
a *family* of sibling intent groups (each 3-6 phrasings that share one answer; siblings differ in
one detail) with near-miss pairs (``a`` a phrasing of the family, ``b`` one detail changed).
``benchmarks/data/hard_negatives.jsonl`` is folded in: its negatives become near misses, its
positives two-phrasing groups.

The split is fixed and by family, so siblings and their near misses never cross it: the
SHA-256 of the family id puts half the families in ``train``, a quarter in ``dev`` (where the
default policy is chosen) and a quarter in ``test`` (only ever reported, never tuned on).
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

__all__ = ["Group", "NearMiss", "PromptBench", "load", "split_of"]

DATA = Path(__file__).resolve().parent / "data"
PROMPTS = DATA / "prompts"
SPLITS = ("train", "dev", "test")
SAME_INTENT = "same_intent.jsonl"  # the audit's joins, not a file of families
# hard_negatives.jsonl kinds -> the benchmark's near-miss kinds
_KINDS = {"numbers": "number", "units": "unit", "versions": "version", "dates": "year", "negation": "negation",
          "entities": "entity", "identifiers": "entity", "quoted": "other", "order": "direction",
          "question_word": "other", "language": "other"}


def split_of(family: str) -> str:
    """Return the fixed split of a family: 50% train, 25% dev, 25% test by SHA-256 of its id."""
    bucket = int(hashlib.sha256(family.encode()).hexdigest()[:8], 16) % 4
    return ("train", "train", "dev", "test")[bucket]


@dataclass(frozen=True)
class Group:
    """An intent: phrasings that all get the same answer."""

    id: str
    family: str
    domain: str
    lang: str
    split: str
    texts: tuple[str, ...]


@dataclass(frozen=True)
class NearMiss:
    """A pair that differs in one detail, so ``a``'s answer is wrong for ``b``."""

    a: str
    b: str
    kind: str
    family: str
    domain: str
    lang: str
    split: str


@dataclass
class PromptBench:
    groups: list[Group] = field(default_factory=list)
    near_misses: list[NearMiss] = field(default_factory=list)
    # Texts of different groups (or near misses) that ask the same thing after all: two writers
    # wrote one intent twice ("same_intent.jsonl", from an audit of cross-family neighbours).
    same: list[tuple[str, str]] = field(default_factory=list)

    def select(self, *, split: str | Iterable[str] | None = None, lang: str | Iterable[str] | None = None,
               domain: str | None = None) -> "PromptBench":
        """Return the groups and near misses of one split / language(s) / domain."""
        splits = {split} if isinstance(split, str) else set(split) if split is not None else None
        langs = {lang} if isinstance(lang, str) else set(lang) if lang is not None else None

        def keep(item) -> bool:
            return ((splits is None or item.split in splits) and (langs is None or item.lang in langs)
                    and (domain is None or item.domain == domain))

        return PromptBench([g for g in self.groups if keep(g)], [m for m in self.near_misses if keep(m)], self.same)

    def group_of(self) -> dict[str, str]:
        """Return text -> group id for every phrasing of every group."""
        return {text: g.id for g in self.groups for text in g.texts}

    def intent_of(self) -> dict[str, str]:
        """Return text -> intent for every phrasing and near miss: its group, a near miss in no group its
        own intent, and the groups ``same`` joins one intent (named by the first in sorted order)."""
        intent = self.group_of()
        for m in self.near_misses:
            intent.setdefault(m.b, f"near:{m.family}:{m.b}")
        parent = {i: i for i in set(intent.values())}

        def find(x: str) -> str:
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for a, b in self.same:
            if a in intent and b in intent:
                ra, rb = sorted((find(intent[a]), find(intent[b])))
                parent[rb] = ra
        return {text: find(i) for text, i in intent.items()}

    def stream_rows(self) -> list[dict]:
        """Every phrasing with its intent, plus each near miss ``b`` that is in no group as an intent of
        its own (a request a cache meets and must not answer with a sibling's answer)."""
        intent = self.intent_of()
        rows = [{"text": t, "group": intent[t], "lang": g.lang, "domain": g.domain} for g in self.groups for t in g.texts]
        seen = set(self.group_of())
        for m in self.near_misses:
            if m.b not in seen:
                seen.add(m.b)
                rows.append({"text": m.b, "group": intent[m.b], "lang": m.lang, "domain": m.domain})
        return rows

    def positive_pairs(self) -> list[tuple[str, str]]:
        """Every pair of two phrasings of one group (both orders are the same question: one each)."""
        return [(a, b) for g in self.groups for a, b in itertools.combinations(g.texts, 2)]

    def pairs(self) -> list[tuple[str, str, int, str]]:
        """(a, b, label, kind): paraphrase pairs (label 1, kind "paraphrase") and near misses (label 0).

        A near miss whose ``b`` asks what ``a`` asks (its own group's phrasing, or an intent the audit
        joined to it) is a data error and is dropped.
        """
        intent = self.intent_of()
        out = [(a, b, 1, "paraphrase") for a, b in self.positive_pairs()]
        out += [(m.a, m.b, 0, m.kind) for m in self.near_misses if intent[m.b] != intent[m.a]]
        return out

    def summary(self) -> dict:
        """Counts per split and language: groups, phrasings, near misses."""
        out: dict = {}
        for g in self.groups:
            row = out.setdefault(g.split, {}).setdefault(g.lang, {"groups": 0, "texts": 0, "near_misses": 0, "families": set()})
            row["groups"] += 1
            row["texts"] += len(g.texts)
            row["families"].add(g.family)
        for m in self.near_misses:
            out.setdefault(m.split, {}).setdefault(m.lang, {"groups": 0, "texts": 0, "near_misses": 0, "families": set()})["near_misses"] += 1
        return {s: {lang: {**row, "families": len(row["families"])} for lang, row in langs.items()} for s, langs in out.items()}


def _read_families(path: Path) -> Iterable[dict]:
    for line_no, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if line.strip():
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({exc.msg})") from exc


def family_files(root: Path = PROMPTS) -> list[Path]:
    """The benchmark's files of families (every ``*.jsonl`` but the audit's)."""
    return [path for path in sorted(root.glob("*.jsonl")) if path.name != SAME_INTENT]


def load(root: Path = PROMPTS, *, hard_negatives: Path | None = DATA / "hard_negatives.jsonl") -> PromptBench:
    """Read every ``*.jsonl`` under ``root`` (and fold in ``hard_negatives``); raise ``ValueError`` on a bad file."""
    bench = PromptBench()
    for path in family_files(root):
        for family in _read_families(path):
            split = split_of(family["family"])
            for g in family["groups"]:
                bench.groups.append(Group(g["id"], family["family"], family["domain"], family["lang"], split, tuple(g["texts"])))
            for m in family.get("near_misses", []):
                bench.near_misses.append(NearMiss(m["a"], m["b"], m["kind"], family["family"], family["domain"], family["lang"], split))
    if hard_negatives is not None and hard_negatives.exists():
        _fold_hard_negatives(bench, hard_negatives)
    bench = _one_split_per_text(bench)
    same = root / SAME_INTENT
    if same.exists():
        bench.same = [(r["a"], r["b"]) for r in _read_families(same)]
    return bench


def _one_split_per_text(bench: PromptBench) -> PromptBench:
    """Keep each text in the first group that has it (files in name order, hard negatives last),
    and drop near misses that reach into another split's group: a text seen in training must
    never be scored in dev or test, and one text never has two answers."""
    split_of_text: dict[str, str] = {}
    groups = []
    for g in bench.groups:
        texts = tuple(t for t in g.texts if t not in split_of_text)
        split_of_text.update(dict.fromkeys(texts, g.split))
        if texts:
            groups.append(replace(g, texts=texts))
    near = [m for m in bench.near_misses
            if split_of_text.get(m.a, m.split) == m.split and split_of_text.get(m.b, m.split) == m.split]
    return PromptBench(groups, near)


def _fold_hard_negatives(bench: PromptBench, path: Path) -> None:
    """Hard negatives: each prompt (text_a) is a family; its paraphrase makes a 2-phrasing group."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    taken = {t for g in bench.groups for t in g.texts}
    for a, members in itertools.groupby(sorted(rows, key=lambda r: r["text_a"]), key=lambda r: r["text_a"]):
        members = list(members)
        family = "hardneg-" + hashlib.sha256(a.encode()).hexdigest()[:10]
        split = split_of(family)
        positives = [r["text_b"] for r in members if r["label"] == 1 and r["text_b"] not in taken]
        if a not in taken:
            group = Group(family, family, "hard_negatives", "en", split, (a, *positives))
            bench.groups.append(replace(group, texts=tuple(dict.fromkeys(group.texts))))
            taken.update(group.texts)
        for r in members:
            if r["label"] == 0:
                bench.near_misses.append(NearMiss(a, r["text_b"], _KINDS.get(r["kind"], "other"), family,
                                                  "hard_negatives", "en", split))
