"""Calibrating a trained model on validation cases (what ``pathxai model calibrate`` calls).

The model scores the manifest's validation rows (never its test rows: pick them with ``split``),
a temperature is fitted to those patches (:func:`pathxai.model.calibration.fit_temperature`), an
operating threshold is chosen on the calibrated probabilities (balanced accuracy averaged over the
rows' sites) and both are written into the model's card, beside the expected calibration error
before and after. The weights file is not touched.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from pathxai.atomic import write_text_atomic
from pathxai.errors import ManifestError, ModelError
from pathxai.manifest import ManifestRecord, labelled_records, read_manifest
from pathxai.model.calibration import fit_calibration, probs_at_temperature
from pathxai.model.card import CARD_FILENAME, ModelCard
from pathxai.model.datasets import PatchDataset, patches_from_manifest
from pathxai.model.evaluate import predict_proba
from pathxai.model.io import load_model_with_card

__all__ = ["calibrate_model"]


def _patches(recs: list[ManifestRecord], root: Path, card: ModelCard, progress: bool) -> PatchDataset:
    """The rows' patches as the model was trained on them (its card's stride and tissue floor)."""
    tp = card.training.get("patches", {}) if isinstance(card.training.get("patches"), dict) else {}
    return patches_from_manifest(
        recs,
        root,
        card.mpp,
        card.input_size,
        int(tp.get("stride", max(1, card.input_size // 2))),
        min_tissue=float(tp.get("min_tissue", 0.0)),
        mean=card.mean,
        std=card.std,
        progress=progress,
    )


def calibrate_model(
    model_dir: str | Path,
    manifest: str | Path,
    split: str,
    data_root: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Fit the temperature and operating threshold of ``model_dir`` on ``split`` rows; update its card.

    Returns
    -------
    dict
        What was fitted and measured (also stored as the card's ``extra["calibration"]``):
        ``temperature``, ``threshold``, ``n_patches``, ``patients``, ``ece_before``/``ece_after``,
        ``nll_before``/``nll_after``.

    Raises
    ------
    ModelError
        If ``model_dir`` is not a model directory.
    ManifestError
        If the split has no rows, or lacks a class.
    """
    folder = Path(model_dir)
    if not (folder / CARD_FILENAME).is_file():
        raise ModelError(
            "calibrate needs a model directory", path=folder, hint="pass the --out of pathxai train"
        )
    m = read_manifest(manifest)
    root = Path(data_root) if data_root is not None else m.path.parent
    recs = [r for r in labelled_records(m) if r.split == split]
    if not recs:
        raise ManifestError(f"no rows with split {split!r}", path=m.path, hint="calibrate on validation rows")
    net, card = load_model_with_card(folder)
    seen = sorted(set(card.training.get("train_patients", []) or []) & {r.group for r in recs})
    if seen:
        raise ManifestError(f"validation patients {seen} were in the model's training set", path=m.path)
    ds = _patches(recs, root, card, progress)
    probs = predict_proba(net, ds, tumour_index=card.tumour_index, progress=progress)
    raw = probs_at_temperature(probs, 1.0 / float(card.temperature))
    try:
        fitted = fit_calibration(ds.patch_labels, raw, [ds.sites[i] for i in ds.patch_images])
    except ValueError as exc:
        raise ManifestError(f"cannot calibrate on split {split!r}: {exc}", path=m.path) from exc
    report = {
        "split": split,
        "manifest": str(m.path),
        "manifest_sha256": m.sha256,
        "patients": sorted({r.group for r in recs}),
        "n_patches": len(ds),
        **fitted,
    }
    new = dataclasses.replace(
        card,
        temperature=float(fitted["temperature"]),
        threshold=float(fitted["threshold"]),
        extra={**card.extra, "calibration": report},
    )
    write_text_atomic(folder / CARD_FILENAME, new.to_json())
    return report
