"""Explanation drift: how differently the original and the pruned model explain the same patches.

For each held-out patch both models are explained (LRP heatmaps of the same target class) and the two
heatmaps compared: Pearson and Spearman correlation, and the overlap (IoU) of their top-k% most relevant
pixels. Faithfulness of each model's own heatmap is measured by pixel flipping (area under the curve
of the target logit as the most relevant pixels are removed first; lower means a more faithful map),
when a flipping function is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata
from torch import nn

__all__ = ["DriftReport", "explanation_drift", "heatmap_similarity", "topk_iou"]

#: ``explain(model, inputs, targets) -> relevance (N, H, W)``.
ExplainFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], np.ndarray]
#: ``flip_auc(model, inputs, relevance, targets) -> AUC per sample (N,)``.
FlipFn = Callable[[nn.Module, torch.Tensor, np.ndarray, torch.Tensor], np.ndarray]


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else float("nan")


def topk_iou(a: np.ndarray, b: np.ndarray, fraction: float = 0.1) -> float:
    """IoU of the ``fraction`` most relevant pixels of two heatmaps of equal shape.

    Parameters
    ----------
    a, b
        Heatmaps (any shape, same size).
    fraction
        Share of pixels in each top set, in ``(0, 1]``.

    Returns
    -------
    float
        ``|A & B| / |A | B|``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1], got {fraction}")
    a, b = np.ravel(a), np.ravel(b)
    if a.shape != b.shape:
        raise ValueError(f"heatmaps differ in size: {a.size} vs {b.size}")
    k = max(1, round(fraction * a.size))
    top_a = np.zeros(a.size, dtype=bool)
    top_b = np.zeros(b.size, dtype=bool)
    top_a[np.argsort(-a, kind="stable")[:k]] = True
    top_b[np.argsort(-b, kind="stable")[:k]] = True
    return float((top_a & top_b).sum() / (top_a | top_b).sum())


def heatmap_similarity(a: np.ndarray, b: np.ndarray, top_fraction: float = 0.1) -> dict[str, float]:
    """Pearson, Spearman and top-k IoU between two heatmaps.

    Parameters
    ----------
    a, b
        Heatmaps of the same shape.
    top_fraction
        Share of pixels for :func:`topk_iou`.

    Returns
    -------
    dict[str, float]
        ``pearson``, ``spearman``, ``topk_iou``.
    """
    fa, fb = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    if fa.shape != fb.shape:
        raise ValueError(f"heatmaps differ in size: {fa.size} vs {fb.size}")
    return {
        "pearson": _pearson(fa, fb),
        "spearman": _pearson(rankdata(fa), rankdata(fb)),
        "topk_iou": topk_iou(fa, fb, top_fraction),
    }


