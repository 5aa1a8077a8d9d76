"""Pruning a classifier against a labelled patch manifest (what ``pathxai prune``/``prune-sweep`` call).

The data (held-out patients, reference set, fine-tuning patches) is :mod:`pathxai.prune.data`; one
run is :mod:`pathxai.prune.runner`; the pruned model is saved by :mod:`pathxai.prune.save`.

:func:`prune_from_manifest` writes a model directory (``model.safetensors`` + ``model_card.json``
whose ``channel_plan`` rebuilds the smaller network) and ``pruning.json`` beside it (plan, metrics
before/after, latency, drift). :func:`prune_sweep` writes ``sweep.csv`` (one row per criterion, ratio,
seed and fine-tuning setting; resumable) and ``sweep.png``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pathxai.errors import ExplainError, ModelError
from pathxai.explain import Explainer
from pathxai.explain.filters import check_filter_lrp
from pathxai.model.io import load_model_with_card
from pathxai.prune import CRITERIA, check_ratio, compose_plans
from pathxai.prune.data import load_prune_data
from pathxai.prune.engine import feasible_ratios
from pathxai.prune.heldout import measure_drift
from pathxai.prune.pxp import PXP_RATES, PxpArea, pxp_areas, write_pxp_csv
from pathxai.prune.report import ManifestStudy, PruneReport, finite, summary
from pathxai.prune.runner import measured_metrics, prune_once
from pathxai.prune.save import pruned_card, save_pruned_model
from pathxai.prune.settings import PruneSettings
from pathxai.prune.sweep import SweepTable, fill_table, sweep_jobs
from pathxai.prune.sweep_plot import plot_sweep

__all__ = [
    "PruneResult",
    "PruneSettings",
    "SweepResult",
    "fit_patterns_from_manifest",
    "prune_from_manifest",
    "prune_sweep",
]


def _unprojected(model_path: str | Path) -> tuple[torch.nn.Module, Any]:
    """Load a model to prune; one with a P-ClArC projection is refused (pruning would cut its direction)."""
    model, card = load_model_with_card(model_path)
    if card.projection:
        raise ModelError(
            f"the model holds a concept projection on {card.projection.get('layer')!r} (pathxai mitigate "
            "--method clarc-p); pruning would cut channels the projection spans",
            path=Path(model_path),
            hint="prune the original model, then mitigate the pruned one",
        )
    return model, card


def _check_lrp(
    model: torch.nn.Module, criteria: Sequence[str], drift_patches: int, model_path: str | Path
) -> None:
    """Refuse a run that needs LRP on a model LRP has no rules for, before any data is read.

    The ``lrp`` criterion and the heatmap drift need it; an imported ConvNeXt (LayerNorm) has none yet, and
    a ViT has AttnLRP for its heatmaps but no per-neuron relevance
    for the criterion (:func:`pathxai.explain.filters.check_filter_lrp`, which the criterion itself also
    enforces). The error names what needs LRP and the layers it lacks rules for.
    """
    needs = [f"the {c!r} criterion" for c in dict.fromkeys(criteria) if c == "lrp"]
    if drift_patches > 0:
        needs.append("the heatmap drift (--drift-patches)")
    if not needs:
        return
    if "lrp" in criteria:
        try:
            check_filter_lrp(model)
        except ExplainError as exc:
            raise ExplainError(
                f"the 'lrp' criterion cannot score this model: {exc.message}",
                path=Path(model_path),
                hint="prune it with --criterion weight, gradient, taylor, ig or random",
            ) from exc
    try:
        with Explainer(model, "lrp"):
            pass
    except ExplainError as exc:
        raise ExplainError(
            f"{' and '.join(needs)} need LRP, which this model cannot have: {exc.message}",
            path=Path(model_path),
            hint="prune it with --criterion weight, gradient, taylor, ig or random and --drift-patches 0",
        ) from exc


@dataclass(frozen=True)
class PruneResult:
    """A pruned model directory and the content of its ``pruning.json``."""

    out: Path
    report: PruneReport


@dataclass(frozen=True)
class SweepResult:
    """The sweep's CSV and plot, and how many rows this call added."""

    csv: Path
    plot: Path
    new_rows: int
    pxp_csv: Path | None = None
    pxp_areas: tuple[PxpArea, ...] = ()


