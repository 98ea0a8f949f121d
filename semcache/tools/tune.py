"""Fine-tune the embedder on labelled pairs, on the CPU, as a small low-rank adapter.

The adapter (``semcache.embedding.adapter``) trains in minutes on two cores. The loss is
CoSENT (every non-duplicate pair should score below every duplicate pair, which is what one
threshold needs) plus in-batch multiple-negatives ranking on the duplicates (which keeps the
nearest neighbour right, which is what the index needs).
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..embedding.adapter import Adapter, apply_adapter, linear_layers
from ..errors import ConfigError
from ..matching.metrics import best_f1, pr_points, roc_auc
from .data import group_split

__all__ = ["TuneResult", "cosine_quality", "tune", "tune_on_pairs"]

Pair = tuple[str, str, int]


@dataclass
class TuneResult:
    adapter: Adapter
    pairs: int
    steps: int
    seconds: float
    losses: list[float]


def _cosent(cos, labels, scale: float):
    """log(1 + sum over (negative i, positive j) of exp(scale * (cos_i - cos_j)))."""
    import torch

    diff = scale * (cos[:, None] - cos[None, :])  # [i, j] = cos_i - cos_j
    keep = (labels[:, None] < labels[None, :])  # i negative, j positive
    diff = diff.masked_fill(~keep, -1e12)
    return torch.logsumexp(torch.cat([torch.zeros(1), diff.flatten()]), dim=0)


def _ranking(u, v, labels, scale: float):
    """In-batch multiple-negatives ranking: each duplicate's partner beats every other text of the batch."""
    import torch
    import torch.nn.functional as F

    positives = labels.nonzero().flatten()
    if not len(positives):
        return torch.zeros(())
    candidates = torch.cat([v, u])  # both sides of every pair are distractors
    logits = scale * u[positives] @ candidates.T
    own = positives + len(v)  # a text is not its own partner
    logits[torch.arange(len(positives)), own] = -1e4
    return F.cross_entropy(logits, positives)


