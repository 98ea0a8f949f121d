"""Score (query, candidate) pairs with a cross-encoder that reads both texts at once: ``PairClassifier``.

A bi-encoder embeds each text alone, so "sort a list ascending" and "... descending" land close;
a cross-encoder attends across the two texts and sees the one word that differs. This one is
the packaged all-MiniLM-L6-v2 encoder with a LoRA delta, a few LayerNorm weights and a linear
head over the mean-pooled tokens of ``[CLS] query [SEP] candidate [SEP]``, trained by
``benchmarks/train_pair_classifier.py`` and shipped as ``semcache/data/pair_classifier.npz``
(about 3 MB). It runs under ONNX Runtime (the merged graph exported once to the ONNX cache,
checked against PyTorch at load), else PyTorch. ``score`` returns the probability that each
pair asks the same thing. Only the match policy's uncertain band reaches it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Sequence

import numpy as np

from ..errors import ConfigError, EmbeddingError
from .adapter import Adapter, apply_adapter
from .onnx import export_graph, mean_pool, onnx_cache_dir, open_session
from .sentence import DEFAULT_MODEL, default_model_path

__all__ = ["PAIR_FILE", "PairClassifier", "pair_network"]

log = logging.getLogger("semcache")

PAIR_FILE = "pair_classifier.npz"  # in semcache/data
MAX_LENGTH = 128  # tokens of query + candidate; prompts past it are judged on their first tokens
BATCH = 64  # pairs per model call when many are scored at once
_PROBES = [("How do I sort a list in Python?", "python sort list"), ("What is 15% of 80?", "what is 15 percent of 90"),
           ("x", "a longer second text so the batch needs padding")]


def pair_network(encoder, head_weight, head_bias):
    """Return the torch module ``(input_ids, attention_mask, token_type_ids) -> logit`` (training and export)."""
    import torch

    class PairNetwork(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = torch.nn.Linear(encoder.config.hidden_size, 1)
            with torch.no_grad():
                self.head.weight.copy_(torch.as_tensor(np.asarray(head_weight, dtype=np.float32)).reshape(1, -1))
                self.head.bias.copy_(torch.as_tensor(np.asarray(head_bias, dtype=np.float32)).reshape(1))

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            return self.head(mean_pool(hidden, attention_mask)).squeeze(-1)

    return PairNetwork()


def load_base():
    """Return (encoder, tokenizer) of the packaged all-MiniLM-L6-v2, on the CPU."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(default_model_path()), device="cpu")
    return model[0].auto_model, model.tokenizer


