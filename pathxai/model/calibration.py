"""Calibrating a binary classifier's probabilities: temperature scaling and an operating threshold.

Temperature scaling (Guo et al. 2017) divides the logits by one number ``T`` fitted on validation
cases (minimum negative log-likelihood), which changes how confident the model is but never how it
ranks patches (AUC is unchanged). A card stores ``temperature`` and ``threshold``; the loader applies
the temperature in one place, by folding ``1 / T`` into the network's output layer
(:func:`fold_temperature`), so everything that runs the model (evaluate, heatmaps, explanations, the
audit, pruning) sees calibrated probabilities. :func:`unfolded_state` gives back the stored weights
when such a model is saved, so a saved model is never scaled twice.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from pathxai.errors import ModelError

__all__ = [
    "THRESHOLD_RULE",
    "expected_calibration_error",
    "fit_calibration",
    "fit_temperature",
    "fold_temperature",
    "logits_from_probs",
    "negative_log_likelihood",
    "pick_threshold",
    "probs_at_temperature",
    "unfolded_state",
]

#: Attribute set on a model whose output layer holds ``1 / T`` (the folded temperature ``T``).
FOLDED_ATTR = "pathxai_folded_temperature"
_EPS = 1e-7
#: How :func:`fit_calibration` chooses the operating threshold (recorded in the card).
THRESHOLD_RULE = "max balanced accuracy averaged over sites, on calibrated validation patches"


def _output_linear(model: nn.Module, num_classes: int) -> tuple[str, nn.Linear]:
    """The last ``nn.Linear`` with ``num_classes`` outputs (the layer that makes the logits)."""
    found = [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Linear) and m.out_features == num_classes
    ]
    if not found:
        raise ModelError(
            f"cannot apply the card's temperature: {type(model).__name__} has no linear output layer "
            f"with {num_classes} outputs",
            hint="remove 'temperature' from the card (1.0) for this model",
        )
    return found[-1]


def fold_temperature(model: nn.Module, temperature: float, num_classes: int) -> nn.Module:
    """Divide the output layer's weight and bias by ``temperature`` in place (logits become ``z / T``).

    Returns
    -------
    torch.nn.Module
        ``model``, marked with the folded temperature (see :func:`unfolded_state`).
    """
    if temperature == 1.0:
        return model
    _, lin = _output_linear(model, num_classes)
    with torch.no_grad():
        lin.weight.div_(temperature)
        if lin.bias is not None:
            lin.bias.div_(temperature)
    setattr(model, FOLDED_ATTR, float(temperature))
    return model


def unfolded_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state dict (detached CPU copies), with a folded temperature multiplied back out."""
    state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}
    temperature = float(getattr(model, FOLDED_ATTR, 1.0))
    if temperature != 1.0:
        name, _ = _output_linear(model, lin_outputs(model))
        for key in ("weight", "bias"):
            full = f"{name}.{key}" if name else key
            if full in state:
                state[full] = state[full] * temperature
    return state


def lin_outputs(model: nn.Module) -> int:
    """Number of outputs of the model's last linear layer."""
    lins = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not lins:
        raise ModelError(f"{type(model).__name__} has no linear layer")
    return int(lins[-1].out_features)


