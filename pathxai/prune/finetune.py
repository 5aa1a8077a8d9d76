"""Fine-tuning a pruned network for a few epochs (recovering what pruning removed).

A short, seeded AdamW run with cosine learning-rate decay and class-balanced cross-entropy over a
patch dataset (any map-style dataset of ``(tensor, label)``). BatchNorm statistics are updated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from pathxai.errors import PruneError
from pathxai.model.train import train_step

__all__ = ["finetune"]


def _labels(dataset: Dataset[tuple[torch.Tensor, int]]) -> np.ndarray | None:
    labels = getattr(dataset, "patch_labels", None)
    return None if labels is None else np.asarray(labels, dtype=np.int64)


def _class_weights(dataset: Dataset[tuple[torch.Tensor, int]]) -> torch.Tensor:
    """Inverse class frequencies of binary ``dataset.patch_labels`` (ones when unknown or a class is absent)."""
    labels = _labels(dataset)
    weight = torch.ones(2)
    if labels is not None and labels.size and labels.max() <= 1:
        counts = np.bincount(labels, minlength=2).astype(np.float64)
        if counts.min() > 0:
            weight = torch.tensor(counts.sum() / (2 * counts), dtype=torch.float32)
    return weight


def _epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: nn.Module,
    dataset: Dataset[tuple[torch.Tensor, int]],
    position: tuple[int, int, int],
    steps: int,
    batch_size: int,
    lr: float,
    seed: int,
    bar: tqdm,
) -> dict[str, float]:
    """One seeded pass of ``steps`` batches; ``position`` is (epoch, global step, total steps)."""
    epoch, step, total = position
    n = len(dataset)  # type: ignore[arg-type]
    model.train()
    set_epoch = getattr(dataset, "set_epoch", None)
    if callable(set_epoch):
        set_epoch(epoch)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 7919 + epoch)).tolist()
    loss_sum, correct, seen = 0.0, 0, 0
    for b in range(steps):
        idx: Sequence[int] = perm[b * batch_size : (b + 1) * batch_size]
        loss, right = train_step(
            model,
            opt,
            loss_fn,
            [dataset[i] for i in idx],
            lr * 0.5 * (1.0 + math.cos(math.pi * step / total)),
            lambda v: PruneError(f"fine-tuning diverged (loss {v})", hint="lower the learning rate"),
        )
        step += 1
        loss_sum += loss * len(idx)
        correct += right
        seen += len(idx)
        bar.update(1)
    return {"epoch": epoch + 1, "loss": loss_sum / seen, "accuracy": correct / seen}


def finetune(
    model: nn.Module,
    dataset: Dataset[tuple[torch.Tensor, int]],
    epochs: float,
    *,
    lr: float = 5e-4,
    weight_decay: float = 1e-4,
    batch_size: int = 32,
    max_steps_per_epoch: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> list[dict[str, float]]:
    """Train ``model`` in place on ``dataset``, then leave it in eval mode.

    Parameters
    ----------
    model
        The (pruned) network.
    dataset
        Training patches; ``dataset.patch_labels`` (if present) balances the loss, and
        ``dataset.set_epoch`` (if present) selects each epoch's augmentation.
    epochs
        Passes over the data (0 does nothing).
    lr, weight_decay
        AdamW peak learning rate (cosine decay to 0) and weight decay.
    batch_size
        Patches per step.
    max_steps_per_epoch
        Cap on steps per epoch (``None``: the whole dataset).
    seed
        Seeds the shuffling.
    progress
        Show a progress bar.

    Returns
    -------
    list[dict[str, float]]
        Per-epoch mean loss and accuracy.
    """
    if epochs < 0 or batch_size < 2 or lr <= 0:
        raise ValueError("epochs must be >= 0, batch_size >= 2 and lr > 0")
    n = len(dataset)  # type: ignore[arg-type]
    if epochs == 0:
        model.eval()
        return []
    if n < 2:
        raise PruneError(f"fine-tuning needs at least 2 training patches, got {n}")
    steps_per_epoch = max(1, n // batch_size)
    if max_steps_per_epoch is not None:
        steps_per_epoch = min(steps_per_epoch, int(max_steps_per_epoch))
    n_epochs = math.ceil(epochs)
    total = steps_per_epoch * n_epochs
    loss_fn = nn.CrossEntropyLoss(weight=_class_weights(dataset))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    history: list[dict[str, float]] = []
    step = 0
    bar = tqdm(total=total, desc="fine-tuning", unit="step", disable=not progress, leave=False)
    try:
        for epoch in range(n_epochs):
            stats = _epoch(
                model, opt, loss_fn, dataset, (epoch, step, total), steps_per_epoch, batch_size, lr, seed, bar
            )
            step += steps_per_epoch
            history.append(stats)
    finally:
        bar.close()
        model.eval()
    return history
