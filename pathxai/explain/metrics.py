"""Faithfulness and localisation metrics for relevance maps (pure torch/numpy).

* :func:`region_perturbation` — pixel flipping / region perturbation (Samek et al. 2017, "Evaluating the
  visualization of what a deep neural network has learned"): split each image into ``k x k`` patches,
  order them by summed relevance (most relevant first, "MoRF"; or least relevant first, "LeRF"), replace
  them step by step by a baseline (image mean, blur, or a constant) and record the model's score of the
  explained class. A faithful explanation makes the MoRF curve fall fast, i.e. a *small* area under it.
  Batched: every step is one forward pass over the whole batch.
* :func:`random_relevance` — the random-relevance baseline for the same curve.
* :func:`relevance_mass_accuracy` and :func:`relevance_rank_accuracy` — Quantus' localisation metrics
  (Arras et al. 2022): the share of relevance inside a ground-truth mask, and the share of the mask's
  size-``k`` top-relevance pixels that lie inside it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Tensor = torch.Tensor
Baseline = Literal["mean", "blur", "zero"] | float


@dataclass(frozen=True)
class PerturbationCurve:
    """Model scores while the image regions are perturbed in relevance order.

    Attributes
    ----------
    fractions : numpy.ndarray
        ``(S + 1,)`` fraction of the image's patches perturbed at each step, from 0 to 1.
    scores : numpy.ndarray
        ``(N, S + 1)`` score of the explained class at each step (``scores[:, 0]`` is the clean image).
    auc : numpy.ndarray
        ``(N,)`` trapezoidal area under each curve over ``fractions`` (same unit as the score).
    order : str
        ``"morf"`` (most relevant first: lower AUC is better) or ``"lerf"`` (higher is better).
    score : str
        ``"logit"`` or ``"probability"``.
    """

    fractions: np.ndarray
    scores: np.ndarray
    auc: np.ndarray
    order: str
    score: str

    @property
    def mean_curve(self) -> np.ndarray:
        """Return the curve averaged over samples, ``(S + 1,)``."""
        return np.asarray(self.scores.mean(axis=0))


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    radius = max(1, round(3 * sigma))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    kernel = torch.exp(-(t**2) / (2 * sigma**2))
    kernel = kernel / kernel.sum()
    c = x.shape[1]
    padded = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    out = F.conv2d(padded, kernel.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(out, kernel.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def make_baseline(x: Tensor, baseline: Baseline, blur_sigma: float = 4.0) -> Tensor:
    """Return the replacement image for perturbed regions.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, H, W)`` images.
    baseline : {"mean", "blur", "zero"} or float
        Per-image channel mean, a Gaussian blur of the image, zeros (the mean colour of a mean/std-normalised
        input), or a constant.
    blur_sigma : float
        Standard deviation of the blur in pixels.

    Returns
    -------
    torch.Tensor
        Tensor of the shape of ``x``.
    """
    if isinstance(baseline, (int, float)) and not isinstance(baseline, bool):
        return torch.full_like(x, float(baseline))
    if baseline == "mean":
        return x.mean(dim=(2, 3), keepdim=True).expand_as(x).clone()
    if baseline == "blur":
        return _gaussian_blur(x, blur_sigma)
    if baseline == "zero":
        return torch.zeros_like(x)
    raise ValueError(f"baseline must be 'mean', 'blur', 'zero' or a number, got {baseline!r}")


def _patch_order(relevance: Tensor, patch: int, order: str) -> Tensor:
    """Return patch indices ``(N, P)`` sorted by summed relevance (descending for MoRF)."""
    pooled = F.avg_pool2d(relevance[:, None], patch, stride=patch, ceil_mode=True)[:, 0]
    flat = pooled.reshape(pooled.shape[0], -1)
    # stable sort with random-free tie breaking by index, so results are reproducible
    return torch.argsort(flat, dim=1, descending=(order == "morf"), stable=True)


def region_perturbation(
    model: nn.Module,
    x: Tensor,
    relevance: np.ndarray | Tensor,
    target: int | np.ndarray | Tensor = 1,
    *,
    patch: int = 8,
    steps: int = 16,
    baseline: Baseline = "mean",
    order: Literal["morf", "lerf"] = "morf",
    score: Literal["logit", "probability"] = "logit",
    batch_size: int = 64,
) -> PerturbationCurve:
    """Run batched region perturbation (pixel flipping with ``k x k`` regions).

    Parameters
    ----------
    model : torch.nn.Module
        The classifier that was explained (called in eval/inference mode; it is not modified).
    x : torch.Tensor
        ``(N, C, H, W)`` model inputs.
    relevance : numpy.ndarray or torch.Tensor
        ``(N, H, W)`` relevance maps of ``x`` (e.g. ``Explanation.relevance``).
    target : int or array (N,)
        Class whose score is tracked.
    patch : int
        Side of the square regions; the image is tiled into ``ceil(H / patch) * ceil(W / patch)`` regions.
    steps : int
        Number of perturbation steps; each perturbs an equal share of the regions, the last one all.
    baseline : {"mean", "blur", "zero"} or float
        What perturbed regions are replaced by (see :func:`make_baseline`).
    order : {"morf", "lerf"}
        Most relevant first (lower AUC = more faithful) or least relevant first.
    score : {"logit", "probability"}
        Track the target logit or its softmax probability.
    batch_size : int
        Images per forward pass.

    Returns
    -------
    PerturbationCurve
    """
    rel, targets = _checked_inputs(x, relevance, target, patch, steps, batch_size, order, score)
    n, _, h, w = x.shape
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    n_regions = -(-h // patch) * -(-w // patch)
    counts = np.unique(np.linspace(0, n_regions, steps + 1).round().astype(int))
    all_scores = np.zeros((n, len(counts)), np.float64)
    was_training = model.training
    model.eval()
    try:
        for start in range(0, n, batch_size):
            stop = min(n, start + batch_size)
            xb = x[start:stop].to(device)
            base = make_baseline(xb, baseline)
            rank_map = _rank_map(rel[start:stop], patch, order).to(device)
            tb = targets[start:stop].to(device)
            for step, count in enumerate(counts):
                perturbed = torch.where(rank_map < int(count), base, xb)
                with torch.inference_mode():
                    out = model(perturbed)
                    if score == "probability":
                        out = torch.softmax(out, dim=1)
                    all_scores[start:stop, step] = out.gather(1, tb[:, None])[:, 0].double().cpu().numpy()
    finally:
        model.train(was_training)
    fractions = counts / n_regions
    auc = np.asarray(np.trapezoid(all_scores, fractions, axis=1), dtype=np.float64)
    return PerturbationCurve(fractions, all_scores, auc, order, score)


def _checked_inputs(
    x: Tensor,
    relevance: np.ndarray | Tensor,
    target: int | np.ndarray | Tensor,
    patch: int,
    steps: int,
    batch_size: int,
    order: str,
    score: str,
) -> tuple[Tensor, Tensor]:
    """Validate :func:`region_perturbation`'s arguments; return float32 relevance and ``(N,)`` targets."""
    if x.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W), got shape {tuple(x.shape)}")
    rel = torch.as_tensor(np.asarray(relevance) if not isinstance(relevance, Tensor) else relevance)
    rel = rel.to(torch.float32)
    n, _, h, w = x.shape
    if tuple(rel.shape) != (n, h, w):
        raise ValueError(f"relevance must have shape {(n, h, w)}, got {tuple(rel.shape)}")
    if patch < 1 or steps < 1 or batch_size < 1:
        raise ValueError(f"patch, steps and batch_size must be >= 1, got {patch}, {steps}, {batch_size}")
    if order not in ("morf", "lerf"):
        raise ValueError(f"order must be 'morf' or 'lerf', got {order!r}")
    if score not in ("logit", "probability"):
        raise ValueError(f"score must be 'logit' or 'probability', got {score!r}")
    targets = torch.as_tensor(np.asarray(target)).to(torch.int64).reshape(-1)
    if targets.numel() == 1:
        targets = targets.expand(n)
    if targets.numel() != n:
        raise ValueError(f"target has {targets.numel()} entries for {n} images")
    return rel, targets


