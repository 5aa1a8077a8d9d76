"""Per-map quality scores of relevance maps (pure numpy): one value per patch, for bootstrap summaries.

* :func:`gini` — sparseness (Chalasani et al. 2020; Quantus ``Sparseness``): the Gini index of ``|R|``,
  0 for a uniform map, ``(n - 1) / n`` for a one-hot map.
* :func:`entropy` — complexity (Bhatt et al. 2020; Quantus ``Complexity``): Shannon entropy of
  ``|R| / sum |R|``, in nats (0 for one-hot, ``log n`` for uniform).
* :func:`pointing_game` — Zhang et al. 2018 (Quantus ``PointingGame``): is the most relevant pixel inside
  the mask.
* :func:`map_correlation` — Pearson or Spearman correlation of two maps per patch (randomisation and
  robustness tests).
* :func:`conservation` — ``sum R / target logit`` per patch (LRP's conservation property).
"""

from __future__ import annotations

from typing import Literal

import numpy as np


def _flat(maps: np.ndarray) -> np.ndarray:
    a = np.asarray(maps, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"maps must be (N, H, W) or (H, W), got shape {a.shape}")
    return a.reshape(len(a), -1)


def gini(relevance: np.ndarray) -> np.ndarray:
    """Gini index of ``|R|`` per map (higher = sparser).

    Parameters
    ----------
    relevance : numpy.ndarray
        ``(N, H, W)`` (or ``(H, W)``) relevance.

    Returns
    -------
    numpy.ndarray
        ``(N,)`` values in ``[0, (n - 1) / n]`` with ``n = H * W``; NaN for an all-zero map.
    """
    a = np.sort(np.abs(_flat(relevance)), axis=1)
    n = a.shape[1]
    total = a.sum(1)
    weights = 2 * np.arange(1, n + 1) - n - 1
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, (a @ weights) / (n * total), np.nan)


def entropy(relevance: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of ``|R| / sum |R|`` per map (lower = simpler); NaN for an all-zero map."""
    a = np.abs(_flat(relevance))
    total = a.sum(1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        p = a / total
        logs = np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), 0.0)
        out = -(p * logs).sum(1)
    return np.where(total[:, 0] > 0, out, np.nan)


def pointing_game(relevance: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """1.0 where the most relevant pixel lies inside the mask, else 0.0; NaN for an empty mask.

    Ties for the maximum are broken by pixel order (the first maximum counts).
    """
    r = _flat(relevance)
    m = _flat(np.asarray(mask).astype(bool)).astype(bool)
    if r.shape != m.shape:
        raise ValueError(f"relevance and mask must have the same shape, got {r.shape} and {m.shape}")
    hit = m[np.arange(len(r)), np.argmax(r, axis=1)].astype(np.float64)
    return np.where(m.any(1), hit, np.nan)


def _ranks(a: np.ndarray) -> np.ndarray:
    """Row-wise ranks (ties get distinct ranks by position: maps are continuous)."""
    order = np.argsort(a, axis=1, kind="stable")
    ranks = np.empty_like(order, dtype=np.float64)
    np.put_along_axis(ranks, order, np.arange(a.shape[1], dtype=np.float64)[None].repeat(len(a), 0), 1)
    return ranks


def map_correlation(
    a: np.ndarray,
    b: np.ndarray,
    kind: Literal["pearson", "spearman"] = "pearson",
    absolute: bool = False,
) -> np.ndarray:
    """Correlation of two relevance maps per patch.

    Parameters
    ----------
    a, b : numpy.ndarray
        ``(N, H, W)`` maps.
    kind : {"pearson", "spearman"}
        Linear correlation or rank correlation (ties broken by position).
    absolute : bool
        Correlate ``|a|`` and ``|b|`` (Adebayo et al. 2018 compare absolute relevance).

    Returns
    -------
    numpy.ndarray
        ``(N,)`` values in ``[-1, 1]``; NaN where a map is constant.
    """
    x, y = _flat(a), _flat(b)
    if x.shape != y.shape:
        raise ValueError(f"maps must have the same shape, got {x.shape} and {y.shape}")
    if absolute:
        x, y = np.abs(x), np.abs(y)
    if kind == "spearman":
        x, y = _ranks(x), _ranks(y)
    elif kind != "pearson":
        raise ValueError(f"kind must be 'pearson' or 'spearman', got {kind!r}")
    x = x - x.mean(1, keepdims=True)
    y = y - y.mean(1, keepdims=True)
    den = np.sqrt((x * x).sum(1) * (y * y).sum(1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, (x * y).sum(1) / den, np.nan)


def conservation(relevance: np.ndarray, target_logit: np.ndarray) -> np.ndarray:
    """``sum R / target logit`` per patch: 1 when relevance is conserved; NaN for a zero logit."""
    total = _flat(relevance).sum(1)
    logit = np.asarray(target_logit, dtype=np.float64).reshape(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(logit != 0, total / logit, np.nan)
