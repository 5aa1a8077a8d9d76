"""The public facade: one function per job, settings in, a typed result out.

``from pathxai import api`` costs no torch: each function imports its job when it is called, so
``pathxai --help``, worker processes and callers that only need one job pay only for that job.
Every function forwards its keyword arguments to the job in :mod:`pathxai.pipeline`, whose
docstring lists them; the CLI commands call the same jobs.

Examples
--------
>>> from pathxai import api
>>> from pathxai.pipeline.heatmap import HeatmapSettings
>>> batch = api.heatmap(["slide.svs"], "heatmaps/", HeatmapSettings(method="lrp"))  # doctest: +SKIP
>>> report = api.audit("cohort.csv", data_root="data/", heatmaps="heatmaps/", out="audit/")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the types only; nothing heavy is imported at run time
    from pathxai.audit.findings import AuditReport
    from pathxai.pipeline.evaluate import EvaluationResult
    from pathxai.pipeline.heatmap import BatchResult, HeatmapSettings
    from pathxai.pipeline.mitigate import MitigationResult
    from pathxai.pipeline.prune import PruneResult
    from pathxai.pipeline.train import TrainJobResult

__all__ = ["audit", "evaluate", "heatmap", "mitigate", "prune", "train"]


def heatmap(
    slides: Sequence[str | Path],
    out: str | Path,
    settings: HeatmapSettings | None = None,
    **kwargs: Any,
) -> BatchResult:
    """Heatmaps of slides (or CSV manifests of slides): :func:`pathxai.pipeline.heatmap.heatmap_batch`."""
    from pathxai.pipeline.heatmap import heatmap_batch

    return heatmap_batch(slides, out, settings, **kwargs)


def audit(manifest: str | Path, **kwargs: Any) -> AuditReport:
    """Bias audit of a cohort, report written to ``out``: :func:`pathxai.pipeline.audit.audit`."""
    from pathxai.pipeline.audit import audit as run_audit

    return run_audit(manifest, **kwargs)


def prune(
    model: str | Path,
    manifest: str | Path,
    data_root: str | Path,
    criterion: str,
    ratio: float,
    out: str | Path,
    **kwargs: Any,
) -> PruneResult:
    """Prune a model by a criterion: :func:`pathxai.pipeline.prune.prune_from_manifest`."""
    from pathxai.pipeline.prune import prune_from_manifest

    return prune_from_manifest(model, manifest, data_root, criterion, ratio, out, **kwargs)


def train(manifest: str | Path, out: str | Path, **kwargs: Any) -> TrainJobResult:
    """Train (or cross-validate) a model: :func:`pathxai.pipeline.train.train_from_manifest`."""
    from pathxai.pipeline.train import train_from_manifest

    return train_from_manifest(manifest, out, **kwargs)


def evaluate(manifest: str | Path, model: str | Path = "default", **kwargs: Any) -> EvaluationResult:
    """Evaluate a model on a labelled manifest: :func:`pathxai.pipeline.evaluate.evaluate_from_manifest`."""
    from pathxai.pipeline.evaluate import evaluate_from_manifest

    return evaluate_from_manifest(manifest, model, **kwargs)


def mitigate(
    model: str | Path, manifest: str | Path, audit: str | Path, out: str | Path, **kwargs: Any
) -> MitigationResult:
    """Correct a model for audit findings and stress-test it: :func:`pathxai.pipeline.mitigate.mitigate`."""
    from pathxai.pipeline.mitigate import mitigate as run_mitigate

    return run_mitigate(model, manifest, audit, out, **kwargs)