def _check_criterion(criterion: str) -> None:
    if criterion not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {criterion!r}; choose one of {sorted(CRITERIA)}")


def _sweep_ratios(
    criteria: Sequence[str],
    seeds: Sequence[int],
    ratios: Sequence[float],
    finetune_ratios: Sequence[float] | None,
) -> tuple[list[float], list[float]]:
    """Check a sweep's criteria and seeds; return its ratios and fine-tuning ratios (default: the same)."""
    for c in criteria:
        _check_criterion(c)
    checked = [check_ratio(r) for r in ratios]
    ft_ratios = [check_ratio(r) for r in (finetune_ratios if finetune_ratios is not None else checked)]
    if not seeds:
        raise ValueError("need at least one seed")
    return checked, ft_ratios


def _history_entry(report: PruneReport, study: ManifestStudy) -> dict[str, Any]:
    """The run as one entry of the pruned card's ``training["pruning_history"]``."""
    return {
        "summary": report.summary,
        "seed": study.seed,
        "source_weights_sha256": report.source_weights_sha256,
        "command": report.command,
        "criterion": report.plan.criterion,
        "ratio": report.plan.ratio,
        "settings": study.settings.to_dict(),
    }


def prune_from_manifest(
    model_path: str | Path,
    manifest_path: str | Path,
    data_root: str | Path,
    criterion: str,
    ratio: float,
    out_dir: str | Path,
    settings: PruneSettings | None = None,
    *,
    seed: int = 0,
    command: str = "",
    progress: bool = True,
) -> PruneResult:
    """Prune a saved model and write the smaller model plus ``pruning.json`` to ``out_dir``.

    Parameters
    ----------
    model_path
        ``"default"`` or a model directory (it may itself be pruned).
    manifest_path, data_root
        Labelled patch manifest and the folder its paths are relative to.
    criterion
        A key of :data:`pathxai.prune.CRITERIA`.
    ratio
        Fraction of channels removed, in ``[0, 1)``.
    out_dir
        Output model directory (loadable by :func:`pathxai.model.load_model`).
    settings
        Run options.
    seed
        Seed of the reference draw, the random criterion and fine-tuning.
    command
        The command line, recorded in the card.
    progress
        Show progress bars.

    Returns
    -------
    PruneResult
        The model directory and its report (the content of ``pruning.json``).
    """
    settings = settings or PruneSettings()
    ratio = check_ratio(ratio)
    _check_criterion(criterion)
    model, card = _unprojected(model_path)
    _check_lrp(model, [criterion], settings.drift_patches, model_path)
    data = load_prune_data(
        card, manifest_path, data_root, heldout_stride=settings.heldout_stride, progress=progress
    )
    t0 = time.perf_counter()
    plan, pruned = prune_once(model, data, criterion, ratio, settings, seed=seed, progress=progress)
    prune_seconds = time.perf_counter() - t0
    before = measured_metrics(model, plan.metrics_before, data, settings, progress)
    after = measured_metrics(pruned, plan.metrics_after, data, settings, progress)
    drift = measure_drift(model, pruned, data, settings.drift_patches)
    plan = dataclasses.replace(plan, metrics_before=finite(before), metrics_after=finite(after))
    study = ManifestStudy(
        manifest=str(manifest_path),
        heldout_patients=data.heldout_patients,
        reference_patients=data.train_patients,
        settings=settings,
        seed=seed,
        channel_plan_vs_base=compose_plans(card.channel_plan, plan.channels),
    )
    report = PruneReport(
        plan=plan,
        drift=drift,
        summary=summary(before, after),
        source_model=str(model_path),
        source_weights_sha256=card.weights_sha256,
        prune_seconds=prune_seconds,
        study=study,
        command=command,
    )
    new_card = pruned_card(
        card, plan, command=command, history=_history_entry(report, study), heldout_metrics=finite(after)
    )
    return PruneResult(out=save_pruned_model(pruned, new_card, report, out_dir), report=report)


