"""Scoring a manifest's images with a model (what ``pathxai evaluate`` calls).

Images are resampled to the model card's mpp and cut into patches as the model was trained;
:func:`evaluate_from_manifest` returns an :class:`EvaluationResult` (patch-, image- and patient-level
metrics, with what was scored and how) and writes it as JSON.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pathxai.errors import ManifestError, ModelError
from pathxai.jsonio import write_json
from pathxai.manifest import labelled_records, read_manifest
from pathxai.model.datasets import patches_from_manifest
from pathxai.model.evaluate import evaluate_dataset
from pathxai.model.io import load_model_with_card

__all__ = ["EvaluationResult", "evaluate_from_manifest", "labelled_records"]


@dataclass(frozen=True)
class EvaluationResult:
    """Outcome of :func:`evaluate_from_manifest`; :meth:`to_dict` is the JSON written."""

    model: str
    arch: str
    weights_sha256: str
    manifest: str
    manifest_sha256: str
    split: str | None
    settings: dict[str, Any]
    patients_seen_in_training: list[str]
    n_images_without_patches: int
    metrics: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: the provenance keys, then the metrics' keys."""
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "metrics"}
        return {**fields, **self.metrics}


def evaluate_from_manifest(
    manifest: str | Path,
    model: str | Path,
    out: str | Path | None = None,
    data_root: str | Path | None = None,
    split: str | None = None,
    stride: int | None = None,
    min_tissue: float | None = None,
    native_mpp: float | None = None,
    threshold: float | None = None,
    progress: bool = True,
) -> EvaluationResult:
    """Score a manifest's images with a model and write the metrics JSON.

    Images are resampled to the model card's mpp and cut into ``card.input_size`` patches at
    ``stride`` (default: the training stride, else half the patch); an image smaller than one
    patch is scored whole. ``threshold`` defaults to the card's operating threshold (0.5 when the
    card gives none); the probabilities are the card's calibrated ones (its ``temperature``).

    Returns
    -------
    EvaluationResult
        What was scored with which settings, and the metrics: patch-level ``auc``, ``accuracy``,
        ``balanced_accuracy``, ``n``, ``confusion_matrix`` plus ``image_level``, ``per_patient``, ``images``.
    """
    m = read_manifest(manifest)
    root = Path(data_root) if data_root is not None else m.path.parent
    recs = labelled_records(m)
    if split is not None:
        recs = [r for r in recs if r.split == split]
        if not recs:
            raise ManifestError(f"no rows with split {split!r}", path=m.path)
    net, card = load_model_with_card(model)
    threshold = float(card.threshold) if threshold is None else threshold
    tp = card.training.get("patches", {}) if isinstance(card.training.get("patches"), dict) else {}
    stride = stride or int(tp.get("stride", max(1, card.input_size // 2)))
    min_tissue = float(tp.get("min_tissue", 0.0)) if min_tissue is None else min_tissue
    ds = patches_from_manifest(
        recs,
        root,
        card.mpp,
        card.input_size,
        stride,
        native_mpp=native_mpp,
        min_tissue=min_tissue,
        mean=card.mean,
        std=card.std,
        progress=progress,
    )
    if len(ds) == 0:
        raise ModelError(
            "no patches to score (all dropped as background?)", path=m.path, hint="try --min-tissue 0"
        )
    result = evaluate_dataset(net, ds, tumour_index=card.tumour_index, threshold=threshold, progress=progress)
    train_pat = set(card.training.get("train_patients", []) or [])
    overlap = sorted(train_pat & {r.group for r in recs})
    report = EvaluationResult(
        model=str(model),
        arch=card.arch,
        weights_sha256=card.weights_sha256,
        manifest=str(m.path),
        manifest_sha256=m.sha256,
        split=split,
        settings={
            "mpp": card.mpp,
            "size": card.input_size,
            "stride": stride,
            "min_tissue": min_tissue,
            "threshold": threshold,
            "temperature": card.temperature,
        },
        patients_seen_in_training=overlap,
        n_images_without_patches=len(recs) - len({p.image for p in ds.patches}),
        metrics=result,
    )
    if out is not None:
        write_json(out, report.to_dict())
    return report
