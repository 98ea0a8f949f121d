"""Embed concurrent single-text calls from many threads in one model call: ``BatchingEmbedder``.

The sidecar looks up each request in a worker thread, and each lookup embeds one query text.
Under PyTorch a transformer on the CPU costs nearly the same for 8 short texts as for one (the
per-call overhead dominates); under ONNX Runtime that overhead is mostly gone, and a batch
of 16 still costs ~20% less per text than single calls (benchmarks/results/server.json).

How a batch forms: the first caller to find no open batch becomes its *leader*; it waits up to
``window`` seconds, or until ``max_batch`` texts are queued, then waits for the model to be free
and only then seals the batch. Callers arriving meanwhile join it, so batches grow with the
load: while one batch runs, the next one gathers. A lone caller pays at most ``window``
(0 by default).
"""

from __future__ import annotations

import threading
import time
from typing import Sequence

import numpy as np

from ..errors import EmbeddingError
from .base import Embedder

__all__ = ["BatchingEmbedder"]


class _Waiter:
    __slots__ = ("texts", "done", "vectors", "error")

    def __init__(self, texts: list[str]) -> None:
        self.texts = texts
        self.done = threading.Event()
        self.vectors: np.ndarray | None = None
        self.error: BaseException | None = None


class BatchingEmbedder:
    """Wrap an ``Embedder`` so that concurrent ``embed`` calls share one model call.

    ``window``: seconds a batch waits for company (default 0: batches form only while the model
    is busy, so a lone caller never waits; measured better at concurrency 1 and 32 alike,
    benchmarks/bench_server.py); ``max_batch``: texts that end the wait early. An error of the
    model call is raised in every caller of that batch.
    ``batches`` and ``texts`` count the model calls made and the texts they embedded.
    """

    def __init__(self, inner: Embedder, *, window: float = 0.0, max_batch: int = 32) -> None:
        if window < 0:
            raise EmbeddingError(f"window must be >= 0 seconds, got {window!r}")
        if max_batch < 1:
            raise EmbeddingError(f"max_batch must be >= 1, got {max_batch!r}")
        self.inner = inner
        self.model_id = inner.model_id
        self.dim = inner.dim
        self.window = window
        self.max_batch = max_batch
        self.batches = 0
        self.texts = 0
        self._cond = threading.Condition()
        self._model = threading.Lock()
        self._pending: list[_Waiter] = []
        self._queued = 0  # texts in _pending
        self._leader = False  # whether the open batch has a leader

    def __repr__(self) -> str:
        return f"BatchingEmbedder({self.inner!r}, window={self.window}, max_batch={self.max_batch})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return the rows of ``texts``, embedded together with other threads' concurrent calls."""
        return self._together(list(texts))

    def _call(self, items: list) -> np.ndarray:
        """One model call for a whole batch (what a subclass batches instead)."""
        vectors = np.asarray(self.inner.embed(items), dtype=np.float32)
        if vectors.shape != (len(items), self.dim):
            raise EmbeddingError(f"embedder returned shape {vectors.shape}, expected {(len(items), self.dim)}")
        return vectors

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), dtype=np.float32)

    def _together(self, texts: list) -> np.ndarray:
        if not texts:  # never a model call for nothing
            return self._empty()
        waiter = _Waiter(texts)
        with self._cond:
            self._pending.append(waiter)
            self._queued += len(texts)
            lead = not self._leader
            self._leader = True
            if self._queued >= self.max_batch:
                self._cond.notify_all()
        if lead:
            self._lead()
        waiter.done.wait()
        if waiter.error is not None:
            raise waiter.error
        return waiter.vectors

    def _lead(self) -> None:
        deadline = time.monotonic() + self.window
        with self._cond:
            while self._queued < self.max_batch:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
        with self._model:
            # Sealed only once the model is free: callers arriving while it was busy ride along.
            with self._cond:
                batch, self._pending, self._queued, self._leader = self._pending, [], 0, False
            self._run(batch)

    def _run(self, batch: list[_Waiter]) -> None:
        texts = [t for waiter in batch for t in waiter.texts]
        try:
            vectors = self._call(texts)
            self.batches += 1
            self.texts += len(texts)
            start = 0
            for waiter in batch:
                waiter.vectors = vectors[start:start + len(waiter.texts)]
                start += len(waiter.texts)
        except BaseException as exc:  # every caller of the batch must learn of it, not just the leader
            for waiter in batch:
                waiter.error = exc
        finally:
            for waiter in batch:
                waiter.done.set()
