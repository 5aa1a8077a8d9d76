"""``audit``: run every registered bias check on a cohort and write the report (what ``pathxai audit`` calls).

This module only loads the cohort (:func:`pathxai.audit.load.build_items`), runs the checks of the
registry (:mod:`pathxai.audit.registry`) once each, timing each, and writes ``report.json``,
``report.html`` and ``findings.geojson``. The checks themselves live in :mod:`pathxai.audit`.
Slide cohorts without ``--heatmaps`` skip the model-dependent checks, with a note.
"""

from __future__ import annotations

import dataclasses
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from pathxai import __version__
from pathxai.audit import artifacts, spray, stain
from pathxai.audit.cohort import AuditItem
from pathxai.audit.figures import make_figures, write_thumbnails
from pathxai.audit.findings import AuditReport, BiasFinding, Thresholds, sort_findings
from pathxai.audit.grade import assign_ids
from pathxai.audit.heat import image_predictor
from pathxai.audit.load import build_items, is_glas
from pathxai.audit.registry import CheckContext, check_names, get_check
from pathxai.audit.report import write_report
from pathxai.audit.tables import report_tables
from pathxai.errors import AuditError
from pathxai.manifest import Manifest, drop_repeats, read_manifest
from pathxai.model.card import ModelCard
from pathxai.model.datasets import read_rgb
from pathxai.model.io import load_model_with_card, sha256_bytes, state_dict_bytes
from pathxai.outputs import output_dir
from pathxai.store import HeatmapStore
from pathxai.store.heatmap import final_path
from pathxai.store.trust import read_trust, trust_line

__all__ = ["audit", "build_items"]  # build_items re-exported from pathxai.audit.load

GLAS_MASK_NOTE = (
    "GlaS annotation masks outline glands (benign and malignant alike); they are not tumour masks. "
    "Relevance inside them is evidence that the model looks at glandular tissue structure, not at tumour."
)

ModelSpec = str | Path | tuple[torch.nn.Module, ModelCard] | None


def _load_model(model: ModelSpec) -> tuple[torch.nn.Module | None, ModelCard | None, str]:
    if model is None:
        return None, None, ""
    if isinstance(model, tuple):
        net, card = model
        net.eval()
        return net, card, sha256_bytes(state_dict_bytes(net))
    net, card = load_model_with_card(model)
    return net, card, card.weights_sha256


def _seen_in_training(items: list[AuditItem], card: ModelCard | None) -> set[str]:
    if card is None:
        return set()
    pats = set(card.training.get("train_patients", []) or [])
    return {it.id for it in items if (it.meta.get("patient") or it.id) in pats}


def _notes(
    kind: str, items: list[AuditItem], man: Manifest, heat_dir: Path | None, seen: set[str]
) -> list[str]:
    notes: list[str] = []
    if kind == "image" and any(it.mask is not None for it in items) and is_glas(man):
        notes.append(GLAS_MASK_NOTE)
    if kind == "slide" and heat_dir is None:
        notes.append(
            "No --heatmaps given for this slide cohort: relevance-based checks (relevance on artifacts, "
            "labels, per-group performance, SpRAy) were skipped. Run 'pathxai heatmap' first."
        )
    if kind == "slide" and heat_dir is not None:
        notes.extend(_trust_notes(items, heat_dir))
    if seen:
        notes.append(
            f"{len(seen)} items belong to patients the model was trained on; per-group performance "
            "excludes them (other checks use all items)."
        )
    return notes


def _trust_notes(items: list[AuditItem], heat_dir: Path) -> list[str]:
    """One line per slide whose heatmap store has a trust summary (``pathxai heatmap``)."""
    notes = []
    for it in items:
        path = final_path(heat_dir, it.id)
        if not path.is_file():
            continue
        with HeatmapStore.open(path) as st:
            attrs = st.attrs
        trust = read_trust(attrs)
        if trust is not None:
            notes.append(f"Heatmap trust of {it.id} ({attrs.get('method')}): {trust_line(trust)}.")
    return notes


def _run_checks(ctx: CheckContext, progress: bool) -> tuple[list[BiasFinding], dict[str, float]]:
    """Every registered check once, each timed (shared statistics count for the first check that needs them)."""
    findings: list[BiasFinding] = []
    timings: dict[str, float] = {}
    names = check_names()
    for name in tqdm(names, desc="audit: checks", unit="check", disable=not progress):
        t = time.perf_counter()
        findings += get_check(name).run(ctx) if ctx.items else []
        timings[name] = time.perf_counter() - t
    return findings, timings


def _model_info(model: ModelSpec, card: ModelCard | None, model_sha: str) -> dict[str, Any]:
    if card is None:
        return {}
    return {
        "source": str(model) if not isinstance(model, tuple) else "in-memory",
        "arch": card.arch,
        "weights_sha256": model_sha,
        "mpp": card.mpp,
        "input_size": card.input_size,
        "classes": list(card.classes),
        "tumour_index": card.tumour_index,
        "method": "lrp",
        "train_patients": list(card.training.get("train_patients", []) or []),
    }


def _cohort_info(man: Manifest, root: Path, kind: str, items: list[AuditItem]) -> dict[str, Any]:
    return {
        "manifest": str(man.path),
        "manifest_sha256": man.sha256,
        "data_root": str(root),
        "kind": kind,
        "n_items": len(items),
        "n_with_heatmaps": sum(it.heat is not None for it in items),
        "columns": list(man.columns),
        "analysis_mpp": float(np.median([it.mpp for it in items])) if items else None,
    }


