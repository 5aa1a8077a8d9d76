"""The pruning sweep's table: one row per (criterion, ratio, seed, fine-tuning), resumable.

:class:`SweepTable` reads ``sweep.csv`` (rows already there are done), appends rows and rewrites the
file atomically after each; :func:`sweep_jobs` lists the runs of a sweep; :func:`baseline_row` and
:func:`run_row` measure one row (the unpruned model, or one pruned copy); :func:`fill_table` runs the
rows not done yet.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from pathxai.atomic import write_text_atomic
from pathxai.prune.criteria import DATA_CRITERIA
from pathxai.prune.data import PruneData
from pathxai.prune.heldout import evaluate_model, measure_drift
from pathxai.prune.measure import count_macs_params
from pathxai.prune.runner import prune_once, reference_scores
from pathxai.prune.settings import PruneSettings

__all__ = [
    "STABILITY_COLUMNS",
    "SWEEP_COLUMNS",
    "SweepJob",
    "SweepTable",
    "baseline_row",
    "fill_table",
    "read_rows",
    "run_row",
    "stability_fields",
    "sweep_jobs",
]

#: The stability options of a row (after the measured columns): its variant label and each option.
STABILITY_COLUMNS = (
    "variant",
    "bn_recalibrate",
    "bn_tiles_per_image",
    "global_pruning",
    "normalizer",
    "relevance",
    "lrp_method",
    "lrp_gamma",
)

SWEEP_COLUMNS = (
    "criterion",
    "ratio",
    "seed",
    "finetune_epochs",
    "n_reference",
    "params",
    "macs",
    "auc",
    "accuracy",
    "balanced_accuracy",
    "image_auc",
    "drift_pearson",
    "drift_spearman",
    "drift_topk_iou",
    "flip_auc",
    "seconds",
    *STABILITY_COLUMNS,
)

RowKey = tuple[str, str, str, str, str]


def _key(criterion: str, ratio: float, seed: int, epochs: float, variant: str = "") -> RowKey:
    return (criterion, f"{float(ratio):.4f}", str(int(seed)), f"{float(epochs):g}", variant)


def stability_fields(settings: PruneSettings) -> dict[str, Any]:
    """The :data:`STABILITY_COLUMNS` of a row run with ``settings``."""
    return {
        "variant": settings.variant(),
        "bn_recalibrate": settings.bn_recalibrate,
        "bn_tiles_per_image": settings.bn_tiles_per_image,
        "global_pruning": int(settings.global_pruning),
        "normalizer": settings.normalizer or "",
        "relevance": settings.relevance,
        "lrp_method": settings.lrp_method,
        "lrp_gamma": f"{settings.lrp_gamma:g}",
    }


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return v


def read_rows(path: Path) -> list[dict[str, str]]:
    """Rows of a sweep CSV (none when the file does not exist)."""
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


@dataclass(frozen=True)
class SweepJob:
    """One pruned copy of the sweep: criterion, seed, ratio and fine-tuning epochs."""

    criterion: str
    seed: int
    ratio: float
    epochs: float
    variant: str = ""

    @property
    def key(self) -> RowKey:
        """The job's identity in the CSV (rows of other stability variants are other jobs)."""
        return _key(self.criterion, self.ratio, self.seed, self.epochs, self.variant)


#: The row of the unpruned model.
BASELINE = SweepJob("none", 0, 0.0, 0.0)


