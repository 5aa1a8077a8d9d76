"""What a pruned model is measured on: held-out AUC/accuracy and LRP heatmap drift.

:func:`evaluate_model` scores the held-out patches of a :class:`~pathxai.prune.data.PruneData`;
:func:`measure_drift` compares the LRP heatmaps (tumour class) of the original and the pruned model
on a fixed sample of them, with pixel-flipping faithfulness of both.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from pathxai.explain import Explainer
from pathxai.explain.metrics import region_perturbation
from pathxai.model.evaluate import evaluate_dataset
from pathxai.prune.data import PruneData
from pathxai.prune.drift import DriftReport, ExplainFn, explanation_drift

__all__ = ["evaluate_model", "flip_auc", "lrp_heatmaps", "measure_drift"]


def evaluate_model(model: nn.Module, data: PruneData, progress: bool = False) -> dict[str, float]:
    """Patch- and image-level AUC and accuracy on the held-out patches."""
    ev = evaluate_dataset(model, data.heldout, tumour_index=data.card.tumour_index, progress=progress)
    out = {
        "auc": ev["auc"],
        "accuracy": ev["accuracy"],
        "balanced_accuracy": ev["balanced_accuracy"],
        "image_auc": ev["image_level"]["auc"],
        "image_accuracy": ev["image_level"]["accuracy"],
        "n_heldout": ev["n"],
    }
    return {k: float("nan") if v is None else float(v) for k, v in out.items()}


def lrp_heatmaps(target_class: int) -> ExplainFn:
    """Return ``explain(model, inputs, targets)``: LRP relevance maps of ``target_class``."""

    def run(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
        with Explainer(model, "lrp", target_class=target_class) as explainer:
            return explainer(x, t).relevance

    return run


def flip_auc(model: nn.Module, x: torch.Tensor, rel: np.ndarray, t: torch.Tensor) -> np.ndarray:
    """Pixel-flipping AUC per patch, used for drift (lower = more faithful heatmap).

    MoRF region perturbation of :mod:`pathxai.explain.metrics`: 8x8 regions, 16 steps, mean-colour
    baseline, tracking the explained class's *probability* so models with different logit scales compare.
    """
    curve = region_perturbation(
        model, x, rel, t, patch=8, steps=16, baseline="mean", order="morf", score="probability"
    )
    return np.asarray(curve.auc, dtype=np.float64)


def measure_drift(
    original: nn.Module,
    pruned: nn.Module,
    data: PruneData,
    n: int,
    cache: dict[str, np.ndarray] | None = None,
) -> DriftReport | None:
    """LRP heatmap drift between two models on ``n`` held-out patches (tumour class explained).

    ``cache`` (a dict kept by the caller) holds the original model's heatmaps across calls.
    """
    if n <= 0:
        return None
    x, _ = data.drift_batch(n)
    target = torch.full((x.shape[0],), data.card.tumour_index, dtype=torch.long)
    explain = lrp_heatmaps(data.card.tumour_index)
    original_rel = original_flip = None
    if cache is not None:
        if "original" not in cache:
            steps = range(0, len(x), 16)
            rel = np.concatenate([explain(original, x[i : i + 16], target[i : i + 16]) for i in steps])
            cache["original"] = rel
            cache["original_flip"] = np.concatenate(
                [flip_auc(original, x[i : i + 16], rel[i : i + 16], target[i : i + 16]) for i in steps]
            )
        original_rel, original_flip = cache["original"], cache["original_flip"]
    return explanation_drift(
        original,
        pruned,
        x,
        target,
        explain,
        flip_auc=flip_auc,
        original_relevance=original_rel,
        original_flip_auc=original_flip,
    )
