"""Run a sentence-transformers encoder under ONNX Runtime: same weights, same vectors, less overhead.

For one short query, PyTorch spends most of its ~8 ms dispatching a few hundred small ops from
Python; ONNX Runtime runs the same graph in ~2.6 ms (benchmarks/results/lookup.json). Batches
cost about the same in both (the matrix products dominate there).

``OnnxEncoder.build(model)`` exports the loaded model (adapter already merged) once, caches
the graph under ``~/.cache/semcache/onnx/`` keyed by a digest of the weights and the library
versions, checks that it reproduces the PyTorch vectors, and returns ``None`` (the caller keeps
PyTorch) when the model's pipeline is not Transformer → mean Pooling → Normalize, when
onnxruntime is not installed, or when anything in the export fails.
"""

from __future__ import annotations

import hashlib
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["OnnxEncoder", "export_graph", "length_groups", "mean_pool", "onnx_cache_dir", "open_session"]

log = logging.getLogger("semcache")

_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_PROBES = ("How do I reset my password?", "semcache checks that the exported graph matches", "x")


def onnx_cache_dir() -> Path:
    """Where exported graphs are kept: ``$SEMCACHE_ONNX_CACHE`` or ``~/.cache/semcache/onnx``."""
    configured = os.environ.get("SEMCACHE_ONNX_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "semcache" / "onnx"


def _mean_pooled(model) -> bool:
    """Whether ``model`` is exactly Transformer -> mean Pooling [-> Normalize], the graph exported here."""
    names = [type(module).__name__ for module in model]
    if names not in (["Transformer", "Pooling", "Normalize"], ["Transformer", "Pooling"]):
        return False
    pooling = model[1]
    mode = getattr(pooling, "pooling_mode", None)
    if mode is not None:
        return mode == "mean"
    return bool(getattr(pooling, "pooling_mode_mean_tokens", False)) and not any(
        getattr(pooling, flag, False) for flag in ("pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_lasttoken"))


def _digest(model) -> str:
    import onnxruntime
    import torch

    h = hashlib.sha256(f"{torch.__version__}|{onnxruntime.__version__}|{model.max_seq_length}".encode())
    for name, tensor in model.state_dict().items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().numpy().tobytes())
    return h.hexdigest()[:20]


def export_graph(module, sample: dict, path: Path, *, output: str) -> None:
    """Export a torch ``module(input_ids, attention_mask, token_type_ids)`` to ONNX at ``path`` (atomically)."""
    import torch

    axes = {name: {0: "batch", 1: "tokens"} for name in _INPUTS} | {output: {0: "batch"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes about shape-dependent Python in transformers
        torch.onnx.export(module.eval(), tuple(sample[name] for name in _INPUTS), str(tmp), input_names=list(_INPUTS),
                          output_names=[output], dynamic_axes=axes, opset_version=17, dynamo=False)
    tmp.replace(path)


def open_session(graph: Path | bytes, threads: int):
    """Return an ONNX Runtime CPU session for a graph (a file, or a serialized model) with ``threads`` intra-op threads."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    # Idle threads sleep instead of spinning: a spinning pool starves the other model (the
    # multilingual one) and the event loop between calls; measured 37.7 -> 10.6 ms p50 for an English
    # lookup following a Chinese one (issue 20, benchmarks/chinese.py --latency).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return onnxruntime.InferenceSession(graph if isinstance(graph, bytes) else str(graph), options, providers=["CPUExecutionProvider"])


def mean_pool(hidden, attention_mask):
    """Mean of the token vectors under the attention mask (torch), as sentence-transformers pools."""
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)


def _export(model, path: Path) -> None:
    import torch

    class Pooled(torch.nn.Module):
        def __init__(self, encoder) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, input_ids, attention_mask, token_type_ids):
            hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
            return torch.nn.functional.normalize(mean_pool(hidden, attention_mask), dim=-1)

    sample = model.tokenizer(list(_PROBES), padding=True, return_tensors="pt")
    export_graph(Pooled(model[0].auto_model), sample, path, output="embedding")


class OnnxEncoder:
    """Tokenize with the model's tokenizer, run the exported graph, return unit-norm float32 rows."""

    def __init__(self, session, tokenizer, max_length: int, batch_size: int, path: Path) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self._pad_id = tokenizer.pad_token_id or 0
        self.max_length = max_length
        self.batch_size = batch_size
        self.path = path

    @classmethod
    def build(cls, model, *, threads: int, batch_size: int = 64) -> "OnnxEncoder | None":
        """Export (or reuse) ``model``'s graph and return an encoder, or ``None`` to stay on PyTorch."""
        try:
            import onnxruntime
        except ImportError:
            return None
        if not _mean_pooled(model) or "token_type_ids" not in model.tokenizer(["x"]):
            log.info("semcache: this embedding model's pipeline is not exported to ONNX; using PyTorch")
            return None
        try:
            path = onnx_cache_dir() / f"{_digest(model)}.onnx"
            if not path.is_file():
                _export(model, path)
            session = open_session(path, threads)
            encoder = cls(session, model.tokenizer, model.max_seq_length, batch_size, path)
            expected = model.encode(list(_PROBES), normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False)
            if not np.allclose(encoder.encode(_PROBES), expected, atol=1e-4):
                log.warning("semcache: the ONNX graph at %s does not reproduce the model's vectors; using PyTorch", path)
                return None
            return encoder
        except Exception as exc:  # an export or runtime failure must never stop the cache: PyTorch still works
            log.warning("semcache: ONNX export of the embedding model failed (%s); using PyTorch", exc)
            return None

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed a non-empty batch of texts (the embedder answers an empty one itself).

        The texts are tokenized once, then run in groups of similar length (``length_groups``),
        each padded only to its own longest: one 47-token answer in a batch of 15 short queries
        made the whole call 2.5x slower (every query padded to 47 tokens).
        """
        features = self._tokenizer(list(texts), truncation=True, max_length=self.max_length)
        lengths = [len(ids) for ids in features["input_ids"]]
        result: np.ndarray | None = None
        for group in length_groups(lengths, self.batch_size):
            width = max(lengths[i] for i in group)
            feed = {name: np.zeros((len(group), width), dtype=np.int64) for name in _INPUTS}
            for row, i in enumerate(group):
                n = lengths[i]
                feed["input_ids"][row, :n] = features["input_ids"][i]
                feed["attention_mask"][row, :n] = 1
                feed["token_type_ids"][row, :n] = features["token_type_ids"][i]
            if self._pad_id:
                feed["input_ids"][feed["attention_mask"] == 0] = self._pad_id
            vectors = self._session.run(None, feed)[0]
            if result is None:
                result = np.empty((len(texts), vectors.shape[1]), dtype=np.float32)
            result[group] = vectors
        return result


def length_groups(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Split the indexes of ``lengths`` into model calls of at most ``batch_size`` texts of similar length.

    Sorted by length, a call ends when the next text is more than twice as long as the call's
    first one (and 16 tokens longer): padding then never doubles a call's work, while queries of
    ordinary lengths still share one call.
    """
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        group = groups[-1] if groups else None
        if group is None or len(group) >= batch_size or lengths[i] > max(2 * lengths[group[0]], lengths[group[0]] + 16):
            groups.append([i])
        else:
            group.append(i)
    return groups
