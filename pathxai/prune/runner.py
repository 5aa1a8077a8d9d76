"""One pruning run of a model against a :class:`~pathxai.prune.data.PruneData` with :class:`PruneSettings`.

:func:`prune_once` draws the reference set, ranks and removes channels (BatchNorm re-estimation on
the reference images and fine-tuning after each step when the settings ask for them) and returns the plan and the pruned copy; :func:`reference_scores`
computes a data-driven criterion's channel scores once, so a sweep can reuse them for every ratio;
:func:`measured_metrics` adds held-out quality and CPU latency to a plan's size numbers.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from pathxai.prune.batchnorm import ShiftedBatchNorm, recalibrate_batchnorm
from pathxai.prune.criteria import DATA_CRITERIA, DataImportance, make_importance
from pathxai.prune.data import PruneData
from pathxai.prune.engine import FinetuneFn
from pathxai.prune.finetune import finetune
from pathxai.prune.heldout import evaluate_model
from pathxai.prune.measure import cpu_latency_ms
from pathxai.prune.plan import PruningPlan
from pathxai.prune.settings import PruneSettings

__all__ = [
    "bn_tiles",
    "finetune_callback",
    "measured_metrics",
    "prune_once",
    "reference_scores",
    "step_callback",
]


def finetune_callback(
    data: PruneData, settings: PruneSettings, seed: int, progress: bool
) -> FinetuneFn | None:
    """``finetune(model, step)`` on the training patches after each pruning step, or ``None`` (0 epochs)."""
    if settings.finetune_epochs <= 0:
        return None

    def run(model: nn.Module, step: int) -> None:
        finetune(
            model,
            data.train,
            settings.finetune_epochs,
            lr=settings.finetune_lr,
            batch_size=settings.finetune_batch,
            max_steps_per_epoch=settings.finetune_steps_per_epoch,
            seed=seed * 1000 + step,
            progress=progress,
        )

    return run


def step_callback(
    data: PruneData,
    settings: PruneSettings,
    seed: int,
    progress: bool,
    shift: ShiftedBatchNorm | None = None,
) -> FinetuneFn | None:
    """What runs after each pruning step: BatchNorm statistics (if asked), then fine-tuning (if asked).

    ``settings.bn_recalibrate``: ``"full"`` re-estimates the statistics on the reference images'
    patches of ``seed`` (:func:`~pathxai.prune.batchnorm.recalibrate_batchnorm`), ``"shift"`` applies
    ``shift`` (:class:`~pathxai.prune.batchnorm.ShiftedBatchNorm`); inputs only, no labels, no gradient.
    """
    tune = finetune_callback(data, settings, seed, progress)
    mode = settings.bn_recalibrate
    if mode == "none" or (mode == "shift" and shift is None):
        return tune
    tiles = bn_tiles(data, settings, seed) if mode == "full" else []

    def run(model: nn.Module, step: int) -> None:
        if shift is not None:
            shift.apply(model)
        else:
            recalibrate_batchnorm(model, tiles)
        if tune is not None:
            tune(model, step)

    return run


def bn_tiles(data: PruneData, settings: PruneSettings, seed: int) -> list[torch.Tensor]:
    """The unlabelled reference tiles of ``seed`` for the BatchNorm statistics."""
    return data.reference_tiles(settings.reference_per_class, seed, settings.bn_tiles_per_image)


def prune_once(
    model: nn.Module,
    data: PruneData,
    criterion: str,
    ratio: float,
    settings: PruneSettings,
    *,
    seed: int = 0,
    precomputed_scores: Mapping[str, torch.Tensor] | None = None,
    progress: bool = False,
) -> tuple[PruningPlan, nn.Module]:
    """Rank ``model``'s channels with ``criterion`` on the reference set and prune a copy.

    Parameters
    ----------
    model
        The network (left unchanged).
    data
        Reference and fine-tuning patches.
    criterion, ratio
        A key of :data:`pathxai.prune.CRITERIA` and the fraction of channels removed.
    settings
        Reference size, schedule, fine-tuning and criterion options.
    seed
        Seed of the reference draw, the random criterion and fine-tuning.
    precomputed_scores
        Channel scores of a data-driven criterion already computed on ``model`` (see
        :func:`reference_scores`).
    progress
        Show fine-tuning progress bars.

    Returns
    -------
    tuple[PruningPlan, nn.Module]
        The plan (size metrics before and after) and the pruned copy.
    """
    reference = data.reference(settings.reference_per_class, seed) if criterion in DATA_CRITERIA else None
    shift = (
        ShiftedBatchNorm(model, bn_tiles(data, settings, seed))
        if settings.bn_recalibrate == "shift"
        else None
    )
    return PruningPlan.compute_and_prune(
        model,
        criterion,
        ratio,
        reference,
        input_size=data.card.input_size,
        global_pruning=settings.global_pruning,
        iterative_steps=settings.iterative_steps,
        finetune=step_callback(data, settings, seed, progress, shift),
        seed=seed,
        criterion_options=settings.criterion_options(criterion),
        normalizer=settings.normalizer,
        precomputed_scores=precomputed_scores,
        on_group=shift.observe if shift is not None else None,
    )


def reference_scores(
    model: nn.Module, data: PruneData, criterion: str, settings: PruneSettings, seed: int
) -> dict[str, torch.Tensor]:
    """Channel scores of the data-driven ``criterion`` on ``model`` for the reference set of ``seed``."""
    reference = data.reference(settings.reference_per_class, seed)
    imp = make_importance(criterion, model, reference, **settings.criterion_options(criterion))
    assert isinstance(imp, DataImportance)
    imp.refresh()
    return imp.scores


def measured_metrics(
    model: nn.Module,
    size_metrics: Mapping[str, float],
    data: PruneData,
    settings: PruneSettings,
    progress: bool,
) -> dict[str, float]:
    """``size_metrics`` plus held-out AUC/accuracy and, if the settings ask, CPU latency (ms)."""
    out = {**size_metrics, **evaluate_model(model, data, progress)}
    if settings.latency:
        out["latency_ms"] = cpu_latency_ms(
            model,
            data.card.input_size,
            batch_size=settings.latency_batch,
            threads=settings.latency_threads,
            repeats=settings.latency_repeats,
        )
    return out
