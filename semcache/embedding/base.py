"""The Embedder protocol, and an LRU in front of any embedder.

An embedder turns a batch of texts into rows of unit-norm float32 vectors. The default one is
``semcache.embedding.sentence.SentenceTransformerEmbedder``; tests use tiny deterministic ones.
"""

from __future__ import annotations

import threading
from typing import Protocol, Sequence

import numpy as np
from cachetools import LRUCache

from ..errors import EmbeddingError

__all__ = ["CachingEmbedder", "Embedder"]


class Embedder(Protocol):
    """Embed a batch of texts as rows of unit-norm float32 vectors, shape ``(len(texts), dim)``."""

    model_id: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


class CachingEmbedder:
    """Wrap an embedder with an LRU of recent texts: a repeated query is not embedded twice."""

    def __init__(self, inner: Embedder, maxsize: int = 1024) -> None:
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.maxsize = maxsize
        # cachetools' LRUCache is not thread-safe: every access (a get moves the key) holds the lock.
        self._lru: LRUCache[str, np.ndarray] | None = LRUCache(maxsize) if maxsize else None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"CachingEmbedder({self.inner!r}, maxsize={self.maxsize})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out: list[np.ndarray | None] = [None] * len(texts)
        missing: dict[str, list[int]] = {}
        with self._lock:
            for i, text in enumerate(texts):
                vector = self._lru.get(text) if self._lru is not None else None
                if vector is None:
                    missing.setdefault(text, []).append(i)
                else:
                    out[i] = vector
        if missing:
            todo = list(missing)
            vectors = self.inner.embed(todo)
            if vectors.shape != (len(todo), self.dim):
                raise EmbeddingError(f"embedder returned shape {vectors.shape}, expected {(len(todo), self.dim)}")
            with self._lock:
                for text, vector in zip(todo, vectors):
                    for i in missing[text]:
                        out[i] = vector
                    if self._lru is not None:
                        self._lru[text] = vector
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack(out).astype(np.float32, copy=False)
