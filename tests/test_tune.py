"""Embedding adapters: the file format, merging into the model, and training on pairs (``semcache.tune``)."""

from __future__ import annotations

import numpy as np
import pytest

from semcache.embedding.sentence import DEFAULT_MODEL, SentenceTransformerEmbedder
from semcache.errors import ConfigError
from semcache.embedding.adapter import Adapter, apply_adapter
from semcache.tools.tune import cosine_quality, tune


def small_adapter(base: str = DEFAULT_MODEL, seed: int = 0, scale: float = 0.05) -> Adapter:
    rng = np.random.default_rng(seed)
    name = "encoder.layer.0.attention.self.query"
    return Adapter(base, 2, 4.0, {name: (rng.normal(size=(2, 384)).astype(np.float32) * scale,
                                         rng.normal(size=(384, 2)).astype(np.float32) * scale)}, {"note": "test"})


def test_an_adapter_round_trips_through_its_file(tmp_path):
    adapter = small_adapter()
    loaded = Adapter.load(adapter.save(tmp_path / "a.npz"))
    assert (loaded.base_model, loaded.rank, loaded.alpha, loaded.info) == (adapter.base_model, 2, 4.0, {"note": "test"})
    for name, (a, b) in adapter.matrices.items():
        np.testing.assert_array_equal(loaded.matrices[name][0], a)
        np.testing.assert_array_equal(loaded.matrices[name][1], b)
    assert loaded.digest == adapter.digest
    assert small_adapter(seed=1).digest != adapter.digest


def test_a_missing_or_foreign_adapter_file_is_a_config_error_naming_it(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        Adapter.load(tmp_path / "nope.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(ConfigError, match="garbage.npz"):
        Adapter.load(garbage)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros(3))
    with pytest.raises(ConfigError, match="other.npz"):
        Adapter.load(other)


@pytest.mark.model
def test_an_adapter_changes_the_embeddings_and_the_model_id(tmp_path):
    plain = SentenceTransformerEmbedder(adapter=None, backend="torch")
    path = small_adapter(scale=0.3).save(tmp_path / "a.npz")
    tuned = SentenceTransformerEmbedder(adapter=str(path))
    assert plain.model_id == DEFAULT_MODEL
    assert tuned.model_id == f"{DEFAULT_MODEL}+lora-{Adapter.load(path).digest}"
    text = ["How do I reset my password?"]
    assert float(plain.embed(text)[0] @ tuned.embed(text)[0]) < 0.9999
    np.testing.assert_allclose(np.linalg.norm(tuned.embed(text), axis=1), 1.0, atol=1e-5)
    with pytest.raises(ConfigError, match="trained for model 'another-model'"):
        SentenceTransformerEmbedder(adapter=small_adapter(base="another-model"))
    with pytest.raises(ConfigError, match="no layer"):
        apply_adapter(plain._model, Adapter(DEFAULT_MODEL, 2, 4.0, {"encoder.layer.99.attention.self.query": (np.zeros((2, 384)), np.zeros((384, 2)))}))


PAIRS = [
    ("How do I reset my password?", "What are the steps to change my password?", 1),
    ("How do I reset my password?", "How do I reset my router?", 0),
    ("What is the capital of France?", "Which city is France's capital?", 1),
    ("What is the capital of France?", "What is the capital of Spain?", 0),
    ("How can I lose weight fast?", "What is the quickest way to lose weight?", 1),
    ("How can I lose weight fast?", "How can I gain weight fast?", 0),
    ("Is coffee bad for your heart?", "Does drinking coffee harm the heart?", 1),
    ("Is coffee bad for your heart?", "Is coffee bad for your teeth?", 0),
]


@pytest.mark.model
@pytest.mark.slow
def test_tuning_on_pairs_separates_their_duplicates_from_their_near_misses():
    embedder = SentenceTransformerEmbedder(adapter=None, backend="torch")

    def gap() -> float:
        texts_a = embedder.embed([a for a, _, _ in PAIRS])
        texts_b = embedder.embed([b for _, b, _ in PAIRS])
        cos = np.einsum("ij,ij->i", texts_a, texts_b)
        labels = np.array([y for _, _, y in PAIRS])
        return float(cos[labels == 1].mean() - cos[labels == 0].mean())

    before = gap()
    steps: list[int] = []
    result = tune(embedder._model, PAIRS, base_model=embedder.model_id, epochs=12, batch_size=8, lr=3e-3,
                  progress=lambda step, total, loss: steps.append(step))
    assert steps == list(range(1, 13)) and result.steps == 12
    assert any(np.abs(b).max() > 0 for _, b in result.adapter.matrices.values())  # B starts at zero: it learned
    unchanged = gap()
    apply_adapter(embedder._model, result.adapter)
    assert abs(unchanged - before) < 1e-5  # training leaves the model as it was until the adapter is applied
    assert gap() > before + 0.05
    report = cosine_quality(embedder, PAIRS)
    assert report["pairs"] == len(PAIRS) and 0.5 <= report["roc_auc"] <= 1.0


def test_tuning_refuses_pairs_of_one_label_only():
    with pytest.raises(ConfigError, match="both duplicate"):
        tune(object(), [(a, b, 1) for a, b, _ in PAIRS], base_model=DEFAULT_MODEL)
    with pytest.raises(ConfigError, match="needs labelled pairs"):
        tune(object(), [], base_model=DEFAULT_MODEL)


def test_tuning_on_too_few_pairs_to_hold_some_out_is_refused():
    from semcache.tools.tune import tune_on_pairs

    with pytest.raises(ConfigError, match="too few pairs"):
        tune_on_pairs(PAIRS[:1], current=object(), base=object())
