"""Bootstrap confidence intervals over patches (percentile method, seeded)."""

from __future__ import annotations

import numpy as np

#: Summary of one metric: ``{"mean", "ci_low", "ci_high", "n"}`` (floats; NaN-free, ``None`` when empty).
Summary = dict[str, float | int | None]


def _empty() -> Summary:
    return {"mean": None, "ci_low": None, "ci_high": None, "n": 0}


def bootstrap_mean(values: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> Summary:
    """Mean of ``values`` (NaNs dropped) with a percentile bootstrap confidence interval.

    Parameters
    ----------
    values : numpy.ndarray
        One value per patch.
    n_boot : int
        Number of resamples.
    level : float
        Coverage of the interval.
    seed : int
        Seed of the resampling.

    Returns
    -------
    dict
        ``mean``, ``ci_low``, ``ci_high`` and ``n`` (patches with a value); ``None`` values when empty.
    """
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return _empty()
    idx = np.random.default_rng(seed).integers(0, len(v), size=(n_boot, len(v)))
    means = v[idx].mean(1)
    tail = (1 - level) / 2
    return {
        "mean": float(v.mean()),
        "ci_low": float(np.quantile(means, tail)),
        "ci_high": float(np.quantile(means, 1 - tail)),
        "n": len(v),
    }


def bootstrap_ratio(
    numerator: np.ndarray, denominator: np.ndarray, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> Summary:
    """Ratio of means ``mean(numerator) / mean(denominator)`` with a paired bootstrap interval.

    Patches are resampled jointly (the same patches in numerator and denominator), so the interval
    reflects the paired design. Pairs with a NaN are dropped.
    """
    a = np.asarray(numerator, dtype=np.float64).reshape(-1)
    b = np.asarray(denominator, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"numerator and denominator differ in length: {a.shape} vs {b.shape}")
    keep = np.isfinite(a) & np.isfinite(b)
    a, b = a[keep], b[keep]
    if len(a) == 0 or b.mean() == 0:
        return _empty()
    idx = np.random.default_rng(seed).integers(0, len(a), size=(n_boot, len(a)))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = a[idx].mean(1) / b[idx].mean(1)
    ratios = ratios[np.isfinite(ratios)]
    tail = (1 - level) / 2
    return {
        "mean": float(a.mean() / b.mean()),
        "ci_low": float(np.quantile(ratios, tail)),
        "ci_high": float(np.quantile(ratios, 1 - tail)),
        "n": len(a),
    }
