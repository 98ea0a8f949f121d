"""BatchingEmbedder: concurrent single-text calls share one model call and each gets its own rows."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import WordEmbedder
from semcache.embedding.batching import BatchingEmbedder
from semcache.errors import EmbeddingError


class RecordingEmbedder(WordEmbedder):
    """The word embedder, remembering the size of every batch it was given."""

    def __init__(self, fail: bool = False) -> None:
        super().__init__()
        self.sizes: list[int] = []
        self.fail = fail

    def embed(self, texts):
        self.sizes.append(len(texts))
        if self.fail:
            raise EmbeddingError("model on fire")
        return super().embed(texts)


def embed_concurrently(embedder, texts: list[str]) -> list:
    results: list = [None] * len(texts)

    def work(i: int) -> None:
        try:
            results[i] = embedder.embed([texts[i]])
        except Exception as exc:  # collected for the assertions
            results[i] = exc

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(texts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return results


def test_a_full_batch_is_one_model_call():
    inner = RecordingEmbedder()
    # A window far longer than the test: only the batch filling up can end the wait.
    batching = BatchingEmbedder(inner, window=60, max_batch=8)
    texts = [f"text number {i}" for i in range(8)]
    results = embed_concurrently(batching, texts)
    assert inner.sizes == [8]
    reference = WordEmbedder().embed(texts)
    for i, rows in enumerate(results):
        assert rows.shape == (1, inner.dim)
        np.testing.assert_allclose(rows[0], reference[i], rtol=1e-6)
    assert (batching.batches, batching.texts) == (1, 8)


def test_a_model_error_reaches_every_caller_of_the_batch():
    batching = BatchingEmbedder(RecordingEmbedder(fail=True), window=60, max_batch=4)
    results = embed_concurrently(batching, ["a", "b", "c", "d"])
    assert all(isinstance(r, EmbeddingError) for r in results)


def test_a_wrong_shape_is_an_embedding_error():
    class Short(WordEmbedder):
        def embed(self, texts):
            return super().embed(texts)[:-1]

    with pytest.raises(EmbeddingError, match="shape"):
        BatchingEmbedder(Short(), window=0).embed(["one", "two"])


def test_protocol_and_empty_input():
    inner = RecordingEmbedder()
    batching = BatchingEmbedder(inner, window=0)
    assert (batching.model_id, batching.dim) == (inner.model_id, inner.dim)
    assert batching.embed([]).shape == (0, inner.dim) and inner.sizes == []
    with pytest.raises(EmbeddingError, match="window"):
        BatchingEmbedder(inner, window=-1)
    with pytest.raises(EmbeddingError, match="max_batch"):
        BatchingEmbedder(inner, max_batch=0)


@settings(max_examples=20, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["cat", "dog", "red", "blue", "sky", "sea"]), min_size=1, max_size=3), min_size=1, max_size=12))
def test_every_caller_gets_the_rows_of_its_own_texts(calls):
    inner = RecordingEmbedder()
    batching = BatchingEmbedder(inner, window=0.001, max_batch=5)
    results: list = [None] * len(calls)

    def work(i: int) -> None:
        results[i] = batching.embed(calls[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    reference = WordEmbedder()
    for texts, rows in zip(calls, results):
        np.testing.assert_allclose(rows, reference.embed(texts), rtol=1e-6)
    assert sum(inner.sizes) == sum(len(c) for c in calls) and len(inner.sizes) <= len(calls)