def _length_batches(pairs: Sequence[Pair], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of pairs of similar length (less padding, so faster steps), in random order."""
    order = list(range(len(pairs)))
    rng.shuffle(order)
    chunk = batch_size * 32
    batches = []
    for start in range(0, len(order), chunk):
        part = sorted(order[start:start + chunk], key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        batches.extend(part[k:k + batch_size] for k in range(0, len(part), batch_size))
    rng.shuffle(batches)
    return batches


def tune(
    model,
    pairs: Sequence[Pair],
    *,
    base_model: str,
    rank: int = 8,
    alpha: float = 16.0,
    epochs: float = 1.0,
    batch_size: int = 64,
    lr: float = 1e-3,
    ranking_weight: float = 1.0,
    max_seq_length: int = 64,
    seed: int = 0,
    progress: Callable[[int, int, float], None] | None = None,
) -> TuneResult:
    """Train a LoRA adapter for the sentence-transformers ``model`` on labelled ``pairs``.

    ``model`` is left unchanged (the adapter is trained beside its frozen weights and removed
    afterwards); apply the result with ``apply_adapter``. ``progress(step, steps, loss)`` is
    called after every step.
    """
    import torch
    import torch.nn.functional as F

    if not pairs:
        raise ConfigError("tune needs labelled pairs; got none")
    if not any(y for _, _, y in pairs) or all(y for _, _, y in pairs):
        raise ConfigError("tune needs both duplicate (label 1) and non-duplicate (label 0) pairs")
    torch.manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)  # faiss pins this thread's OpenMP to 1; training wants every core
    rng = random.Random(seed)
    layers = linear_layers(model)
    if not layers:
        raise ConfigError("tune supports BERT-style encoders (linear layers under encoder.layer.N); this model has none")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    adapters: dict[str, tuple[torch.nn.Parameter, torch.nn.Parameter]] = {}
    hooks = []
    scale = alpha / rank
    for name, layer in layers.items():
        a = torch.nn.Parameter(torch.randn(rank, layer.in_features) / math.sqrt(layer.in_features))
        b = torch.nn.Parameter(torch.zeros(layer.out_features, rank))
        adapters[name] = (a, b)
        hooks.append(layer.register_forward_hook(
            lambda module, inputs, output, a=a, b=b: output + (inputs[0] @ a.T @ b.T) * scale))
    params = [p for ab in adapters.values() for p in ab]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    steps = max(1, int(math.ceil(len(pairs) / batch_size) * epochs))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / max(1, steps // 10)) * max(0.0, (steps - s) / steps))
    old_length = model.max_seq_length
    model.max_seq_length = max_seq_length
    tokenize = getattr(model, "preprocess", None) or model.tokenize  # renamed in sentence-transformers 6
    model.train()
    losses: list[float] = []
    started = time.perf_counter()
    try:
        batches: list[list[int]] = []
        for step in range(steps):
            if not batches:
                batches = _length_batches(pairs, batch_size, rng)
            batch = [pairs[i] for i in batches.pop()]
            texts = [a for a, _, _ in batch] + [b for _, b, _ in batch]
            features = tokenize(texts)
            embeddings = F.normalize(model(features)["sentence_embedding"], dim=-1)
            u, v = embeddings[:len(batch)], embeddings[len(batch):]
            labels = torch.tensor([y for _, _, y in batch])
            cos = (u * v).sum(-1)
            loss = _cosent(cos, labels, 20.0) + ranking_weight * _ranking(u, v, labels, 20.0)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            losses.append(float(loss.detach()))
            if progress:
                progress(step + 1, steps, losses[-1])
    finally:
        for hook in hooks:
            hook.remove()
        model.max_seq_length = old_length
        torch.set_num_threads(threads)
        model.eval()
    matrices = {name: (a.detach().numpy().copy(), b.detach().numpy().copy()) for name, (a, b) in adapters.items()}
    info = {"pairs": len(pairs), "epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
            "loss": "cosent+ranking" if ranking_weight else "cosent"}
    adapter = Adapter(base_model, rank, alpha, matrices, info)
    return TuneResult(adapter, len(pairs), steps, time.perf_counter() - started, losses)


def cosine_quality(embedder, pairs: list[Pair]) -> dict:
    """Best F1, ROC-AUC and recall at precision 0.85/0.90 of plain cosine on ``pairs``."""
    texts = sorted({t for a, b, _ in pairs for t in (a, b)})
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
    vectors = np.empty((len(texts), embedder.dim), dtype=np.float32)
    vectors[order] = embedder.embed([texts[i] for i in order])
    row = {t: i for i, t in enumerate(texts)}
    sims = np.einsum("ij,ij->i", vectors[[row[a] for a, _, _ in pairs]], vectors[[row[b] for _, b, _ in pairs]])
    labels = np.array([y for _, _, y in pairs])
    f1, threshold = best_f1(sims, labels)
    points = pr_points(sims, labels)
    out = {"pairs": len(pairs), "best_f1": round(f1, 4), "best_f1_threshold": round(threshold, 4), "roc_auc": round(roc_auc(sims, labels), 4)}
    for target in (0.85, 0.90):
        ok = points["precision"] >= target
        out[f"recall_at_precision_{target:.2f}"] = round(float(points["recall"][ok].max()) if ok.any() else 0.0, 4)
    return out


def tune_on_pairs(pairs: Sequence[Pair], *, current, base, holdout: float = 0.2, seed: int = 0,
                  **options: Any) -> tuple[TuneResult, dict]:
    """Hold out ``holdout`` of ``pairs`` (grouped by text), train an adapter for ``base`` (a
    ``SentenceTransformerEmbedder`` on PyTorch, changed in place: the adapter is merged into it)
    on the rest, and compare plain-cosine quality on the held-out part with ``current``.

    Returns the training result and a report: pair counts, steps, seconds, and the held-out
    quality before (``current``) and after. ``options`` go to ``tune``.
    """
    fit, held = group_split(pairs, holdout, seed)
    if not held or not fit:
        raise ConfigError(f"too few pairs ({len(pairs)}) to hold {holdout:.0%} out by text; add pairs or change the holdout")
    held_pairs = [pairs[i] for i in held]
    before = cosine_quality(current, held_pairs)
    result = tune(base._model, [pairs[i] for i in fit], base_model=base.model_id, seed=seed, **options)
    apply_adapter(base._model, result.adapter)
    after = cosine_quality(base, held_pairs)
    report = {"pairs": len(pairs), "fit_pairs": len(fit), "held_out_pairs": len(held), "steps": result.steps,
              "seconds": round(result.seconds, 1), "held_out_before": before, "held_out_after": after}
    return result, report