class PairClassifier:
    """The probability that two texts ask the same thing, read together.

    ``path``: a file from ``benchmarks/train_pair_classifier.py`` (default: the shipped one).
    ``backend``: "auto" (ONNX Runtime when the export reproduces PyTorch), "onnx" or "torch".
    ``symmetric``: score both orders of each pair and average the logits (twice the cost).
    Raises ``ConfigError`` when the file or the model cannot be loaded.
    """

    def __init__(self, path: str | os.PathLike | None = None, *, backend: str = "auto", threads: int | None = None,
                 max_length: int = MAX_LENGTH, symmetric: bool = False) -> None:
        if backend not in ("auto", "onnx", "torch"):
            raise ConfigError(f"pair classifier backend must be auto, onnx or torch, got {backend!r}")
        path = Path(path) if path is not None else Path(__file__).parent.parent / "data" / PAIR_FILE
        self.adapter = Adapter.load(path, what="pair classifier")
        if self.adapter.base_model != DEFAULT_MODEL:
            raise ConfigError(f"pair classifier {str(path)!r} was trained on {self.adapter.base_model!r}; only {DEFAULT_MODEL!r} is packaged")
        if not {"head.weight", "head.bias"} <= set(self.adapter.params):
            raise ConfigError(f"pair classifier {str(path)!r} has no head (head.weight, head.bias)")
        self.model_id = f"{DEFAULT_MODEL}+pair-{self.adapter.digest}"
        self.max_length = max_length
        self.symmetric = symmetric
        self.threads = threads or os.cpu_count() or 1
        self._lock = threading.Lock()
        try:
            encoder, self._tokenizer = load_base()
            apply_adapter(encoder, self.adapter)
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(f"cannot load the pair classifier's base model: {exc}") from exc
        self._network = pair_network(encoder, self.adapter.params["head.weight"], self.adapter.params["head.bias"]).eval()
        self._session = None if backend == "torch" else self._onnx()
        if backend == "onnx" and self._session is None:
            raise ConfigError("pair classifier backend 'onnx' is not available (is onnxruntime installed?)")
        self.backend = "onnx" if self._session is not None else "torch"

    def __repr__(self) -> str:
        return f"PairClassifier(model_id={self.model_id!r}, backend={self.backend!r})"

    def _features(self, pairs: Sequence[tuple[str, str]], kind: str):
        return self._tokenizer([a for a, _ in pairs], [b for _, b in pairs], padding=True, truncation="longest_first",
                               max_length=self.max_length, return_tensors=kind)

    def _onnx(self):
        try:
            import onnxruntime  # noqa: F401
            import torch
        except ImportError:
            return None
        try:
            digest = hashlib.sha256(f"{torch.__version__}|{self.adapter.digest}|pair".encode()).hexdigest()[:20]
            path = onnx_cache_dir() / f"pair-{digest}.onnx"
            if not path.is_file():
                export_graph(self._network, self._features(_PROBES, "pt"), path, output="logit")
            session = open_session(path, self.threads)
            expected = self._torch_logits(_PROBES)
            got = session.run(None, self._feed(_PROBES))[0]
            if not np.allclose(got, expected, atol=1e-3):
                log.warning("semcache: the pair classifier's ONNX graph does not reproduce PyTorch; using PyTorch")
                return None
            return session
        except Exception as exc:  # an export or runtime failure must not stop the cache: PyTorch still works
            log.warning("semcache: ONNX export of the pair classifier failed (%s); using PyTorch", exc)
            return None

    def _feed(self, pairs) -> dict:
        features = self._features(pairs, "np")
        return {name: np.asarray(features[name], dtype=np.int64) for name in ("input_ids", "attention_mask", "token_type_ids")}

    def _torch_logits(self, pairs) -> np.ndarray:
        import torch

        features = self._features(pairs, "pt")
        with torch.no_grad():
            return self._network(features["input_ids"], features["attention_mask"], features["token_type_ids"]).numpy()

    def logits(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Return the raw logit of each (query, candidate) pair."""
        if not pairs:
            return np.zeros(0, dtype=np.float64)
        if self.symmetric:
            both = self._logits([*pairs, *[(b, a) for a, b in pairs]])
            return (both[:len(pairs)] + both[len(pairs):]) / 2
        return self._logits(pairs)

    def _logits(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        if len(pairs) <= BATCH:
            return self._batch(pairs)
        # Many pairs (calibration, benchmarks): batches of similar length, so memory stays bounded
        # and padding small, whatever the caller hands in.
        order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        out = np.empty(len(pairs), dtype=np.float64)
        for start in range(0, len(order), BATCH):
            chunk = order[start:start + BATCH]
            out[chunk] = self._batch([pairs[i] for i in chunk])
        return out

    def _batch(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        try:
            with self._lock:
                if self._session is not None:
                    return np.asarray(self._session.run(None, self._feed(pairs))[0], dtype=np.float64)
                return self._torch_logits(pairs).astype(np.float64)
        except Exception as exc:
            raise EmbeddingError(f"the pair classifier failed on {len(pairs)} pairs: {exc}") from exc

    def score(self, pairs: Sequence[tuple[str, str]]) -> np.ndarray:
        """Return the probability that each (query, candidate) pair asks the same thing."""
        return 1.0 / (1.0 + np.exp(-np.clip(self.logits(pairs), -40, 40)))
