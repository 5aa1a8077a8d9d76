"""Small statistics used by several checks: bootstrap AUC CIs, cross-validated probes, permutation tests."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import balanced_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

__all__ = ["ProbeResult", "auc", "auc_ci", "cv_probe"]


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC by the Mann-Whitney rank statistic (ties count one half); NaN for a single class."""
    y = np.asarray(y).astype(bool)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = rankdata(np.asarray(score, dtype=np.float64))
    return float((ranks[y].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def auc_ci(
    y: np.ndarray, score: np.ndarray, n_boot: int = 1000, ci: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """ROC AUC with a percentile bootstrap confidence interval.

    Returns
    -------
    tuple[float, float, float]
        ``(auc, low, high)``; NaNs when ``y`` holds a single class.
    """
    y = np.asarray(y).astype(int)
    score = np.asarray(score, dtype=np.float64)
    if len(np.unique(y)) < 2:
        return float("nan"), float("nan"), float("nan")
    value = auc(y, score)
    rng = np.random.default_rng(seed)
    n = len(y)
    boots = []
    for _ in range(int(n_boot)):
        idx = rng.integers(0, n, n)
        if len(np.unique(y[idx])) < 2:
            continue
        boots.append(auc(y[idx], score[idx]))
    if not boots:
        return value, float("nan"), float("nan")
    a = (1.0 - ci) / 2.0
    return value, float(np.quantile(boots, a)), float(np.quantile(boots, 1 - a))


@dataclass(frozen=True)
class ProbeResult:
    """Outcome of a cross-validated probe.

    Attributes
    ----------
    target
        What was predicted.
    metric
        ``auc`` (binary) or ``normalised balanced accuracy`` (multi-class: 0 chance, 1 perfect).
    value
        Out-of-fold metric.
    chance
        The metric's chance level (0.5 for AUC, 0 for normalised balanced accuracy).
    p_value
        Permutation-test p-value (labels permuted, same CV).
    ci
        Bootstrap confidence interval of the out-of-fold metric (AUC only; ``None`` otherwise).
    n, n_classes, grouped
        Samples, classes, whether folds were grouped (by patient).
    scores
        Out-of-fold scores (probability of class 1 for binary targets) for plots.
    kept
        Boolean mask over the input rows that were used (rows of rare or missing classes are dropped).
    """

    target: str
    metric: str
    value: float
    chance: float
    p_value: float
    ci: tuple[float, float] | None
    n: int
    n_classes: int
    grouped: bool
    scores: np.ndarray
    kept: np.ndarray

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary (without the per-item scores)."""
        return {
            "target": self.target,
            "metric": self.metric,
            "value": self.value,
            "chance": self.chance,
            "p_value": self.p_value,
            "ci": list(self.ci) if self.ci else None,
            "n": self.n,
            "n_classes": self.n_classes,
            "grouped_by_patient": self.grouped,
        }


def _oof(
    x: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], binary: bool
) -> np.ndarray:
    out = np.zeros(len(y)) if binary else np.zeros(len(y), dtype=y.dtype)
    for tr, te in folds:
        clf = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=500))
        clf.fit(x[tr], y[tr])
        out[te] = clf.predict_proba(x[te])[:, 1] if binary else clf.predict(x[te])
    return out


def _metric(y: np.ndarray, oof: np.ndarray, binary: bool, k: int) -> float:
    if binary:
        return auc(y, oof)
    bacc = balanced_accuracy_score(y, oof)
    return float((bacc - 1.0 / k) / (1.0 - 1.0 / k))


def cv_probe(
    features: np.ndarray,
    target: Sequence[object],
    groups: Sequence[object] | None,
    name: str,
    permutations: int = 200,
    n_boot: int = 1000,
    seed: int = 0,
    max_folds: int = 5,
) -> ProbeResult | None:
    """Cross-validated logistic regression on ``features`` predicting ``target``, with a permutation test.

    Folds are grouped by ``groups`` (patients) when given, so a probe cannot win by recognising
    a patient it saw in training. Classes with fewer members than folds are dropped.

    Returns
    -------
    ProbeResult or None
        ``None`` when fewer than two usable classes or too few samples remain.
    """
    # one BLAS thread: these fits are tiny and much slower when threads contend
    with threadpool_limits(1):
        return _cv_probe(features, target, groups, name, permutations, n_boot, seed, max_folds)


def _cv_probe(
    features: np.ndarray,
    target: Sequence[object],
    groups: Sequence[object] | None,
    name: str,
    permutations: int,
    n_boot: int,
    seed: int,
    max_folds: int,
) -> ProbeResult | None:
    x = np.asarray(features, dtype=np.float64)
    t = np.asarray([str(v) for v in target])
    g = np.asarray([str(v) for v in groups]) if groups is not None else None
    keep = np.asarray([v not in ("None", "") for v in t])
    values, counts = np.unique(t[keep], return_counts=True)
    n_groups_per_class = {}
    for v in values:
        sel = keep & (t == v)
        n_groups_per_class[v] = len(np.unique(g[sel])) if g is not None else int(sel.sum())
    min_members = 2
    ok = [v for v, c in zip(values, counts, strict=True) if c >= min_members and n_groups_per_class[v] >= 2]
    if len(ok) < 2:
        return None
    keep &= np.isin(t, ok)
    kept = keep.copy()
    x, t = x[keep], t[keep]
    g = g[keep] if g is not None else None
    k = len(ok)
    binary = k == 2
    y = np.searchsorted(np.asarray(sorted(ok)), t)
    n_splits = int(min(max_folds, min(n_groups_per_class[v] for v in ok)))
    if n_splits < 2:
        return None
    if g is not None:
        cv = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        folds = list(cv.split(x, y, g))
    else:
        folds = list(StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=seed).split(x, y))
    if any(len(np.unique(y[tr])) < 2 for tr, _ in folds):
        return None
    oof = _oof(x, y, folds, binary)
    value = _metric(y, oof, binary, k)
    rng = np.random.default_rng(seed)
    null: list[float] = []
    exceed = 0
    for i in range(int(permutations)):
        yp = rng.permutation(y)
        if any(len(np.unique(yp[tr])) < 2 for tr, _ in folds):
            continue
        v = _metric(yp, _oof(x, yp, folds, binary), binary, k)
        null.append(v)
        exceed += v >= value
        # stop early once the result is clearly not significant (p surely above 0.1)
        if i >= 19 and (1 + exceed) / (2 + i) > 0.2:
            break
    p = (1 + exceed) / (1 + len(null))
    ci = None
    if binary:
        _, lo, hi = auc_ci(y, oof, n_boot=n_boot, seed=seed)
        ci = (lo, hi)
    return ProbeResult(
        target=name,
        metric="auc" if binary else "normalised balanced accuracy",
        value=value,
        chance=0.5 if binary else 0.0,
        p_value=float(p),
        ci=ci,
        n=len(y),
        n_classes=k,
        grouped=g is not None,
        scores=oof if binary else np.zeros(0),
        kept=kept,
    )
