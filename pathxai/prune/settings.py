"""``PruneSettings``: the options of a pruning run against a labelled patch manifest."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pathxai.prune.criteria import DATA_CRITERIA

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
    bn_recalibrate
        BatchNorm statistics after each pruning step, from the reference images' tissue patches
        (inputs only: no labels, no gradient steps; see :mod:`pathxai.prune.batchnorm`): ``"none"``
        keeps the unpruned network's, ``"full"`` re-estimates them, ``"shift"`` moves the trained ones
        by the change pruning causes on the tiles. Every criterion, data-free ones included, gets the same.
    bn_tiles_per_image
        Tissue patches per reference image used for the BatchNorm statistics (the reference images
        stay the same ``reference_per_class`` images per class; 0 = all their patches).
    normalizer
        Per-layer score normalisation (``None``, ``"mean"``, ``"max"``, ``"sum"``; matters for
        global ranking), see :class:`pathxai.prune.criteria.GroupScorer`.
    relevance
        ``"abs"`` or ``"signed"`` pooling of the data-driven scores over reference samples.
    lrp_method, lrp_gamma
        The LRP rules of the ``lrp`` criterion: a registered LRP method
        (``"lrp"`` = EpsilonPlusFlat, ``"lrp_epsilon_gamma_box"``, ``"lrp_epsilon_alpha2_beta1_flat"``)
        and the gamma of the gamma rule.
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
    bn_recalibrate: str = "shift"
    bn_tiles_per_image: int = 8
    normalizer: str | None = None
    relevance: str = "abs"
    lrp_method: str = "lrp"
    lrp_gamma: float = 0.25

    def __post_init__(self) -> None:
        if self.bn_recalibrate not in ("none", "full", "shift"):
            raise ValueError(f"bn_recalibrate must be 'none', 'full' or 'shift', got {self.bn_recalibrate!r}")
        if self.relevance not in ("abs", "signed"):
            raise ValueError(f"relevance must be 'abs' or 'signed', got {self.relevance!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)

    def criterion_options(self, criterion: str) -> dict[str, Any]:
        """Extra options of ``criterion`` taken from these settings.

        ``ig_steps`` for ``ig``; the LRP method and gamma for ``lrp``; the relevance pooling for every
        data-driven criterion.
        """
        out: dict[str, Any] = {}
        if criterion in DATA_CRITERIA:
            out["relevance"] = self.relevance
        if criterion == "ig":
            out["ig_steps"] = self.ig_steps
        if criterion == "lrp" and (self.lrp_method != "lrp" or self.lrp_gamma != 0.25):
            options = {"gamma": self.lrp_gamma} if "gamma" in self.lrp_method else {}
            out.update(lrp_method=self.lrp_method, lrp_options=options)
        return out

    def variant(self) -> str:
        """The stability options as one short label (recorded in each sweep row, part of its key)."""
        parts = [
            "bn-none"
            if self.bn_recalibrate == "none"
            else f"bn-{self.bn_recalibrate}{self.bn_tiles_per_image}",
            "global" if self.global_pruning else "local",
            f"norm-{self.normalizer}" if self.normalizer else "raw",
            self.relevance,
        ]
        if self.lrp_method != "lrp":
            parts.append(self.lrp_method.removeprefix("lrp_"))
        if "gamma" in self.lrp_method:
            parts.append(f"g{self.lrp_gamma:g}")
        return "/".join(parts)
