"""Patient-grouped, label-stratified splits: a patient is never on both sides."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

__all__ = ["assert_disjoint", "fold_of", "grouped_folds"]


def grouped_folds(
    labels: Sequence[int], groups: Sequence[str], n_folds: int, seed: int = 0
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split items into ``n_folds`` (train, test) index pairs grouped by ``groups``, stratified by label.

    Parameters
    ----------
    labels
        Per-item class (e.g. image tumour label).
    groups
        Per-item group (patient).
    n_folds
        Number of folds (2 <= n_folds <= number of groups).
    seed
        Shuffling seed (same seed, same folds).

    Returns
    -------
    list of (train_idx, test_idx)
        Sorted index arrays; every item is in exactly one test fold.
    """
    y = np.asarray(labels)
    g = np.asarray(groups)
    if len(y) != len(g):
        raise ValueError("labels and groups differ in length")
    n_groups = len(set(g.tolist()))
    if not 2 <= n_folds <= n_groups:
        raise ValueError(f"n_folds must be between 2 and the number of patients ({n_groups}), got {n_folds}")
    classes, counts = np.unique(y, return_counts=True)
    if not bool((counts >= n_folds).any()):  # some test folds would hold a single item, or none
        per_class = ", ".join(f"{c}: {n}" for c, n in zip(classes.tolist(), counts.tolist(), strict=True))
        raise ValueError(
            f"no class has {n_folds} items to spread over {n_folds} folds (items per class {per_class})"
        )
    cv = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    out = []
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        pairs = list(cv.split(np.zeros(len(y)), y, g))
    for train, test in pairs:
        train, test = np.sort(train), np.sort(test)
        assert_disjoint(g[train], g[test])
        out.append((train, test))
    return out


def fold_of(labels: Sequence[int], groups: Sequence[str], n_folds: int, seed: int = 0) -> np.ndarray:
    """Return each item's test fold number under :func:`grouped_folds`."""
    fold = np.full(len(labels), -1, dtype=np.int64)
    for k, (_, test) in enumerate(grouped_folds(labels, groups, n_folds, seed)):
        fold[test] = k
    return fold


def assert_disjoint(
    train_groups: Sequence[str] | np.ndarray, test_groups: Sequence[str] | np.ndarray
) -> None:
    """Raise ``AssertionError`` if any group (patient) appears on both sides."""
    shared = set(np.asarray(train_groups).tolist()) & set(np.asarray(test_groups).tolist())
    if shared:
        raise AssertionError(f"patients on both sides of a split: {sorted(shared)}")
