"""Scoring a patch dataset and computing patch-, image- and patient-level metrics."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, roc_auc_score
from torch import nn
from tqdm.auto import tqdm

from pathxai.model.datasets import PatchDataset

__all__ = [
    "binary_metrics",
    "evaluate_dataset",
    "metrics_from_predictions",
    "predict_proba",
    "summarize_folds",
]


@torch.no_grad()
def predict_proba(
    model: nn.Module,
    dataset: PatchDataset,
    tumour_index: int = 1,
    batch_size: int = 128,
    progress: bool = True,
) -> np.ndarray:
    """Return the tumour probability (softmax) of every patch of ``dataset`` (no augmentation).

    Consecutive patches of the same size are batched together.
    """
    was_training = model.training
    model.eval()
    augment, dataset.augment = dataset.augment, None
    probs = np.zeros(len(dataset), dtype=np.float64)
    try:
        order = list(range(len(dataset)))
        bar = tqdm(total=len(order), desc="scoring patches", unit="patch", disable=not progress, leave=False)
        start = 0
        while start < len(order):
            size = dataset.patches[start].size
            stop = start
            while stop < len(order) and stop - start < batch_size and dataset.patches[stop].size == size:
                stop += 1
            x = torch.stack([dataset[i][0] for i in range(start, stop)])
            p = torch.softmax(model(x).float(), dim=1)[:, tumour_index]
            probs[start:stop] = p.numpy()
            bar.update(stop - start)
            start = stop
        bar.close()
    finally:
        dataset.augment = augment
        model.train(was_training)
    return probs


def _num(x: float | None) -> float | None:
    if x is None or not math.isfinite(float(x)):
        return None
    return float(x)


def binary_metrics(
    labels: Sequence[int] | np.ndarray, probs: Sequence[float] | np.ndarray, threshold: float = 0.5
) -> dict[str, Any]:
    """AUC, accuracy, balanced accuracy, confusion matrix and counts for binary labels.

    ``auc`` (and ``balanced_accuracy``) is ``None`` when only one class is present.
    """
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    pred = (p >= threshold).astype(np.int64)
    both = len(np.unique(y)) == 2
    cm = confusion_matrix(y, pred, labels=[0, 1]) if len(y) else np.zeros((2, 2), dtype=np.int64)
    tn, fp, fn, tp = (int(v) for v in cm.ravel())
    return {
        "n": len(y),
        "n_tumour": int(y.sum()),
        "auc": _num(roc_auc_score(y, p)) if both else None,
        "accuracy": _num(accuracy_score(y, pred)) if len(y) else None,
        "balanced_accuracy": _num(balanced_accuracy_score(y, pred)) if both else None,
        "sensitivity": _num(tp / (tp + fn)) if tp + fn else None,
        "specificity": _num(tn / (tn + fp)) if tn + fp else None,
        "confusion_matrix": {
            "labels": ["non-tumour", "tumour"],
            "rows_true_cols_pred": cm.astype(int).tolist(),
        },
        "threshold": threshold,
    }


def metrics_from_predictions(
    probs: np.ndarray,
    patch_images: np.ndarray,
    image_labels: Sequence[int] | np.ndarray,
    image_ids: Sequence[str],
    patients: Sequence[str],
    threshold: float = 0.5,
    sites: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Patch-level, image-level (mean patch probability), per-patient and per-site metrics.

    Returns
    -------
    dict
        Patch-level keys at the top (``auc``, ``accuracy``, ``balanced_accuracy``, ``n``,
        ``confusion_matrix``, ``sensitivity``, ``specificity``, ...), plus ``image_level`` (same keys),
        ``per_patient``, ``images`` and, when ``sites`` name two or more sites, ``per_site``
        (``{site: {"patch": ..., "image": ...}}``, each at ``threshold``).
    """
    labels_img = np.asarray(image_labels, dtype=np.int64)
    patch_labels = labels_img[patch_images]
    out = binary_metrics(patch_labels, probs, threshold)
    img_rows: list[dict[str, Any]] = []
    img_probs, img_y = [], []
    for i, iid in enumerate(image_ids):
        sel = patch_images == i
        if not sel.any():
            continue
        prob = float(probs[sel].mean())
        img_probs.append(prob)
        img_y.append(int(labels_img[i]))
        img_rows.append(
            {
                "id": iid,
                "patient": patients[i],
                "tumor": int(labels_img[i]),
                "prob": prob,
                "n_patches": int(sel.sum()),
            }
        )
    out["image_level"] = binary_metrics(img_y, img_probs, threshold)
    per_patient = []
    for pat in sorted(set(patients)):
        rows = [r for r in img_rows if r["patient"] == pat]
        if not rows:
            continue
        idx = [i for i, p in enumerate(patients) if p == pat]
        psel = np.isin(patch_images, idx)
        y_pat, p_pat = patch_labels[psel], probs[psel]
        per_patient.append(
            {
                "patient": pat,
                "n_images": len(rows),
                "n_tumour_images": sum(r["tumor"] for r in rows),
                "n_patches": int(psel.sum()),
                "mean_prob": float(p_pat.mean()),
                "patch_accuracy": float(((p_pat >= threshold).astype(int) == y_pat).mean()),
                "image_accuracy": float(
                    np.mean([(r["prob"] >= threshold) == bool(r["tumor"]) for r in rows])
                ),
                "patch_auc": _num(roc_auc_score(y_pat, p_pat)) if len(np.unique(y_pat)) == 2 else None,
            }
        )
    out["per_patient"] = per_patient
    out["images"] = img_rows
    if sites is not None and len(set(sites)) > 1:
        for row, i in zip(
            img_rows, [i for i in range(len(image_ids)) if (patch_images == i).any()], strict=True
        ):
            row["site"] = sites[i]
        out["per_site"] = _per_site(probs, patch_images, labels_img, img_rows, list(sites), threshold)
    return out


