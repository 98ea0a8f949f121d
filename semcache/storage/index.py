"""Find the stored vectors closest to a query: the VectorIndex protocol and its FAISS implementation.

Derived state: every index can be rebuilt from the store. Vectors are unit-norm, so inner
product is cosine similarity, and ``search`` returns cosines (higher is closer).

A partition's index is exact (``IndexFlatIP``) while small and switches to an approximate
inverted-file index (``IndexIVFFlat``, ``nlist = sqrt(n)``) past ``approximate_threshold``
vectors, because a flat scan grows linearly: see benchmarks/results/lookup.json for where the
cross-over lies on a 2-core CPU and the IVF recall there. IVF (not HNSW) because FAISS's HNSW
cannot remove vectors and rebuilds slowly, while TTL and eviction remove vectors constantly.
"""

from __future__ import annotations

import math
import os
import threading
from contextlib import contextmanager
from typing import Iterable, Iterator, Protocol

import faiss
import numpy as np

__all__ = ["FaissIndex", "PartitionedIndex", "VectorIndex"]

# Measured in benchmarks/results/lookup.json: past ~10k vectors a flat scan exceeds half the 1 ms
# semantic-lookup budget on a 2-core CPU, while the IVF still finds the near duplicate (recall@1).
APPROXIMATE_THRESHOLD = 10_000
# Training on a sample keeps a rebuild near-linear: k-means on every vector grew as n^1.5
# (59 s at 100k); FAISS needs >= 39 points a centroid and gains little past ~64.
TRAIN_POINTS_PER_LIST = 64



@contextmanager
def omp_threads(count: int) -> Iterator[None]:
    """Run FAISS with ``count`` OpenMP threads on the calling thread, then restore its count.

    Lookups search one vector at a time, where OpenMP's thread start-up costs more than the
    scan: on 2 cores a 1k flat search took 19.9 ms with 2 threads and 0.034 ms with 1, and
    adding one vector to an IVF 12 ms vs 0.018 ms (benchmarks/bench_lookup.py); only training
    uses every core. The count is per calling thread and restored, so the host application's
    own OpenMP use (torch shares the runtime) is left as it was.
    """
    before = faiss.omp_get_max_threads()
    if before == count:
        yield
        return
    faiss.omp_set_num_threads(count)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


class VectorIndex(Protocol):
    """Add, search and remove unit-norm vectors by integer id."""

    dim: int

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None: ...

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]: ...

    def reconstruct(self, entry_id: int) -> np.ndarray: ...

    def remove(self, ids: Iterable[int]) -> int: ...

    def __len__(self) -> int: ...


def _as_ids(ids: Iterable[int]) -> np.ndarray:
    return np.ascontiguousarray(np.fromiter(ids, dtype=np.int64) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)


