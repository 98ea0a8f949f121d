"""Check a store for what a crash, an upgrade or a bug can leave behind, and repair it (``semcache doctor``).

Reported:

- ``corrupt``: entries whose answer cannot be rebuilt (a type an upgrade removed), for
  ``--repair`` to remove; records that cannot be decoded at all are removed as soon as anything
  reads them (the scan here included) and counted in ``removed_undecodable``;
- ``dangling_pointers``: exact keys pointing at an entry that is gone (a lookup then reads
  nothing and misses; harmless but wasted);
- ``shadowed``: entries no exact key points at (an interrupted replace; they can still answer
  semantically, but the exact tier never finds them);
- ``bad_vectors``: entries whose vector has the wrong dimension, or is not unit-norm;
- ``log``: the change log replayed from its start (when it still reaches back) against the
  entries: an entry written without its change record, or a record of an entry that is gone,
  would make replicas disagree with the store.

``repair`` removes corrupt entries, dangling pointers and entries with bad vectors, and points
each shadowed entry's exact key back at it when no other entry holds it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from ..storage.entry import CorruptRecord

__all__ = ["Diagnosis", "diagnose", "repair"]


@dataclass
class Diagnosis:
    entries: int = 0
    corrupt: list[int] = field(default_factory=list)
    dangling_pointers: list[str] = field(default_factory=list)
    shadowed: list[int] = field(default_factory=list)
    bad_vectors: list[int] = field(default_factory=list)
    log: dict = field(default_factory=dict)
    removed_undecodable: int = 0  # ever, by any process (the store's corrupt_records counter)
    removed_now: int = 0  # by this diagnosis's own scan

    @property
    def healthy(self) -> bool:
        return not (self.corrupt or self.dangling_pointers or self.shadowed or self.bad_vectors) and self.log.get("agrees", True)

    def as_dict(self) -> dict:
        out = asdict(self)
        out["healthy"] = self.healthy
        for name in ("corrupt", "dangling_pointers", "shadowed", "bad_vectors"):
            out[f"{name}_count"] = len(out[name])
            out[name] = out[name][:50]
        return out


def diagnose(store, dim: int | None = None) -> Diagnosis:
    """Read every entry and pointer of ``store``; ``dim``: the embedding dimension (default: the store's binding)."""
    meta = store.meta() or {}
    dim = dim or meta.get("dim")
    report = Diagnosis()
    before = _undecodable(store)
    pointers = store.exact_pointers()
    pointed = {entry_id for entry_id in pointers.values()}
    ids = set()
    for entry in store.scan():
        ids.add(entry.id)
        try:
            entry.response  # noqa: B018 -- decoding is the check
        except CorruptRecord:
            report.corrupt.append(entry.id)
            continue
        if entry.id not in pointed:
            report.shadowed.append(entry.id)
        vector = entry.embedding
        if vector is not None and (vector.shape != (dim,) or not np.isfinite(vector).all() or abs(float(np.linalg.norm(vector)) - 1) > 1e-3):
            report.bad_vectors.append(entry.id)
    report.entries = len(ids)
    report.removed_undecodable = _undecodable(store)
    report.removed_now = report.removed_undecodable - before
    report.dangling_pointers = sorted(key for key, entry_id in pointers.items() if entry_id not in ids)
    head, changes = store.changes_since(0)
    if changes is None:
        report.log = {"head": head, "replayable": False}
    else:
        alive: set[int] = set()
        for change in changes:
            (alive.add if change.op == "put" else alive.discard)(change.entry_id)
        report.log = {"head": head, "replayable": True, "agrees": alive == ids,
                      "logged_but_missing": len(alive - ids), "stored_but_unlogged": len(ids - alive)}
    return report


def _undecodable(store) -> int:
    return int(sum(v for (_, _, name), v in store.counters().items() if name == "corrupt_records"))


def repair(store, report: Diagnosis) -> dict:
    """Fix what ``diagnose`` found; return how many of each were fixed."""
    removed = store.delete(report.corrupt + report.bad_vectors)
    dropped = store.drop_pointers(report.dangling_pointers)
    pointers = store.exact_pointers()
    repointed = 0
    for entry_id in report.shadowed:
        entry = store.get(entry_id)
        if entry is not None and entry.exact_key not in pointers:
            store.put(entry)  # rewrites the entry with its pointer, in one transaction
            repointed += 1
    return {"removed_entries": removed, "dropped_pointers": dropped, "repointed": repointed}
