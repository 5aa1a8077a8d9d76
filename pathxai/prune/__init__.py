"""Explanation-guided structured pruning.

Criteria (:data:`CRITERIA`: ``lrp``, ``ig``, ``gradient``, ``taylor``, ``pattern_attribution``,
``weight``, ``random``) are Torch-Pruning importances; :func:`prune_model` removes whole channels
with Torch-Pruning's dependency graph; :class:`PruningPlan` records, serialises and re-applies the decision; :func:`explanation_drift`
compares heatmaps of the original and the pruned model. A study against a labelled manifest:
:mod:`~pathxai.prune.data` (patches), :mod:`~pathxai.prune.runner` (one run with
:class:`PruneSettings`), :mod:`~pathxai.prune.sweep` (the sweep table); :func:`save_pruned_model`
writes a pruned model with its card and :class:`PruneReport` (``pruning.json``); :mod:`~pathxai.prune.slide`
prunes on the tiles of one unlabelled slide (the demo). After each step the
BatchNorm statistics are corrected on unlabelled reference tiles (:mod:`~pathxai.prune.batchnorm`);
:mod:`~pathxai.prune.pxp` scores a criterion by the PxP protocol's area under AUC versus pruning rate.
"""

from pathxai.prune.criteria import (
    CRITERIA,
    DATA_CRITERIA,
    DataImportance,
    GroupScorer,
    RandomImportance,
    ReferenceBatches,
    WeightNormImportance,
    make_importance,
)
from pathxai.prune.drift import DriftReport, explanation_drift, heatmap_similarity, topk_iou
from pathxai.prune.engine import check_ratio, output_layers, prune_model
from pathxai.prune.measure import count_macs_params, count_params, cpu_latency_ms, size_metrics
from pathxai.prune.plan import PruningPlan, compose_plans, layer_channels
from pathxai.prune.report import ManifestStudy, PruneReport, SlideStudy
from pathxai.prune.save import pruned_card, save_pruned_model
from pathxai.prune.settings import PruneSettings

__all__ = [
    "CRITERIA",
    "DATA_CRITERIA",
    "DataImportance",
    "DriftReport",
    "GroupScorer",
    "ManifestStudy",
    "PruneReport",
    "PruneSettings",
    "PruningPlan",
    "RandomImportance",
    "ReferenceBatches",
    "SlideStudy",
    "WeightNormImportance",
    "check_ratio",
    "compose_plans",
    "count_macs_params",
    "count_params",
    "cpu_latency_ms",
    "explanation_drift",
    "heatmap_similarity",
    "layer_channels",
    "make_importance",
    "output_layers",
    "prune_model",
    "pruned_card",
    "save_pruned_model",
    "size_metrics",
    "topk_iou",
]