def logits_from_probs(probs: Sequence[float] | np.ndarray) -> np.ndarray:
    """Logit difference ``z_tumour - z_other`` of binary softmax probabilities (clipped away from 0 and 1)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1.0 - _EPS)
    return np.log(p) - np.log1p(-p)


def probs_at_temperature(probs: Sequence[float] | np.ndarray, temperature: float) -> np.ndarray:
    """Re-express binary probabilities made at temperature 1 at ``temperature``."""
    return 1.0 / (1.0 + np.exp(-logits_from_probs(probs) / temperature))


def fit_temperature(labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> float:
    """The temperature minimising the negative log-likelihood of ``labels`` under ``probs`` (``T`` = 1).

    A log-spaced search over ``[0.05, 20]`` refined by golden-section search; deterministic.

    Raises
    ------
    ValueError
        If there are no labels, or only one class.
    """
    y = np.asarray(labels, dtype=np.float64)
    if len(y) == 0 or len(np.unique(y)) < 2:
        raise ValueError("fitting a temperature needs validation patches of both classes")
    z = logits_from_probs(probs)

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        # -[y log sigmoid(s) + (1 - y) log sigmoid(-s)], stably
        return float(np.mean(np.logaddexp(0.0, -s) * y + np.logaddexp(0.0, s) * (1.0 - y)))

    grid = np.linspace(np.log(0.05), np.log(20.0), 121)
    best = int(np.argmin([nll(g) for g in grid]))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    ratio = (np.sqrt(5.0) - 1.0) / 2.0
    for _ in range(60):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(a) < nll(b):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2.0))


def expected_calibration_error(
    labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray, bins: int = 10
) -> float:
    """Expected calibration error of the tumour probability (equal-width bins, weighted by count)."""
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    if len(y) == 0:
        raise ValueError("no predictions")
    which = np.minimum((p * bins).astype(int), bins - 1)
    ece = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            ece += sel.mean() * abs(p[sel].mean() - y[sel].mean())
    return float(ece)


def pick_threshold(
    labels: Sequence[int] | np.ndarray,
    probs: Sequence[float] | np.ndarray,
    groups: Sequence[str] | None = None,
) -> float:
    """The threshold maximising balanced accuracy, averaged over ``groups`` (e.g. sites) that hold both classes.

    Candidates are the midpoints between sorted distinct probabilities; ties go to the one closest to 0.5.

    Raises
    ------
    ValueError
        If no group holds both classes.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    g = np.asarray(groups if groups is not None else [""] * len(y))
    members = [g == key for key in sorted(set(g.tolist())) if len(np.unique(y[g == key])) == 2]
    if not members:
        raise ValueError("choosing a threshold needs both classes in at least one group")
    u = np.unique(p)
    cands = np.concatenate([[0.5], (u[:-1] + u[1:]) / 2.0]) if len(u) > 1 else np.array([0.5])

    def score(t: float) -> float:
        accs = []
        for sel in members:
            pred = p[sel] >= t
            yt = y[sel]
            accs.append((pred[yt == 1].mean() + (~pred[yt == 0]).mean()) / 2.0)
        return float(np.mean(accs))

    scores = np.array([score(t) for t in cands])
    best = np.flatnonzero(scores >= scores.max() - 1e-12)
    return float(cands[best[np.argmin(np.abs(cands[best] - 0.5))]])


def negative_log_likelihood(labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray) -> float:
    """Mean binary negative log-likelihood of the tumour probability (clipped to ``[1e-7, 1 - 1e-7]``)."""
    y = np.asarray(labels, dtype=np.float64)
    q = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    return float(-np.mean(y * np.log(q) + (1 - y) * np.log1p(-q)))


def fit_calibration(
    labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray, sites: Sequence[str]
) -> dict[str, float | str]:
    """Fit the temperature and the operating threshold on validation patches; the errors before and after.

    Parameters
    ----------
    labels
        Patch labels (1: tumour).
    probs
        The model's tumour probabilities (at temperature 1).
    sites
        Each patch's site: the threshold maximises balanced accuracy averaged over sites.

    Returns
    -------
    dict
        ``temperature``, ``threshold``, ``threshold_rule``, ``ece_before``/``ece_after``,
        ``nll_before``/``nll_after``.

    Raises
    ------
    ValueError
        If the temperature or the threshold cannot be fitted (e.g. a class is missing).
    """
    y = np.asarray(labels, dtype=np.float64)
    raw = np.asarray(probs, dtype=np.float64)
    temperature = fit_temperature(y, raw)
    calibrated = probs_at_temperature(raw, temperature)
    threshold = pick_threshold(y.astype(int), calibrated, sites)
    return {
        "temperature": temperature,
        "threshold": threshold,
        "threshold_rule": THRESHOLD_RULE,
        "ece_before": expected_calibration_error(y, raw),
        "ece_after": expected_calibration_error(y, calibrated),
        "nll_before": negative_log_likelihood(y, raw),
        "nll_after": negative_log_likelihood(y, calibrated),
    }
