"""``PruneSettings``: the options of a pruning run against a labelled patch manifest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

__all__ = ["PruneSettings"]


@dataclass(frozen=True)
class PruneSettings:
    """Options of a pruning run.

    Attributes
    ----------
    reference_per_class
        Reference patches per class for the data-driven criteria.
    global_pruning, iterative_steps
        Ranking scope and schedule (see :func:`pathxai.prune.prune_model`).
    finetune_epochs, finetune_steps_per_epoch, finetune_lr, finetune_batch
        Fine-tuning after each pruning step (0 epochs: none).
    heldout_stride
        Stride of held-out patches (default: the patch size, i.e. no overlap).
    drift_patches
        Held-out patches explained for the drift numbers (0: skip).
    drift_all_seeds
        In a sweep, measure drift for every seed (default: the first seed only, to save time).
    latency, latency_batch, latency_threads, latency_repeats
        CPU latency measurement (median of repeats, fixed threads).
    ig_steps
        Integrated-gradients steps of the ``ig`` criterion.
    """

    reference_per_class: int = 10
    global_pruning: bool = False
    iterative_steps: int = 1
    finetune_epochs: float = 0.0
    finetune_steps_per_epoch: int | None = None
    finetune_lr: float = 5e-4
    finetune_batch: int = 32
    heldout_stride: int | None = None
    drift_patches: int = 32
    drift_all_seeds: bool = False
    latency: bool = True
    latency_batch: int = 16
    latency_threads: int = 1
    latency_repeats: int = 20
    ig_steps: int = 16

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    def criterion_options(self, criterion: str) -> dict[str, Any]:
        """Extra options of ``criterion`` taken from these settings (``ig_steps`` for ``ig``)."""
        return {"ig_steps": self.ig_steps} if criterion == "ig" else {}
