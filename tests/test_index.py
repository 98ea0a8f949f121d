"""VectorIndex contract, run against every implementation; PartitionedIndex isolation."""

from __future__ import annotations

import numpy as np
import pytest

from semcache.storage.index import FaissIndex, PartitionedIndex

DIM = 16


def unit_vectors(n: int, dim: int = DIM, seed: int = 0) -> np.ndarray:
    vectors = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


class VectorIndexContract:
    """What every VectorIndex must do; subclasses provide ``make_index(dim)``."""

    def make_index(self, dim: int):
        raise NotImplementedError

    def test_empty_index_finds_nothing(self):
        index = self.make_index(DIM)
        sims, ids = index.search(unit_vectors(1)[0], 5)
        assert len(index) == 0 and len(sims) == 0 and len(ids) == 0

    def test_search_returns_cosines_best_first(self):
        index = self.make_index(DIM)
        vectors = unit_vectors(50)
        index.add(np.arange(100, 150), vectors)
        query = vectors[7]
        sims, ids = index.search(query, 5)
        assert ids[0] == 107
        assert sims[0] == pytest.approx(1.0, abs=1e-5)
        assert list(sims) == sorted(sims, reverse=True)
        for sim, entry_id in zip(sims, ids):
            assert sim == pytest.approx(float(vectors[entry_id - 100] @ query), abs=1e-5)
        assert len(index.search(query, 500)[1]) <= 50

    def test_remove_and_readd(self):
        index = self.make_index(DIM)
        vectors = unit_vectors(20)
        index.add(np.arange(20), vectors)
        assert index.remove([3, 4, 999]) == 2
        assert len(index) == 18
        sims, ids = index.search(vectors[3], 20)
        assert 3 not in ids and 4 not in ids
        index.add(np.array([3]), vectors[3:4])
        assert index.search(vectors[3], 1)[1][0] == 3
        np.testing.assert_allclose(index.reconstruct(3), vectors[3], atol=1e-6)

    def test_add_rejects_mismatched_lengths(self):
        index = self.make_index(DIM)
        with pytest.raises(ValueError):
            index.add(np.arange(3), unit_vectors(2))


class TestFlatFaissIndex(VectorIndexContract):
    def make_index(self, dim):
        return FaissIndex(dim)


class TestApproximateFaissIndex(VectorIndexContract):
    """Forced past its threshold after a few adds, so the contract runs against IVF too."""

    def make_index(self, dim):
        index = FaissIndex(dim, approximate_threshold=10, nprobe=64)
        index.add(np.arange(10_000, 10_040), unit_vectors(40, dim, seed=99))
        index.remove(np.arange(10_000, 10_040))
        assert index.approximate and len(index) == 0
        return index


def test_switch_to_ivf_keeps_recall_and_removal():
    vectors = unit_vectors(1000, 32, seed=1)
    index = FaissIndex(32, approximate_threshold=200)
    index.add(np.arange(1000), vectors)
    assert index.approximate and len(index) == 1000
    found = sum(index.search(vectors[i], 1)[1][:1].tolist() == [i] for i in range(0, 1000, 5))
    assert found / 200 >= 0.95
    assert index.remove(range(0, 1000, 2)) == 500
    assert len(index) == 500
    for i in range(0, 40, 2):
        assert i not in index.search(vectors[i], 10)[1]
    assert index.search(vectors[1], 1)[1][0] == 1


def test_partitioned_index_never_returns_another_partitions_ids():
    index = PartitionedIndex(DIM)
    vectors = unit_vectors(30)
    index.add("a", np.arange(0, 15), vectors[:15])
    index.add("b", np.arange(15, 30), vectors[15:])
    for query in vectors:
        assert set(index.search("a", query, 30)[1].tolist()) <= set(range(15))
        assert set(index.search("b", query, 30)[1].tolist()) <= set(range(15, 30))
    assert len(index.search("c", vectors[0], 5)[1]) == 0
    assert index.partitions() == {"a": 15, "b": 15}