class SweepTable:
    """The rows of ``sweep.csv``: those found on disk count as done; :meth:`add` appends and rewrites."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict[str, Any]] = list(read_rows(path))
        self.done = {
            _key(
                r["criterion"],
                float(r["ratio"]),
                int(r["seed"]),
                float(r["finetune_epochs"] or 0),
                "" if r["criterion"] == "none" else r.get("variant") or "",
            )
            for r in self.rows
        }

    def add(self, row: dict[str, Any]) -> None:
        """Append ``row`` and rewrite the CSV atomically (missing columns are empty)."""
        self.rows.append(row)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(SWEEP_COLUMNS), lineterminator="\n")
        writer.writeheader()
        for r in self.rows:
            writer.writerow({k: r.get(k, "") for k in SWEEP_COLUMNS})
        write_text_atomic(self.path, buf.getvalue())


def sweep_jobs(
    criteria: Sequence[str],
    seeds: Sequence[int],
    ratios: Sequence[float],
    finetune_epochs: float,
    finetune_ratios: Sequence[float],
    variant: str = "",
    weight_every_seed: bool = False,
) -> list[SweepJob]:
    """Every (seed, criterion, ratio[, fine-tuning]) run.

    ``weight`` runs for the first seed only unless ``weight_every_seed`` (its ranking is deterministic;
    only the BatchNorm re-estimation tiles depend on the seed).
    """
    jobs: list[SweepJob] = []
    for seed in seeds:
        for crit in criteria:
            if crit == "weight" and seed != seeds[0] and not weight_every_seed:
                continue  # deterministic: the same ranking for every seed
            jobs += [SweepJob(crit, seed, r, 0.0, variant) for r in ratios]
            if finetune_epochs > 0:
                jobs += [SweepJob(crit, seed, r, float(finetune_epochs), variant) for r in finetune_ratios]
    return jobs


def baseline_row(
    model: nn.Module, data: PruneData, settings: PruneSettings, drift_cache: dict[str, np.ndarray]
) -> dict[str, Any]:
    """The unpruned model's row (its own heatmaps' flipping AUC as ``flip_auc``)."""
    metrics = evaluate_model(model, data)
    macs, params = count_macs_params(model, data.card.input_size)
    own = measure_drift(model, model, data, settings.drift_patches, drift_cache)
    return {
        **{k: _fmt(v) for k, v in metrics.items()},
        "criterion": "none",
        "ratio": 0,
        "seed": 0,
        "finetune_epochs": 0,
        "n_reference": 0,
        "params": params,
        "macs": macs,
        "flip_auc": _fmt(own.flip_auc_original) if own else "",
        "seconds": 0,
    }


def run_row(
    model: nn.Module,
    data: PruneData,
    job: SweepJob,
    settings: PruneSettings,
    *,
    scores: dict[tuple[str, int], dict[str, torch.Tensor]],
    drift_cache: dict[str, np.ndarray] | None,
) -> dict[str, Any]:
    """Prune a copy of ``model`` for ``job`` and measure its row.

    ``scores`` keeps data-driven channel scores by (criterion, seed) across ratios (one-step pruning
    only); ``drift_cache`` the original model's heatmaps, or ``None`` to skip the drift numbers.
    """
    t0 = time.perf_counter()
    crit, seed = job.criterion, job.seed
    pre = None
    if crit in DATA_CRITERIA and settings.iterative_steps == 1:
        if (crit, seed) not in scores:
            scores[(crit, seed)] = reference_scores(model, data, crit, settings, seed)
        pre = scores[(crit, seed)]
    run_settings = dataclasses.replace(settings, finetune_epochs=job.epochs)
    plan, pruned = prune_once(model, data, crit, job.ratio, run_settings, seed=seed, precomputed_scores=pre)
    metrics = evaluate_model(pruned, data)
    drift = None
    if drift_cache is not None:
        drift = measure_drift(model, pruned, data, settings.drift_patches, drift_cache)
    return {
        "criterion": crit,
        "ratio": f"{job.ratio:.4f}",
        "seed": seed,
        "finetune_epochs": f"{job.epochs:g}",
        "n_reference": plan.n_reference,
        "params": int(plan.metrics_after["params"]),
        "macs": int(plan.metrics_after["macs"]),
        **{k: _fmt(v) for k, v in metrics.items() if k in SWEEP_COLUMNS},
        "drift_pearson": _fmt(drift.pearson) if drift else "",
        "drift_spearman": _fmt(drift.spearman) if drift else "",
        "drift_topk_iou": _fmt(drift.topk_iou) if drift else "",
        "flip_auc": _fmt(drift.flip_auc_pruned) if drift else "",
        "seconds": f"{time.perf_counter() - t0:.1f}",
        **stability_fields(settings),
    }


def fill_table(
    table: SweepTable,
    model: nn.Module,
    data: PruneData,
    jobs: Sequence[SweepJob],
    settings: PruneSettings,
    *,
    drift_seed: int,
    progress: bool = True,
) -> int:
    """Add the baseline row and every job's row not in ``table`` yet; return how many jobs ran.

    Heatmap drift is measured for the jobs of ``drift_seed`` only, unless ``settings.drift_all_seeds``;
    data-driven channel scores and the original model's heatmaps are computed once and shared.
    """
    drift_cache: dict[str, np.ndarray] = {}
    if BASELINE.key not in table.done:
        table.add(baseline_row(model, data, settings, drift_cache))
    todo = [j for j in jobs if j.key not in table.done]
    scores: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    bar = tqdm(todo, desc="prune sweep", unit="run", disable=not progress)
    for job in bar:
        bar.set_postfix(criterion=job.criterion, ratio=job.ratio, seed=job.seed, ft=job.epochs)
        with_drift = job.seed == drift_seed or settings.drift_all_seeds
        table.add(
            run_row(
                model, data, job, settings, scores=scores, drift_cache=drift_cache if with_drift else None
            )
        )
    bar.close()
    return len(todo)