def prune_sweep(
    model_path: str | Path,
    manifest_path: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    *,
    criteria: Sequence[str] = tuple(CRITERIA),
    ratios: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    seeds: Sequence[int] = (0, 1, 2),
    finetune_epochs: float = 0.0,
    finetune_ratios: Sequence[float] | None = None,
    settings: PruneSettings | None = None,
    progress: bool = True,
    pxp: bool = False,
) -> SweepResult:
    """AUC/accuracy versus fraction of channels pruned for several criteria, seeds and fine-tuning.

    One-shot pruning from the same model for every (criterion, seed, ratio); with
    ``finetune_epochs > 0`` the ``finetune_ratios`` are repeated with fine-tuning. Rows already in
    ``out_dir/sweep.csv`` are skipped (the sweep resumes); the plot ``sweep.png`` is redrawn at the end.

    With ``pxp`` the PxP protocol (:mod:`pathxai.prune.pxp`) replaces ``ratios``: rates 5-95 % in 5 %
    steps (up to the largest that leaves every layer a channel), no fine-tuning, no heatmap drift; ``out_dir/pxp.csv`` holds the area under the
    AUC-vs-rate curve per criterion and seed, ``out_dir/pxp.png`` the curves.

    Returns
    -------
    SweepResult
        The CSV file, the plot and the number of rows added.
    """
    settings = settings or PruneSettings()
    if pxp:
        finetune_epochs = 0.0
        settings = dataclasses.replace(settings, drift_patches=0, finetune_epochs=0.0)
    ratios, ft_ratios = _sweep_ratios(criteria, seeds, ratios, finetune_ratios)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = SweepTable(out / "sweep.csv")
    model, card = _unprojected(model_path)
    _check_lrp(model, criteria, settings.drift_patches, model_path)
    if pxp:  # a model too narrow for 95 % (a layer would lose every channel) stops earlier
        ratios = feasible_ratios(model, card.input_size, PXP_RATES[1:])
    data = load_prune_data(
        card, manifest_path, data_root, heldout_stride=settings.heldout_stride, progress=progress
    )
    jobs = sweep_jobs(criteria, seeds, ratios, finetune_epochs, ft_ratios, variant=settings.variant())
    new_rows = fill_table(table, model, data, jobs, settings, drift_seed=seeds[0], progress=progress)
    plot = plot_sweep(table.path, out / ("pxp.png" if pxp else "sweep.png"))
    if not pxp:
        return SweepResult(csv=table.path, plot=plot, new_rows=new_rows)
    areas = tuple(pxp_areas(table.rows, rates=(0.0, *ratios), variant=settings.variant()))
    return SweepResult(
        csv=table.path,
        plot=plot,
        new_rows=new_rows,
        pxp_csv=write_pxp_csv(out / "pxp.csv", areas),
        pxp_areas=areas,
    )


def fit_patterns_from_manifest(
    model_path: str | Path,
    manifest_path: str | Path,
    data_root: str | Path,
    out: str | Path | None = None,
    *,
    reference_per_class: int = 10,
    tiles_per_image: int = 8,
    seed: int = 0,
    progress: bool = True,
) -> Path:
    """Fit PatternAttribution patterns once on reference tiles and store them beside the model.

    The tiles are ``tiles_per_image`` patches of ``reference_per_class`` training images per class
    (never the held-out patients), inputs only. The file is ``out`` or the model directory's
    ``patterns.safetensors``; explain with ``Explainer(model, "pattern_attribution", patterns=PATH)``.

    Returns
    -------
    Path
        The patterns file.
    """
    from pathxai.explain.patterns import PATTERNS_FILE, fit_model_patterns, save_patterns
    from pathxai.model.io import resolve_model_path

    model, card = load_model_with_card(model_path)
    data = load_prune_data(card, manifest_path, data_root, progress=progress)
    tiles = data.reference_tiles(reference_per_class, seed, tiles_per_image)
    patterns = fit_model_patterns(model, tiles)
    target = Path(out) if out is not None else resolve_model_path(model_path)[0].parent / PATTERNS_FILE
    target.parent.mkdir(parents=True, exist_ok=True)
    written = save_patterns(patterns, target.parent)
    if written != target:
        written.replace(target)
    return target