@dataclass(frozen=True)
class DriftReport:
    """Heatmap drift between an original and a pruned model on held-out patches.

    Attributes
    ----------
    n
        Number of patches.
    top_fraction
        Share of pixels of the top-k overlap.
    pearson, spearman, topk_iou
        Mean over patches, with ``*_std`` the standard deviation.
    flip_auc_original, flip_auc_pruned
        Mean pixel-flipping AUC of each model's own heatmaps (``nan`` when not measured).
    prediction_agreement
        Share of patches where both models predict the same class.
    """

    n: int
    top_fraction: float
    pearson: float
    pearson_std: float
    spearman: float
    spearman_std: float
    topk_iou: float
    topk_iou_std: float
    flip_auc_original: float
    flip_auc_pruned: float
    prediction_agreement: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (``nan`` becomes ``None``)."""
        items = asdict(self).items()
        return {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in items}


def _batches(inputs: torch.Tensor, size: int) -> Sequence[slice]:
    return [slice(i, min(i + size, inputs.shape[0])) for i in range(0, inputs.shape[0], size)]


def _mean_sd(sims: Sequence[dict[str, float]], key: str) -> tuple[float, float]:
    """Mean and standard deviation of the finite ``key`` values of ``sims`` (``nan`` when none)."""
    vals = np.array([s[key] for s in sims], dtype=np.float64)
    vals = vals[np.isfinite(vals)]
    if vals.size == 0:
        return float("nan"), float("nan")
    return float(vals.mean()), float(vals.std())


def _mean_of(parts: list[np.ndarray]) -> float:
    """Mean of the concatenated ``parts`` (``nan`` when there are none)."""
    return float(np.concatenate(parts).mean()) if parts else float("nan")


def _flip(
    fn: FlipFn, model: nn.Module, x: torch.Tensor, rel: np.ndarray, t: torch.Tensor, known: np.ndarray | None
) -> np.ndarray:
    """Pixel-flipping AUC per patch as float64 (``known`` values when given, else measured)."""
    return np.asarray(fn(model, x, rel, t) if known is None else known, dtype=np.float64)


def explanation_drift(
    original: nn.Module,
    pruned: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    explain: ExplainFn,
    *,
    flip_auc: FlipFn | None = None,
    top_fraction: float = 0.1,
    batch_size: int = 16,
    original_relevance: np.ndarray | None = None,
    original_flip_auc: np.ndarray | None = None,
) -> DriftReport:
    """Compare the two models' heatmaps of ``targets`` on ``inputs``.

    Parameters
    ----------
    original, pruned
        The models (eval mode).
    inputs
        Preprocessed held-out patches ``(N, 3, H, W)``.
    targets
        Class explained per patch (e.g. the true label, or the tumour class).
    explain
        Heatmap function (e.g. the fast LRP path of :mod:`pathxai.explain`).
    flip_auc
        Pixel-flipping AUC function; skipped when ``None``.
    top_fraction
        Share of pixels of the top-k overlap.
    batch_size
        Patches per explanation call.
    original_relevance
        The original model's heatmaps of these patches ``(N, H, W)``, if already computed (e.g. once
        for a whole sweep); ``explain`` is then only called for the pruned model.
    original_flip_auc
        The original model's pixel-flipping AUC per patch, if already computed.

    Returns
    -------
    DriftReport
        The aggregated numbers.
    """
    if inputs.shape[0] == 0:
        raise ValueError("explanation drift needs at least one patch")
    if original_relevance is not None and len(original_relevance) != inputs.shape[0]:
        raise ValueError(f"{len(original_relevance)} original heatmaps for {inputs.shape[0]} patches")
    targets = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
    sims: list[dict[str, float]] = []
    aucs_o: list[np.ndarray] = []
    aucs_p: list[np.ndarray] = []
    agree = 0
    original.eval()
    pruned.eval()
    for sl in _batches(inputs, batch_size):
        x, t = inputs[sl], targets[sl]
        rel_o = np.asarray(explain(original, x, t) if original_relevance is None else original_relevance[sl])
        rel_p = np.asarray(explain(pruned, x, t))
        sims.extend(heatmap_similarity(a, b, top_fraction) for a, b in zip(rel_o, rel_p, strict=True))
        with torch.no_grad():
            agree += int((original(x).argmax(1) == pruned(x).argmax(1)).sum())
        if flip_auc is not None:
            known = None if original_flip_auc is None else original_flip_auc[sl]
            aucs_o.append(_flip(flip_auc, original, x, rel_o, t, known))
            aucs_p.append(_flip(flip_auc, pruned, x, rel_p, t, None))
    p, p_sd = _mean_sd(sims, "pearson")
    s, s_sd = _mean_sd(sims, "spearman")
    k, k_sd = _mean_sd(sims, "topk_iou")
    return DriftReport(
        n=len(sims),
        top_fraction=top_fraction,
        pearson=p,
        pearson_std=p_sd,
        spearman=s,
        spearman_std=s_sd,
        topk_iou=k,
        topk_iou_std=k_sd,
        flip_auc_original=_mean_of(aucs_o),
        flip_auc_pruned=_mean_of(aucs_p),
        prediction_agreement=agree / len(sims),
    )