def test_partitioned_index_moves_a_readded_id_and_drops_empty_partitions():
    index = PartitionedIndex(DIM)
    vectors = unit_vectors(3)
    index.add("a", np.array([1]), vectors[:1])
    index.add("b", np.array([1]), vectors[1:2])
    assert len(index) == 1
    assert len(index.search("a", vectors[0], 5)[1]) == 0
    np.testing.assert_allclose(index.vector(1), vectors[1], atol=1e-6)
    assert index.partitions() == {"b": 1}
    assert index.remove([1]) == 1
    assert index.ids() == set() and index.partitions() == {}
    assert index.vector(1) is None


def test_ivf_retrains_from_its_own_vectors_when_it_grows():
    vectors = unit_vectors(200, seed=3)
    index = FaissIndex(DIM, approximate_threshold=10, nprobe=1000)
    index.add(np.arange(20), vectors[:20])
    assert index.approximate
    index.remove([0])
    index.add(np.arange(20, 200), vectors[20:])  # past 4x the trained size: retrain from the IVF's lists
    assert len(index) == 199
    assert index.search(vectors[0], 200)[1].tolist().count(0) == 0
    for i in (1, 50, 199):
        assert index.search(vectors[i], 1)[1][0] == i


def test_searches_run_beside_adds_and_removes_and_each_sees_one_state():
    """Readers share the index while a writer adds and removes: every answer a reader gets is
    self-consistent (each cosine is the one of the id it comes with)."""
    import threading

    index = PartitionedIndex(DIM, factory=lambda: FaissIndex(DIM, approximate_threshold=150))
    vectors = unit_vectors(400, seed=3)
    index.add("p", np.arange(200), vectors[:200])
    problems: list[str] = []

    def reader(offset: int) -> None:
        for i in range(300):
            query = vectors[(i + offset) % 200]
            sims, ids = index.search("p", query, 3)
            if len(ids) != len(sims) or not np.allclose(vectors[ids] @ query, sims, atol=1e-4):
                problems.append(f"inconsistent answer at {i}")

    def writer() -> None:
        for j in range(200, 400):  # grows past the IVF switch while readers search
            index.add("p", np.array([j]), vectors[j:j + 1])
            index.remove([j - 150])

    threads = [threading.Thread(target=reader, args=(k * 50,)) for k in range(3)] + [threading.Thread(target=writer)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert problems == []
    assert index.ids() == set(range(250, 400)) | set(range(0, 50))


def test_an_ivf_retrain_never_blocks_searches_and_keeps_writes_made_meanwhile(monkeypatch):
    """The retrain runs outside the write lock; adds and removes during it are replayed into the new index."""
    import threading
    import time

    from semcache.storage.index import FaissIndex, PartitionedIndex

    dim, rng = 8, np.random.default_rng(3)

    def unit_rows(n):
        v = rng.standard_normal((n, dim)).astype(np.float32)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    building, release = threading.Event(), threading.Event()
    original = FaissIndex.build

    def slow_build(self, ids, vectors):
        built = original(self, ids, vectors)
        building.set()
        release.wait(5)
        return built

    monkeypatch.setattr(FaissIndex, "build", slow_build)
    index = PartitionedIndex(dim, factory=lambda: FaissIndex(dim, approximate_threshold=100))
    first = unit_rows(100)
    index.add("p", np.arange(100), first)
    adder = threading.Thread(target=index.add, args=("p", np.array([100]), unit_rows(1)))  # crosses the threshold
    adder.start()
    assert building.wait(5)
    started = time.perf_counter()
    sims, ids = index.search("p", first[7], 1)  # would wait on the write lock if the retrain held it
    assert time.perf_counter() - started < 0.5 and ids.tolist() == [7]
    late = unit_rows(1)
    index.add("p", np.array([101]), late)  # written while the retrain runs
    index.remove([3])
    release.set()
    adder.join(5)
    inner = index._indexes["p"]
    assert inner.approximate and len(inner) == 101
    assert index.search("p", late[0], 1)[1].tolist() == [101]
    assert 3 not in set(index.search("p", first[3], 5)[1].tolist())