class FaissIndex:
    """One FAISS index: exact inner product while small, IVF past ``approximate_threshold``."""

    def __init__(self, dim: int, *, approximate_threshold: int = APPROXIMATE_THRESHOLD, nprobe: int = 8) -> None:
        self.dim = dim
        self.approximate_threshold = approximate_threshold
        self.nprobe = nprobe
        self._index: faiss.Index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
        self._trained_size = 0  # size the IVF was trained at; 0 while flat

    @property
    def approximate(self) -> bool:
        return self._trained_size > 0

    def __len__(self) -> int:
        return int(self._index.ntotal)

    def __repr__(self) -> str:
        kind = "ivf" if self.approximate else "flat"
        return f"FaissIndex(dim={self.dim}, n={len(self)}, kind={kind!r})"

    def add(self, ids: np.ndarray, vectors: np.ndarray, *, retrain: bool = True) -> None:
        """Add vectors; with ``retrain`` (default) switch to or retrain the IVF here when due.

        ``PartitionedIndex`` passes ``retrain=False`` and retrains outside its lock instead.
        """
        ids = _as_ids(ids)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if not len(ids):
            return
        with omp_threads(1):
            self._index.add_with_ids(vectors, ids)
        if retrain and self.retrain_due():
            self.install(self.build(*self.snapshot()))

    def retrain_due(self) -> bool:
        """Whether the index should become (or be retrained as) an IVF: past the threshold, or 4x its trained size."""
        n = len(self)
        return (not self.approximate and n > self.approximate_threshold) or (self.approximate and n > 4 * self._trained_size)

    def snapshot(self) -> tuple[np.ndarray, np.ndarray]:
        """Return copies of every (id, vector), for ``build``."""
        if self.approximate:
            invlists = self._index.invlists
            ids = np.concatenate([faiss.rev_swig_ptr(invlists.get_ids(i), invlists.list_size(i)).copy()
                                  for i in range(self._index.nlist) if invlists.list_size(i)] or [np.zeros(0, np.int64)])
            return ids, self._index.reconstruct_batch(ids)
        ids = faiss.vector_to_array(self._index.id_map).astype(np.int64)
        return ids, self._index.index.reconstruct_n(0, len(ids))

    def build(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[faiss.Index, faiss.Index, int]:
        """Train and fill a new IVF on ``vectors`` (every core; seconds at 100k); return it for ``install``."""
        nlist = max(1, int(math.sqrt(len(ids))))
        quantizer = faiss.IndexFlatIP(self.dim)
        ivf = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        sample = vectors
        if len(vectors) > TRAIN_POINTS_PER_LIST * nlist:
            rng = np.random.default_rng(len(vectors))
            sample = vectors[rng.choice(len(vectors), TRAIN_POINTS_PER_LIST * nlist, replace=False)]
        with omp_threads(os.cpu_count() or 1):
            ivf.train(sample)
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # O(1) removals by id
            ivf.add_with_ids(vectors, ids)
        ivf.nprobe = self.nprobe
        return ivf, quantizer, len(ids)

    def install(self, built: tuple[faiss.Index, faiss.Index, int]) -> None:
        """Replace the index with one ``build`` made."""
        ivf, quantizer, trained_size = built
        # The Python wrapper keeps the quantizer alive (and frees it); own_fields=True here would
        # free it twice and segfault at garbage collection.
        self._quantizer = quantizer
        self._index, self._trained_size = ivf, trained_size

    def search(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (cosines, ids) of up to ``k`` nearest vectors, best first."""
        if not len(self) or k <= 0:
            return np.zeros(0, np.float32), np.zeros(0, np.int64)
        query = np.ascontiguousarray(vector, dtype=np.float32).reshape(1, self.dim)
        with omp_threads(1):
            sims, ids = self._index.search(query, min(k, len(self)))
        keep = ids[0] >= 0
        return sims[0][keep], ids[0][keep]

    def reconstruct(self, entry_id: int) -> np.ndarray:
        """Return the stored vector of ``entry_id`` (KeyError-like RuntimeError when absent)."""
        return self._index.reconstruct(int(entry_id))

    def remove(self, ids: Iterable[int]) -> int:
        ids = _as_ids(ids)
        if not len(ids) or not len(self):
            return 0
        # An IVF with a hashtable direct map only accepts IDSelectorArray (FAISS DirectMap.cpp).
        selector = faiss.IDSelectorArray(ids) if self.approximate else faiss.IDSelectorBatch(ids)
        with omp_threads(1):
            return int(self._index.remove_ids(selector))


class _ReadWriteLock:
    """Many readers or one writer, writers first: FAISS searches may run side by side (they
    release the GIL), while an add or a remove must run alone. One lock for all of them made
    concurrent sidecar lookups queue on it (py-spy: a third of the busy time under load)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextmanager
    def reading(self) -> Iterator[None]:
        with self._cond:
            while self._writing or self._writers_waiting:
                self._cond.wait()
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            while self._writing or self._readers:
                self._cond.wait()
            self._writers_waiting -= 1
            self._writing = True
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()


class PartitionedIndex:
    """One vector index per partition; vectors of different partitions are never compared.

    An IVF (re)train takes seconds at 100k vectors, so it never runs under the write lock:
    the adding thread snapshots the partition, trains without the lock while searches go on,
    then swaps the new index in and replays the adds and removes that came meanwhile.
    """

    def __init__(self, dim: int, factory=None) -> None:
        self.dim = dim
        self._factory = factory or (lambda: FaissIndex(dim))
        self._indexes: dict[str, VectorIndex] = {}
        self._partition_of: dict[int, str] = {}
        self._lock = _ReadWriteLock()
        self._retraining: dict[str, list[tuple[str, np.ndarray, np.ndarray | None]]] = {}  # partition -> journal

    def __len__(self) -> int:
        return len(self._partition_of)

    def __contains__(self, entry_id: int) -> bool:
        return entry_id in self._partition_of

    def ids(self) -> set[int]:
        with self._lock.reading():
            return set(self._partition_of)

    def partitions(self) -> dict[str, int]:
        with self._lock.reading():
            return {p: len(index) for p, index in self._indexes.items()}

    def add(self, partition: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        ids = _as_ids(ids)
        job = None
        with self._lock.writing():
            stale = [int(i) for i in ids if int(i) in self._partition_of]
            if stale:
                self._remove(stale)
            index = self._indexes.get(partition)
            if index is None:
                index = self._indexes[partition] = self._factory()
            retrains = hasattr(index, "retrain_due")
            index.add(ids, vectors, retrain=False) if retrains else index.add(ids, vectors)
            for i in ids:
                self._partition_of[int(i)] = partition
            journal = self._retraining.get(partition)
            if journal is not None:
                journal.append(("add", ids, np.asarray(vectors, dtype=np.float32)))
            elif retrains and index.retrain_due():
                self._retraining[partition] = []
                job = index, index.snapshot()
        if job is not None:
            self._retrain(partition, *job)

    def _retrain(self, partition: str, index: FaissIndex, snapshot: tuple[np.ndarray, np.ndarray]) -> None:
        try:
            built = index.build(*snapshot)  # no lock held: searches and other writes go on
        except BaseException:
            with self._lock.writing():
                self._retraining.pop(partition, None)
            raise
        with self._lock.writing():
            journal = self._retraining.pop(partition, [])
            if self._indexes.get(partition) is not index:
                return  # the partition was emptied or cleared meanwhile
            index.install(built)
            for op, ids, vectors in journal:
                index.add(ids, vectors, retrain=False) if op == "add" else index.remove(ids)

    def search(self, partition: str, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Return (cosines, ids) of up to ``k`` nearest vectors of ``partition``, best first."""
        with self._lock.reading():
            index = self._indexes.get(partition)
            if index is None:
                return np.zeros(0, np.float32), np.zeros(0, np.int64)
            return index.search(vector, k)

    def vector(self, entry_id: int) -> np.ndarray | None:
        with self._lock.reading():
            partition = self._partition_of.get(int(entry_id))
            return None if partition is None else self._indexes[partition].reconstruct(entry_id)

    def remove(self, ids: Iterable[int]) -> int:
        with self._lock.writing():
            return self._remove(ids)

    def _remove(self, ids: Iterable[int]) -> int:
        by_partition: dict[str, list[int]] = {}
        for i in ids:
            partition = self._partition_of.pop(int(i), None)
            if partition is not None:
                by_partition.setdefault(partition, []).append(int(i))
        removed = 0
        for partition, members in by_partition.items():
            index = self._indexes[partition]
            removed += index.remove(members)
            journal = self._retraining.get(partition)
            if journal is not None:
                journal.append(("remove", _as_ids(members), None))
            if not len(index):
                del self._indexes[partition]
        return removed

    def clear(self) -> None:
        with self._lock.writing():
            self._indexes.clear()
            self._partition_of.clear()
