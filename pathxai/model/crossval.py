"""Which rows train and which test, by patient: the manifest's split, one of K folds, or all K folds.

Each returns what :func:`~pathxai.model.recipe.train_one` gave (for all K folds: the summary also
written to ``out/cv.json``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pathxai.errors import ManifestError
from pathxai.jsonio import write_json
from pathxai.manifest import Manifest, ManifestRecord
from pathxai.model.evaluate import summarize_folds
from pathxai.model.recipe import TrainRun, train_one
from pathxai.model.splits import assert_disjoint, grouped_folds

__all__ = ["by_split", "cross_validate", "manifest_folds", "one_fold"]


def manifest_folds(
    m: Manifest, labels: list[int], groups: list[str], k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`grouped_folds`, with a cohort too small for ``k`` folds reported as a manifest problem."""
    try:
        return grouped_folds(labels, groups, k, seed)
    except ValueError as exc:
        raise ManifestError(
            f"cannot make {k} patient-grouped folds: {exc}",
            path=m.path,
            hint="use fewer folds, or a manifest with more patients and images of each class",
        ) from exc


def cross_validate(run: TrainRun, recs: list[ManifestRecord], out: Path, k: int) -> dict[str, Any]:
    """Train on each of ``k`` patient-grouped, label-stratified folds in turn, into ``out/fold_<i>/``.

    Returns
    -------
    dict
        The summary (mean ± sd over folds, each fold's held-out scores), also written to ``out/cv.json``.
    """
    m, seed = run.manifest, run.config.seed
    splits = manifest_folds(m, [int(r.tumour or 0) for r in recs], [r.group for r in recs], k, seed)
    evals = []
    for i, (tr, te) in enumerate(
        tqdm(splits, desc="cross-validation", unit="fold", disable=not run.progress)
    ):
        info = {"mode": "cv", "folds": k, "fold": i, "seed": seed}
        evals.append(train_one(run, [recs[j] for j in tr], [recs[j] for j in te], out / f"fold_{i}", info))
    per_fold = [
        {
            "fold": i,
            "test_patients": sorted({recs[j].group for j in te}),
            "patch": {key: e[key] for key in ("n", "auc", "accuracy", "balanced_accuracy")},
            "image": {key: e["image_level"][key] for key in ("n", "auc", "accuracy", "balanced_accuracy")},
        }
        for i, ((_, te), e) in enumerate(zip(splits, evals, strict=True))
    ]
    summary = {
        "mode": "cv",
        "folds": k,
        "manifest": str(m.path),
        "manifest_sha256": m.sha256,
        "command": run.command,
        "summary": summarize_folds(evals),
        "per_fold": per_fold,
    }
    write_json(out / "cv.json", summary)
    return summary


def one_fold(run: TrainRun, recs: list[ManifestRecord], out: Path, folds: int, fold: int) -> dict[str, Any]:
    """Train on all folds but ``fold`` of ``folds`` and evaluate on that one; return the evaluation."""
    if not 0 <= fold < folds:
        raise ValueError(f"--fold must be in 0..{folds - 1}, got {fold}")
    seed = run.config.seed
    labels, groups = [int(r.tumour or 0) for r in recs], [r.group for r in recs]
    tr, te = manifest_folds(run.manifest, labels, groups, folds, seed)[fold]
    info = {"mode": "fold", "folds": folds, "fold": fold, "seed": seed}
    return train_one(run, [recs[i] for i in tr], [recs[i] for i in te], out, info)


def by_split(
    run: TrainRun, recs: list[ManifestRecord], out: Path, train_split: str, test_split: str
) -> dict[str, Any]:
    """Train on the ``train_split`` rows (all rows without a split column) and evaluate on ``test_split``.

    Raises
    ------
    ManifestError
        If no row is in ``train_split`` or the split is not patient-disjoint.
    """
    m = run.manifest
    has_split = any(r.split for r in recs)
    train = [r for r in recs if r.split == train_split] if has_split else recs
    test = [r for r in recs if r.split == test_split] if has_split else []
    if not train:
        raise ManifestError(f"no rows with split {train_split!r}", path=m.path, hint="check --train-split")
    try:
        assert_disjoint([r.group for r in train], [r.group for r in test])
    except AssertionError as exc:
        raise ManifestError(f"the manifest's split is not patient-disjoint: {exc}", path=m.path) from exc
    info = {"mode": "split", "train_split": train_split, "test_split": test_split if test else None}
    return train_one(run, train, test, out, info)
