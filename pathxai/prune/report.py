"""``PruneReport``: the content of ``pruning.json`` beside a pruned model, as a typed record.

Every pruned model carries the plan, the heatmap drift, a before/after summary and its provenance;
:class:`ManifestStudy` (``pathxai prune``: labelled held-out patients) and :class:`SlideStudy` (the
demo: tiles of one unlabelled slide) add what their data was. :meth:`PruneReport.to_dict` gives the
JSON keys of ``pruning.json``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pathxai import __version__
from pathxai.prune.drift import DriftReport
from pathxai.prune.plan import PruningPlan
from pathxai.prune.settings import PruneSettings

__all__ = ["ManifestStudy", "PruneReport", "SlideStudy", "finite", "summary"]


def finite(metrics: Mapping[str, float]) -> dict[str, float]:
    """The finite numbers of ``metrics`` as floats (``nan`` metrics are left out)."""
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(float(v))}


def summary(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Fractions of parameters/MACs removed, latency speed-up and quality changes (percentage points)."""
    out: dict[str, float] = {}
    if before.get("params"):
        out["params_removed_fraction"] = 1.0 - after["params"] / before["params"]
    if before.get("macs"):
        out["macs_removed_fraction"] = 1.0 - after["macs"] / before["macs"]
    if before.get("latency_ms") and after.get("latency_ms"):
        out["latency_speedup"] = before["latency_ms"] / after["latency_ms"]
    for key in ("auc", "accuracy", "image_auc"):
        if key in before and key in after:
            out[f"{key}_change_pp"] = 100.0 * (after[key] - before[key])
    return out


class Study(Protocol):
    """What the channels were scored and the model measured on (keys merged into ``pruning.json``)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready keys."""
        ...


@dataclass(frozen=True)
class ManifestStudy:
    """A labelled study (``pathxai prune``): patients, settings and the plan relative to the base model."""

    manifest: str
    heldout_patients: list[str]
    reference_patients: list[str]
    settings: PruneSettings
    seed: int
    channel_plan_vs_base: dict[str, list[int]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready keys."""
        return {
            "manifest": self.manifest,
            "heldout_patients": self.heldout_patients,
            "reference_patients": self.reference_patients,
            "settings": self.settings.to_dict(),
            "seed": self.seed,
            "channel_plan_vs_base": self.channel_plan_vs_base,
        }


@dataclass(frozen=True)
class SlideStudy:
    """Tiles of one unlabelled slide (the demo): reference and drift tiles, pseudo-labels as targets."""

    slide: str
    reference_tiles: list[int]
    drift_tiles: list[int]
    targets: str = "the original model's predicted class (the demo slide has no labels)"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready keys."""
        return {
            "data": {
                "slide": self.slide,
                "reference_tiles": self.reference_tiles,
                "drift_tiles": self.drift_tiles,
                "targets": self.targets,
            }
        }


@dataclass(frozen=True)
class PruneReport:
    """Content of ``pruning.json``.

    Attributes
    ----------
    plan
        The plan, with the metrics measured before and after.
    drift
        Heatmap drift between the original and the pruned model (``None``: not measured).
    summary
        :func:`summary` of the numbers before and after.
    source_model, source_weights_sha256
        The model that was pruned.
    prune_seconds
        Wall time of ranking and removing channels (and fine-tuning).
    study
        What the data was (:class:`ManifestStudy` or :class:`SlideStudy`).
    command, pathxai_version
        Provenance.
    """

    plan: PruningPlan
    drift: DriftReport | None
    summary: dict[str, float]
    source_model: str
    source_weights_sha256: str
    prune_seconds: float
    study: Study
    command: str = ""
    pathxai_version: str = __version__

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (the keys of ``pruning.json``)."""
        return {
            "plan": self.plan.to_dict(),
            "drift": self.drift.to_dict() if self.drift is not None else None,
            "summary": self.summary,
            "source_model": self.source_model,
            "source_weights_sha256": self.source_weights_sha256,
            "prune_seconds": self.prune_seconds,
            "command": self.command,
            "pathxai_version": self.pathxai_version,
            **self.study.to_dict(),
        }
