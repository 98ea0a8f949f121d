"""This process's view of the store: the vector index and what it needs per entry, kept in step.

Derived state, never written back: built from the store at open, then brought up to date by
replaying the store's change log (``sync``: one counter read when nothing changed), so several
processes sharing one store directory see each other's writes on their next lookup. When the
log no longer reaches back far enough, the view is rebuilt from a full scan.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np

from .index import PartitionedIndex
from .entry import Entry
from .protocols import Store

__all__ = ["EntryMeta", "Mirror"]


@dataclass(slots=True)
class EntryMeta:
    """What lookups and eviction need of an entry without reading the store."""

    partition: str
    exact_key: str
    query_text: str
    expires_at: float | None
    size: int
    last_used: float
    rejected: tuple[str, ...]


class Mirror:
    """The index, entry metadata, exact-key map and byte count of one store, for one process."""

    def __init__(self, store: Store, dim: int) -> None:
        self.store = store
        self.index = PartitionedIndex(dim)
        self.meta: dict[int, EntryMeta] = {}
        self.exact: dict[str, int] = {}
        self.bytes = 0
        self._seq = -1
        self._lock = threading.RLock()

    def __len__(self) -> int:
        return len(self.meta)

    def sync(self) -> None:
        """Apply the store's new change records (rebuild when the log no longer reaches back)."""
        if self._seq >= 0 and self.store.head() == self._seq:
            return  # the common case, one counter read and no lock: nothing changed
        with self._lock:
            head, changes = self.store.changes_since(self._seq) if self._seq >= 0 else (self.store.head(), None)
            if changes is None:
                self._rebuild(head)
                return
            for change in changes:
                if change.op == "del":
                    self._forget(change.entry_id)
                else:
                    entry = self.store.get(change.entry_id)
                    if entry is not None:
                        self._remember(entry)
            self._seq = head

    def _rebuild(self, head: int) -> None:
        self.index.clear()
        self.meta.clear()
        self.exact.clear()
        self.bytes = 0
        batch: dict[str, tuple[list[int], list[np.ndarray]]] = {}
        for entry in self.store.scan():
            self._remember(entry, index=False)
            if entry.embedding is not None:
                ids, vectors = batch.setdefault(entry.partition, ([], []))
                ids.append(entry.id)
                vectors.append(entry.embedding)
        for partition, (ids, vectors) in batch.items():  # one bulk add per partition
            self.index.add(partition, np.asarray(ids, np.int64), np.stack(vectors))
        self._seq = head

    def _remember(self, entry: Entry, *, index: bool = True) -> None:
        old = self.meta.get(entry.id)
        if old is not None:
            self.bytes -= old.size
            if self.exact.get(old.exact_key) == entry.id:
                del self.exact[old.exact_key]
        self.meta[entry.id] = EntryMeta(entry.partition, entry.exact_key, entry.query_text, entry.expires_at,
                                        entry.size, entry.last_hit_at or entry.created_at, entry.rejected)
        self.bytes += entry.size
        self.exact[entry.exact_key] = entry.id
        if index and entry.embedding is not None and entry.id not in self.index:
            self.index.add(entry.partition, np.asarray([entry.id], np.int64), entry.embedding.reshape(1, -1))

    def _forget(self, entry_id: int) -> None:
        meta = self.meta.pop(entry_id, None)
        if meta is None:
            return
        self.bytes -= meta.size
        if self.exact.get(meta.exact_key) == entry_id:
            del self.exact[meta.exact_key]
        self.index.remove([entry_id])

    # Readers below iterate ``meta`` under the lock: worker threads' ``sync`` mutates it.

    def expired(self, now: float, *, grace: float = 0.0) -> list[int]:
        """Return the ids of entries that expired more than ``grace`` seconds before ``now``."""
        with self._lock:
            return [i for i, m in self.meta.items() if m.expires_at is not None and now >= m.expires_at + grace]

    def in_partition(self, partition: str) -> list[int]:
        """Return the ids of the entries of one partition."""
        with self._lock:
            return [i for i, m in self.meta.items() if m.partition == partition]

    def least_recently_used(self, *, keep_entries: int | None, keep_bytes: int | None, exclude: set[int] = frozenset()) -> list[int]:
        """Return ids to evict, least recently used first, until the rest (less ``exclude``) fits."""
        with self._lock:
            sizes = {i: m.size for i, m in self.meta.items()}
            order = sorted((m.last_used, i) for i, m in self.meta.items() if i not in exclude)
            volume = self.bytes - sum(sizes[i] for i in exclude if i in sizes)
        count = len(sizes) - len(exclude & sizes.keys())
        victims = []
        for _, entry_id in order:
            if (keep_entries is None or count <= keep_entries) and (keep_bytes is None or volume <= keep_bytes):
                break
            victims.append(entry_id)
            count, volume = count - 1, volume - sizes[entry_id]
        return victims
