"""Low-rank (LoRA) adapters for the embedder: the file format and merging into loaded weights.

A full copy of a fine-tuned model is ~90 MB; a LoRA adapter (``W + scale * B @ A`` for each
linear layer of the encoder) is ~1-3 MB and is merged into the weights when the model loads,
so it costs nothing per query. The adapter file is an ``.npz`` of float32 ``A``/``B`` matrices
plus a JSON header naming the base model; its content hash becomes part of the embedder's
``model_id``, so a cache directory built with one adapter refuses another. Training lives in
``semcache.tools.tune``.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError

__all__ = ["Adapter", "TUNED_ADAPTER", "apply_adapter", "linear_layers"]

TUNED_ADAPTER = "tuned-adapter.npz"  # in a cache directory: written by `semcache tune`
ADAPTER_FORMAT = 1
TARGETS = ("query", "key", "value", "attention.output.dense", "intermediate.dense", "output.dense")

@dataclass(frozen=True)
class Adapter:
    """A low-rank update per linear layer: ``weight += scale * B @ A``."""

    base_model: str
    rank: int
    alpha: float
    matrices: dict[str, tuple[np.ndarray, np.ndarray]] = field(repr=False)  # layer -> (A [r, in], B [out, r])
    info: dict[str, Any] = field(default_factory=dict)
    # Whole tensors that replace the model's (LayerNorm weights, by their name from "encoder.layer."),
    # or that the model does not have (a pair classifier's "head.weight"/"head.bias").
    params: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    @property
    def digest(self) -> str:
        h = hashlib.sha256(f"{self.base_model}|{self.rank}|{self.alpha}".encode())
        for name in sorted(self.matrices):
            a, b = self.matrices[name]
            h.update(name.encode())
            h.update(np.ascontiguousarray(a, dtype=np.float32).tobytes())
            h.update(np.ascontiguousarray(b, dtype=np.float32).tobytes())
        for name in sorted(self.params):
            h.update(name.encode())
            h.update(np.ascontiguousarray(self.params[name], dtype=np.float32).tobytes())
        return h.hexdigest()[:12]

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        header = {"format": ADAPTER_FORMAT, "base_model": self.base_model, "rank": self.rank,
                  "alpha": self.alpha, "info": self.info}
        arrays = {"__header__": np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)}
        for name, (a, b) in self.matrices.items():
            arrays[f"{name}::A"] = a.astype(np.float32)
            arrays[f"{name}::B"] = b.astype(np.float32)
        for name, value in self.params.items():
            arrays[f"param::{name}"] = np.asarray(value, dtype=np.float32)
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(buffer.getvalue())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path, what: str = "adapter") -> "Adapter":
        """Read a file ``save`` wrote; ``what`` names it in errors ("adapter", "pair classifier")."""
        path = Path(path).expanduser()
        if not path.is_file():
            raise ConfigError(f"{what} file {str(path)!r} does not exist")
        try:
            with np.load(path, allow_pickle=False) as data:
                header = json.loads(bytes(data["__header__"]).decode())
                names = sorted({key.rsplit("::", 1)[0] for key in data.files if key.endswith(("::A", "::B"))})
                matrices = {n: (data[f"{n}::A"], data[f"{n}::B"]) for n in names}
                params = {key[len("param::"):]: data[key] for key in data.files if key.startswith("param::")}
        except (OSError, ValueError, KeyError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{what} file {str(path)!r} is not a semcache {what}: {exc}") from exc
        if header.get("format") != ADAPTER_FORMAT:
            raise ConfigError(f"{what} file {str(path)!r} has format {header.get('format')!r}, expected {ADAPTER_FORMAT}")
        for name, (a, b) in matrices.items():
            if a.ndim != 2 or b.ndim != 2 or a.shape[0] != header["rank"] or b.shape[1] != header["rank"]:
                raise ConfigError(f"{what} file {str(path)!r}: matrices of {name!r} have shapes {a.shape}, {b.shape}")
        return cls(header["base_model"], int(header["rank"]), float(header["alpha"]), matrices, header.get("info", {}), params)


def linear_layers(model) -> dict[str, Any]:
    import torch

    # Named from "encoder.layer." on: the prefix above it differs between sentence-transformers versions.
    return {name[name.index("encoder.layer."):]: module for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name.endswith(TARGETS) and "encoder.layer." in name}


def apply_adapter(model, adapter: Adapter) -> None:
    """Merge ``adapter`` into the weights of a loaded sentence-transformers ``model``, in place."""
    import torch

    layers = linear_layers(model)
    missing = sorted(set(adapter.matrices) - set(layers))
    if missing:
        raise ConfigError(f"adapter does not fit this model: it has no layer {missing[0]!r}")
    with torch.no_grad():
        for name, (a, b) in adapter.matrices.items():
            weight = layers[name].weight
            delta = torch.from_numpy(np.asarray(b, dtype=np.float32) @ np.asarray(a, dtype=np.float32)) * adapter.scale
            if delta.shape != weight.shape:
                raise ConfigError(f"adapter layer {name!r} has shape {tuple(delta.shape)}, the model's is {tuple(weight.shape)}")
            weight.add_(delta.to(weight.dtype))
        named = {name[name.index("encoder.layer."):]: tensor for name, tensor in model.named_parameters() if "encoder.layer." in name}
        for name, value in adapter.params.items():
            if name in named:  # others (a classifier head) belong to whoever wraps the encoder
                if tuple(named[name].shape) != value.shape:
                    raise ConfigError(f"adapter parameter {name!r} has shape {value.shape}, the model's is {tuple(named[name].shape)}")
                named[name].copy_(torch.from_numpy(np.asarray(value, dtype=np.float32)))