def _per_site(
    probs: np.ndarray,
    patch_images: np.ndarray,
    labels_img: np.ndarray,
    img_rows: list[dict[str, Any]],
    sites: list[str],
    threshold: float,
) -> dict[str, Any]:
    """Patch- and image-level :func:`binary_metrics` of every site."""
    out: dict[str, Any] = {}
    patch_sites = np.asarray(sites, dtype=object)[patch_images]
    for site in sorted(set(sites)):
        sel = patch_sites == site
        rows = [r for r in img_rows if r["site"] == site]
        out[site] = {
            "patch": binary_metrics(labels_img[patch_images[sel]], probs[sel], threshold),
            "image": binary_metrics([r["tumor"] for r in rows], [r["prob"] for r in rows], threshold),
        }
    return out


def evaluate_dataset(
    model: nn.Module,
    dataset: PatchDataset,
    tumour_index: int = 1,
    threshold: float = 0.5,
    progress: bool = True,
) -> dict[str, Any]:
    """Score ``dataset`` with ``model`` and return :func:`metrics_from_predictions`."""
    probs = predict_proba(model, dataset, tumour_index=tumour_index, progress=progress)
    return metrics_from_predictions(
        probs,
        dataset.patch_images,
        dataset.labels,
        dataset.image_ids,
        dataset.patients,
        threshold,
        sites=dataset.sites,
    )


def summarize_folds(evals: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample sd over folds of patch- and image-level AUC, accuracy and balanced accuracy."""
    out: dict[str, Any] = {}
    for level, get in (("patch", lambda e: e), ("image", lambda e: e["image_level"])):
        for key in ("auc", "accuracy", "balanced_accuracy"):
            vals = [get(e)[key] for e in evals if get(e)[key] is not None]
            out[f"{level}_{key}"] = {
                "mean": statistics.fmean(vals) if vals else None,
                "sd": statistics.stdev(vals) if len(vals) > 1 else None,
                "folds": [get(e)[key] for e in evals],
            }
    return out


def card_metrics(evaluation: dict[str, Any]) -> dict[str, Any]:
    """The held-out numbers the model card keeps (patch and image level, per patient)."""
    patch_keys = (
        "n",
        "auc",
        "accuracy",
        "balanced_accuracy",
        "sensitivity",
        "specificity",
        "confusion_matrix",
    )
    image_keys = ("n", "auc", "accuracy", "balanced_accuracy", "confusion_matrix")
    return {
        "test": {k: evaluation[k] for k in patch_keys},
        "test_image_level": {k: evaluation["image_level"][k] for k in image_keys},
        "test_per_patient": evaluation["per_patient"],
    }
