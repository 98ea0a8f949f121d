"""Embedders: the packaged sentence-transformers model and the LRU wrapper."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from conftest import WordEmbedder
from semcache.embedding.base import CachingEmbedder
from semcache.embedding.onnx import length_groups
from semcache.embedding.sentence import SentenceTransformerEmbedder
from semcache.errors import ConfigError, EmbeddingError


class RecordingEmbedder(WordEmbedder):
    """WordEmbedder that also keeps every text it was asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.texts: list[str] = []

    def embed(self, texts):
        self.texts.extend(texts)
        return super().embed(texts)


@pytest.mark.model
def test_packaged_model_embeds_unit_vectors_and_ranks_paraphrases_first():
    embedder = SentenceTransformerEmbedder()
    # The packaged model as it is: no adapter ships (issue 17: it did not beat the plain model on Banking77).
    assert embedder.model_id == "all-MiniLM-L6-v2" and embedder.adapter is None and embedder.dim == 384
    vectors = embedder.embed([
        "How do I reset my password?",
        "What are the steps to change my password?",
        "What is the boiling point of water?",
    ])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > unrelated + 0.3
    assert embedder.embed([]).shape == (0, 384)


def test_a_missing_model_path_raises_config_error_naming_it(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError) as caught:
        SentenceTransformerEmbedder(str(missing))
    assert str(missing) in str(caught.value)


def test_caching_embedder_embeds_a_repeated_text_once():
    inner = RecordingEmbedder()
    embedder = CachingEmbedder(inner, maxsize=8)
    first = embedder.embed(["alpha beta", "gamma"])
    again = embedder.embed(["gamma", "alpha beta", "alpha beta", "delta"])
    assert inner.texts == ["alpha beta", "gamma", "delta"]
    np.testing.assert_array_equal(again[0], first[1])
    np.testing.assert_array_equal(again[1], first[0])
    np.testing.assert_array_equal(again[3], inner.embed(["delta"])[0])
    assert again.shape == (4, inner.dim) and again.dtype == np.float32


def test_caching_embedder_forgets_least_recently_used():
    inner = RecordingEmbedder()
    embedder = CachingEmbedder(inner, maxsize=2)
    embedder.embed(["a"])
    embedder.embed(["b"])
    embedder.embed(["a"])  # a is now more recent than b
    embedder.embed(["c"])  # evicts b
    inner.texts.clear()
    embedder.embed(["a", "b", "c"])
    assert inner.texts == ["b"]


def test_caching_embedder_handles_empty_batches_and_bad_shapes():
    embedder = CachingEmbedder(WordEmbedder())
    assert embedder.embed([]).shape == (0, WordEmbedder.dim)

    class ShortEmbedder(WordEmbedder):
        def embed(self, texts):
            return super().embed(texts)[:, :5]

    with pytest.raises(EmbeddingError):
        CachingEmbedder(ShortEmbedder()).embed(["x"])


@pytest.mark.model
def test_the_onnx_backend_reproduces_the_pytorch_vectors():
    fast, reference = SentenceTransformerEmbedder(), SentenceTransformerEmbedder(backend="torch")
    assert (fast.backend, reference.backend) == ("onnx", "torch") and fast.model_id == reference.model_id
    texts = ["How do I reset my password?", "x", "A much longer question about the boiling point of water at altitude, "
             "and why pasta takes longer to cook in the mountains than it does by the sea?", "¿Dónde está la biblioteca?"]
    np.testing.assert_allclose(fast.embed(texts), reference.embed(texts), atol=1e-4)
    assert fast.embed(texts[:1]).shape == (1, 384)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 512), min_size=1, max_size=200), st.integers(1, 64))
def test_length_groups_cover_every_text_once_and_never_pad_a_call_past_twice_its_shortest(lengths, batch_size):
    groups = length_groups(lengths, batch_size)
    assert sorted(i for group in groups for i in group) == list(range(len(lengths)))
    for group in groups:
        shortest, longest = min(lengths[i] for i in group), max(lengths[i] for i in group)
        assert len(group) <= batch_size and longest <= max(2 * shortest, shortest + 16)
    # Ordinary queries (here 8 to 24 tokens) share one call; a long answer gets its own.
    assert length_groups([8, 47, 24, 12, 8], 64) == [[0, 4, 3, 2], [1]]


def test_an_unknown_backend_is_a_config_error_naming_it():
    with pytest.raises(ConfigError, match="'gpu-please'"):
        SentenceTransformerEmbedder(backend="gpu-please")


def test_only_mean_pooled_pipelines_are_exported():
    from semcache.embedding.onnx import _mean_pooled

    class Transformer: ...

    class Pooling:
        def __init__(self, mode):
            self.pooling_mode = mode

    class Normalize: ...

    assert _mean_pooled([Transformer(), Pooling("mean"), Normalize()])
    assert _mean_pooled([Transformer(), Pooling("mean")])
    assert not _mean_pooled([Transformer(), Pooling("cls"), Normalize()])
    assert not _mean_pooled([Transformer(), Pooling("mean"), Normalize(), Normalize()])


def test_caching_embedder_with_size_zero_keeps_nothing():
    inner = RecordingEmbedder()
    embedder = CachingEmbedder(inner, maxsize=0)
    embedder.embed(["a"])
    embedder.embed(["a"])
    assert inner.texts == ["a", "a"]
