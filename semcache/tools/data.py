"""Read labelled files and split them without leaks: rows, pairs, intent groups, grouped splits.

``read_rows`` reads .jsonl or .csv and names the line of every error; ``group_split`` keeps
every connected component of shared texts on one side, so no text is scored on both.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path
from typing import Any, Iterable, Sequence

from ..errors import ConfigError, RequestError

__all__ = ["Pair", "components", "group_split", "intent_groups", "parse_label", "progress", "read_pairs", "read_rows"]

Pair = tuple[str, str, int]


def read_rows(path: str | Path, columns: Sequence[str], optional: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Read a .jsonl or .csv file; every row must have ``columns`` (named with its line in errors)."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"input file {str(path)!r} does not exist")
    if path.suffix not in (".jsonl", ".csv"):
        raise ConfigError(f"input file {str(path)!r} must be .jsonl or .csv")
    rows: list[dict[str, Any]] = []
    with path.open(newline="", encoding="utf-8") as f:
        if path.suffix == ".csv":
            source: Iterable[tuple[int, Any]] = enumerate(csv.DictReader(f), start=2)
        else:
            source = ((n, line) for n, line in enumerate(f, start=1) if line.strip())
        for line_no, raw in source:
            if isinstance(raw, str):
                try:
                    raw = json.loads(raw)
                except json.JSONDecodeError as exc:
                    raise RequestError(f"{path}:{line_no}: not valid JSON ({exc.msg})", field=f"line {line_no}") from exc
                if not isinstance(raw, dict):
                    raise RequestError(f"{path}:{line_no}: expected a JSON object", field=f"line {line_no}")
            for column in columns:
                if raw.get(column) in (None, ""):
                    raise RequestError(f"{path}:{line_no}: missing column {column!r}", field=column)
            rows.append(raw)
    if not rows:
        raise RequestError(f"input file {str(path)!r} has no rows", field="path")
    return rows


def parse_label(value: Any, where: str) -> int:
    """Return a 0/1 label from 0, 1, "0", "1", 0.0, 1.0 or a bool; raise ``RequestError`` naming ``where``."""
    if isinstance(value, bool):
        return int(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = None
    if number not in (0.0, 1.0):
        raise RequestError(f"{where}: label must be 0 or 1, got {value!r}", field="label")
    return int(number)


def progress(total: int, desc: str):
    """Return a rich bar on stderr, drawn once the operation has run ~2 s (``tools.progress``)."""
    from .progress import progress as bar

    return bar(total, desc)


def read_pairs(path: str | Path, text_a: str = "text_a", text_b: str = "text_b", label: str = "label") -> list[Pair]:
    """Read labelled pairs from a .jsonl or .csv file (``evaluate.read_rows``: errors name the line)."""
    rows = read_rows(path, [text_a, text_b, label])
    return [(str(r[text_a]), str(r[text_b]), parse_label(r[label], f"{path}:{n}")) for n, r in enumerate(rows, start=1)]


def components(edges: Iterable[tuple[str, str]]) -> dict[str, int]:
    """Number the connected components of a graph given by its edges: text -> component id.

    Ids are dense and follow sorted text order, so the numbering is the same on every run.
    """
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        root_a, root_b = find(a), find(b)
        if root_a != root_b:
            parent[root_a] = root_b
    ids: dict[str, int] = {}
    return {text: ids.setdefault(find(text), len(ids)) for text in sorted(parent)}


def intent_groups(pairs: Sequence[Pair], indices: Iterable[int]) -> dict[str, int]:
    """Map every text of the given pairs to its intent: a component over the duplicate (label 1) edges."""
    chosen = [pairs[i] for i in indices]
    every_text = [(t, t) for a, b, _ in chosen for t in (a, b)]  # a text with no duplicate is an intent of its own
    return components([(a, b) for a, b, y in chosen if y == 1] + every_text)


def group_split(pairs: Sequence[Pair], holdout: float, seed: int = 0) -> tuple[list[int], list[int]]:
    """Split pair indices into (fit, held_out) so that no text appears on both sides.

    Pairs sharing a text form one connected component; whole components are assigned, in
    a seeded random order, until the held-out part holds about ``holdout`` of the pairs.
    """
    component = components((a, b) for a, b, _ in pairs)
    members: dict[int, list[int]] = {}
    for i, (a, _, _) in enumerate(pairs):
        members.setdefault(component[a], []).append(i)
    groups = sorted(members.values())
    random.Random(seed).shuffle(groups)
    fit, held_out, target = [], [], holdout * len(pairs)
    for group in groups:
        (held_out if len(held_out) < target else fit).extend(group)
    return sorted(fit), sorted(held_out)