def _evidence(
    ctx: CheckContext, findings: list[BiasFinding], out_dir: Path
) -> tuple[list[BiasFinding], dict[str, str]]:
    """Sort the findings, give them ids and thumbnails; draw the figures."""
    items = list(ctx.items)
    findings = list(assign_ids(sort_findings(findings)))
    thumbs = write_thumbnails(items, findings, out_dir, artifacts.masks_of(ctx))
    findings = [
        dataclasses.replace(f, thumbnails=tuple(thumbs.get(i, "") for i in f.items if i in thumbs)[:12])
        for f in findings
    ]
    spray_res = spray.result_of(ctx) if any(it.heat is not None for it in items) else None
    sens = ctx.tables.get("stain_sensitivity", {})
    figures = make_figures(
        items, findings, stain.stats_of(ctx), artifacts.stats_of(ctx), spray_res, out_dir, sens
    )
    return findings, figures


def _context(
    items: list[AuditItem],
    kind: str,
    man: Manifest,
    heat_dir: Path | None,
    th: Thresholds,
    net: torch.nn.Module | None,
    card: ModelCard | None,
    reference: str | Path | None,
) -> tuple[CheckContext, list[str]]:
    """What the checks see, and the notes the report states."""
    seen = _seen_in_training(items, card)
    notes = _notes(kind, items, man, heat_dir, seen)
    ctx = CheckContext(
        items,
        th,
        seen_in_training=seen,
        mask_kind="gland outlines (not tumour)" if GLAS_MASK_NOTE in notes else "annotations",
        predict=image_predictor(net, card)
        if net is not None and card is not None and kind == "image"
        else None,
        reference=read_rgb(reference) if reference is not None else None,
    )
    return ctx, notes


def _inputs(
    manifest: str | Path,
    data_root: str | Path | None,
    heatmaps: str | Path | None,
    config: Any,
    slide_mpp: float | None = None,
) -> tuple[Manifest, Path, Path | None, Thresholds, list[str]]:
    th = (
        config if isinstance(config, Thresholds) else Thresholds.from_json(config) if config else Thresholds()
    )
    man = read_manifest(manifest).with_default_mpp(slide_mpp)
    man, repeats = drop_repeats(man)  # a file named twice is audited once (conflicting labels: refused)
    root = Path(data_root) if data_root is not None else man.path.parent
    if not root.is_dir():
        raise AuditError(f"data root {root} is not a directory", hint="pass --data-root DIR")
    heat_dir = Path(heatmaps) if heatmaps is not None else None
    return man, root, heat_dir, th, _repeats_note(repeats)


def _repeats_note(repeats: list[tuple[int, int]]) -> list[str]:
    """The note that rows naming a file already listed were dropped (none when there were none)."""
    if not repeats:
        return []
    shown = ", ".join(f"line {line} = line {first}" for line, first in repeats[:5])
    more = f" and {len(repeats) - 5} more" if len(repeats) > 5 else ""
    return [
        f"{len(repeats)} manifest rows name a file already listed (same path or sha256: {shown}{more}); "
        "each file was audited once, as its first row."
    ]


def audit(
    manifest: str | Path,
    data_root: str | Path | None = None,
    model: ModelSpec = "default",
    heatmaps: str | Path | None = None,
    out: str | Path = "audit",
    config: str | Path | Thresholds | None = None,
    reference: str | Path | None = None,
    progress: bool = True,
    slide_mpp: float | None = None,
) -> AuditReport:
    """Audit a cohort for dataset-wide, class-correlated and sampling biases; write the report.

    Parameters
    ----------
    manifest
        CSV manifest of images or slides (``path``, ``label``/``tumor``; ``patient``, ``site``,
        ``scanner``, ``split``, ``mpp``, ``mask_path``, ``grade`` are used when present).
    data_root
        Directory the manifest paths are relative to (default: the manifest's folder).
    model
        ``"default"``, a model directory, ``(module, card)``, or ``None`` (only model-free checks).
    heatmaps
        Directory of ``<slide_id>.h5`` heatmap stores (slide cohorts).
    out
        Output directory: ``report.json``, ``report.html``, ``findings.geojson``, ``figures/``,
        ``thumbs/``, ``cache/``.
    config
        Thresholds JSON file (or a :class:`Thresholds`); defaults otherwise.
    reference
        Reference H&E image for the stain-normalisation sensitivity test (optional).
    progress
        Show progress bars.
    slide_mpp
        Level-0 / native µm/px of the images or slides whose manifest row has no ``mpp``.

    Returns
    -------
    AuditReport

    Raises
    ------
    AuditError, ManifestError, ModelError, StoreError
        For unusable inputs, with what to do.
    """
    t0 = time.perf_counter()
    man, root, heat_dir, th, input_notes = _inputs(manifest, data_root, heatmaps, config, slide_mpp)
    out_dir = output_dir(out)
    net, card, model_sha = _load_model(model)
    if heat_dir is not None and not heat_dir.is_dir():
        raise AuditError(
            f"heatmap directory {heat_dir} not found", hint="pass the --out of 'pathxai heatmap'"
        )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    items, kind = build_items(man, root, net, card, model_sha, heat_dir, out_dir / "cache", progress)
    timings = {"items": time.perf_counter() - t0}
    ctx, notes = _context(items, kind, man, heat_dir, th, net, card, reference)
    findings, check_times = _run_checks(ctx, progress)
    timings.update(check_times)
    t = time.perf_counter()
    findings, figures = _evidence(ctx, findings, out_dir)
    timings["figures"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - t0
    report = AuditReport(
        findings=tuple(findings),
        cohort=_cohort_info(man, root, kind, items),
        model=_model_info(model, card, model_sha),
        thresholds=th,
        tables=report_tables(ctx),
        figures=figures,
        notes=tuple(input_notes + notes),
        timings=timings,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
    )
    write_report(report, out_dir)
    return report