def _rank_map(relevance: Tensor, patch: int, order: str) -> Tensor:
    """``(n, 1, H, W)`` map of each pixel's region rank in perturbation order (0 = perturbed first)."""
    n, h, w = relevance.shape
    gh, gw = -(-h // patch), -(-w // patch)
    n_regions = gh * gw
    ranks = torch.empty((n, n_regions), dtype=torch.int64)
    ranks.scatter_(
        1, _patch_order(relevance, patch, order), torch.arange(n_regions).expand(n, -1).contiguous()
    )
    rank_map = ranks.view(-1, 1, gh, gw).repeat_interleave(patch, 2).repeat_interleave(patch, 3)
    return rank_map[:, :, :h, :w]


def random_relevance(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    """Return uniform random relevance ``(N, H, W)``: the chance baseline for :func:`region_perturbation`.

    Parameters
    ----------
    shape : tuple of int
        ``(N, H, W)``.
    seed : int
        Seed of the generator, for reproducible curves.

    Returns
    -------
    numpy.ndarray
        float32 array.
    """
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


def _check_mask(relevance: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rel = np.asarray(relevance, dtype=np.float64)
    m = np.asarray(mask).astype(bool)
    if rel.ndim == 2:
        rel, m = rel[None], m[None] if m.ndim == 2 else m
    if rel.shape != m.shape or rel.ndim != 3:
        raise ValueError(f"relevance and mask must both be (N, H, W), got {rel.shape} and {m.shape}")
    return rel, m


def relevance_mass_accuracy(
    relevance: np.ndarray, mask: np.ndarray, positive_only: bool = True
) -> np.ndarray:
    """Share of the relevance that falls inside the mask (Quantus' ``RelevanceMassAccuracy``).

    Parameters
    ----------
    relevance : numpy.ndarray
        ``(N, H, W)`` (or ``(H, W)``) relevance.
    mask : numpy.ndarray
        Boolean ground truth of the same shape (e.g. gland masks, tumour annotations).
    positive_only : bool
        Count only positive relevance (evidence *for* the class), the usual choice for signed LRP maps.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` values in ``[0, 1]`` (NaN for a map without relevance).
    """
    rel, m = _check_mask(relevance, mask)
    if positive_only:
        rel = np.clip(rel, 0, None)
    total = rel.reshape(len(rel), -1).sum(1)
    inside = (rel * m).reshape(len(rel), -1).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total != 0, inside / total, np.nan)


def relevance_rank_accuracy(relevance: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Share of the ``K`` most relevant pixels inside the mask, ``K`` = mask size (Quantus' name).

    Parameters
    ----------
    relevance : numpy.ndarray
        ``(N, H, W)`` (or ``(H, W)``) relevance.
    mask : numpy.ndarray
        Boolean ground truth of the same shape.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` values in ``[0, 1]`` (NaN for an empty mask). Ties at the threshold are broken by pixel
        order, so the count is exactly ``K``.
    """
    rel, m = _check_mask(relevance, mask)
    flat_r = rel.reshape(len(rel), -1)
    flat_m = m.reshape(len(m), -1)
    out = np.full(len(rel), np.nan)
    for i in range(len(rel)):
        k = int(flat_m[i].sum())
        if k == 0:
            continue
        top = np.argsort(-flat_r[i], kind="stable")[:k]
        out[i] = flat_m[i][top].sum() / k
    return out
