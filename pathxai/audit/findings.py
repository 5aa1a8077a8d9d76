"""The audit's result types: :class:`BiasFinding`, :class:`Region`, :class:`AuditReport`, and severity rules.

A finding says which bias family it belongs to (``dataset`` — artifacts and quirks across the
data; ``class-correlated`` — something other than morphology that predicts the label; ``sampling``
— under/over-representation and leakage), which check produced it, the metric and its value, the
threshold that was crossed and the resulting severity, and the evidence: item ids and regions in
level-0 pixel coordinates (usable by the viewer and exported to GeoJSON for QuPath).

Severities come from :class:`SeverityRule` objects keyed by check name; every rule in force is
written into the report so a reader sees exactly which thresholds were used.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pathxai.errors import AuditError
from pathxai.jsonio import to_jsonable as json_safe

__all__ = [
    "FAMILIES",
    "SCHEMA",
    "SEVERITIES",
    "AuditReport",
    "BiasFinding",
    "Region",
    "SeverityRule",
    "Thresholds",
    "json_safe",
]

#: Version of the JSON report schema.
SCHEMA = "pathxai.audit/1"
FAMILIES = ("dataset", "class-correlated", "sampling")
SEVERITIES = ("info", "low", "medium", "high")

Family = Literal["dataset", "class-correlated", "sampling"]
Severity = Literal["info", "low", "medium", "high"]


@dataclass(frozen=True)
class Region:
    """A rectangle of one slide/image that supports a finding.

    Attributes
    ----------
    item
        Slide or image id (the manifest ``id``).
    l0_x, l0_y, l0_w, l0_h
        The rectangle in level-0 pixels of that slide/image.
    label
        What the region shows (e.g. ``pen:blue``, ``relevance on artifact``).
    score
        Optional strength (area fraction, relevance share, probability ...).
    """

    item: str
    l0_x: int
    l0_y: int
    l0_w: int
    l0_h: int
    label: str
    score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return json_safe(dataclasses.asdict(self))


@dataclass(frozen=True)
class BiasFinding:
    """One result of one check.

    Attributes
    ----------
    family
        ``dataset``, ``class-correlated`` or ``sampling``.
    check
        Dotted check name, e.g. ``stain.probe.label`` or ``artifact.relevance.pen``.
    metric
        What ``value`` measures, in words a reader understands.
    value
        The measured value (``None`` when the check could not be computed; see ``message``).
    threshold
        The threshold crossed for the reported severity (``None`` for ``info``).
    severity
        ``info``, ``low``, ``medium`` or ``high``.
    message
        One or two sentences for a pathologist: what was found and why it matters.
    items
        Ids of the slides/images that support the finding (worst first).
    regions
        Regions (level-0 coordinates) that support it.
    thumbnails
        Paths of thumbnail images (relative to the report directory).
    details
        Extra numbers (tables, p-values, confidence intervals), JSON-ready.
    id
        Stable identifier in the report (the check name, plus ``#n`` only where one check name
        yields several findings); set by :func:`assign_ids`, ``check`` when empty.
    """

    family: Family
    check: str
    metric: str
    value: float | None
    threshold: float | None
    severity: Severity
    message: str = ""
    items: tuple[str, ...] = ()
    regions: tuple[Region, ...] = ()
    thumbnails: tuple[str, ...] = ()
    details: Mapping[str, Any] = field(default_factory=dict)
    id: str = ""

    def __post_init__(self) -> None:
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {FAMILIES}, got {self.family!r}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")

    @property
    def rank(self) -> int:
        """Severity as an integer (0 info .. 3 high)."""
        return SEVERITIES.index(self.severity)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the evidence grouped under ``evidence``."""
        return json_safe(
            {
                "id": self.id or self.check,
                "family": self.family,
                "check": self.check,
                "metric": self.metric,
                "value": self.value,
                "threshold": self.threshold,
                "severity": self.severity,
                "message": self.message,
                "evidence": {
                    "items": list(self.items),
                    "regions": [r.to_dict() for r in self.regions],
                    "thumbnails": list(self.thumbnails),
                    "details": dict(self.details),
                },
            }
        )


@dataclass(frozen=True)
class SeverityRule:
    """Map a metric value to a severity.

    Attributes
    ----------
    low, medium, high
        Thresholds; ``None`` disables that level.
    direction
        ``above``: the value is bad when large (``value >= threshold``); ``below``: bad when small.
    cap
        Highest severity this check may give (e.g. candidate lists are at most ``medium``).
    """

    low: float | None = None
    medium: float | None = None
    high: float | None = None
    direction: Literal["above", "below"] = "above"
    cap: Severity = "high"

    def grade(self, value: float | None) -> tuple[Severity, float | None]:
        """Return ``(severity, threshold crossed)``; ``info`` and ``None`` when no threshold is crossed."""
        if value is None or not math.isfinite(float(value)):
            return "info", None
        cap = SEVERITIES.index(self.cap)
        for name, thr in (("high", self.high), ("medium", self.medium), ("low", self.low)):
            if thr is None or SEVERITIES.index(name) > cap:
                continue
            hit = value >= thr if self.direction == "above" else value <= thr
            if hit:
                return name, float(thr)  # type: ignore[return-value]
        return "info", None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


def _default_rules() -> dict[str, SeverityRule]:
    r = SeverityRule
    return {
        # stain
        "stain.outliers": r(low=0.02, medium=0.10, high=0.25),
        "stain.probe.label": r(low=0.60, medium=0.70, high=0.85),
        "stain.probe.site": r(low=0.30, medium=0.50, high=0.80),
        "stain.probe.scanner": r(low=0.30, medium=0.50, high=0.80),
        "stain.probe.patient": r(low=0.30, medium=0.60, high=0.90, cap="medium"),
        "stain.sensitivity": r(low=0.05, medium=0.10, high=0.20),
        # artifacts
        "artifact.prevalence": r(low=0.05, medium=0.20, high=None),
        "artifact.label_association": r(low=0.20, medium=0.35, high=0.50),
        "artifact.relevance": r(low=1.5, medium=2.0, high=3.0),
        # labels
        "labels.annotation": r(low=None, medium=None, high=None),
        "labels.background_relevance": r(low=0.05, medium=0.15, high=0.30),
        "labels.candidates": r(low=0.02, medium=0.05, high=None, cap="medium"),
        # sampling
        "sampling.imbalance": r(low=1.5, medium=3.0, high=10.0),
        "sampling.missing_cells": r(low=1, medium=None, high=None),
        "sampling.patient_confounding": r(low=0.5, medium=0.8, high=None, cap="medium"),
        "sampling.site_confounding": r(low=0.1, medium=0.3, high=0.5),
        "sampling.leakage": r(low=None, medium=None, high=1),
        "sampling.unseen": r(low=0.01, medium=0.05, high=0.15),
        "sampling.group_performance": r(low=0.05, medium=0.10, high=0.20),
        "sampling.spray": r(low=0.6, medium=0.8, high=0.95),
    }


@dataclass(frozen=True)
class Thresholds:
    """All severity rules and analysis settings in force for one audit.

    Attributes
    ----------
    rules
        Severity rule per check name (the part before any ``:`` qualifier).
    settings
        Numeric analysis settings (permutations, bootstrap resamples, confidence levels ...).
    """

    rules: Mapping[str, SeverityRule] = field(default_factory=_default_rules)
    settings: Mapping[str, float] = field(
        default_factory=lambda: {
            "alpha": 0.01,
            "permutations": 199,
            "bootstrap": 1000,
            "ci": 0.95,
            "min_artifact_area": 0.005,
            "label_error_confidence": 0.9,
            "background_relevance_share": 0.5,
            "spray_min_cluster": 5,
            "spray_max_patches": 800,
            "sensitivity_images": 32,
            "seed": 0,
        }
    )

    def rule(self, check: str) -> SeverityRule:
        """The rule for ``check`` (``artifact.relevance:pen`` uses ``artifact.relevance``)."""
        key = check.split(":", 1)[0]
        if key not in self.rules:
            raise KeyError(f"no severity rule for check {key!r}")
        return self.rules[key]

    def setting(self, name: str) -> float:
        """A numeric analysis setting."""
        return float(self.settings[name])

    def grade(self, check: str, value: float | None) -> tuple[Severity, float | None]:
        """Severity and crossed threshold of ``value`` under ``check``'s rule."""
        return self.rule(check).grade(value)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (what the report states)."""
        return {
            "rules": {k: v.to_dict() for k, v in sorted(self.rules.items())},
            "settings": dict(self.settings),
        }

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], source: str | Path | None = None) -> Thresholds:
        """Defaults overridden by ``{"rules": {check: {low, medium, high, direction, cap}}, "settings": {...}}``.

        Raises
        ------
        AuditError
            For unknown checks, settings or keys, or non-numeric thresholds.
        """
        base = cls()
        rules = dict(base.rules)
        settings = dict(base.settings)
        if not isinstance(data, Mapping):
            raise AuditError("thresholds config must be a JSON object", path=source)
        unknown = sorted(set(data) - {"rules", "settings"})
        if unknown:
            raise AuditError(
                f"unknown top-level keys {unknown} in thresholds config",
                path=source,
                hint="use 'rules' and 'settings'",
            )
        for name, spec in dict(data.get("rules", {})).items():
            if name not in rules:
                raise AuditError(
                    f"unknown check {name!r} in thresholds config",
                    path=source,
                    hint=f"known checks: {sorted(rules)}",
                )
            if not isinstance(spec, Mapping):
                raise AuditError(f"rule for {name!r} must be an object", path=source)
            bad = sorted(set(spec) - {"low", "medium", "high", "direction", "cap"})
            if bad:
                raise AuditError(f"rule {name!r} has unknown keys {bad}", path=source)
            merged = {**dataclasses.asdict(rules[name]), **dict(spec)}
            for k in ("low", "medium", "high"):
                v = merged[k]
                if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)):
                    raise AuditError(f"rule {name!r}: {k} must be a number or null, got {v!r}", path=source)
            if merged["direction"] not in ("above", "below") or merged["cap"] not in SEVERITIES:
                raise AuditError(f"rule {name!r}: bad direction or cap", path=source)
            rules[name] = SeverityRule(**merged)
        for name, v in dict(data.get("settings", {})).items():
            if name not in settings:
                raise AuditError(
                    f"unknown setting {name!r} in thresholds config",
                    path=source,
                    hint=f"known settings: {sorted(settings)}",
                )
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise AuditError(f"setting {name!r} must be a number, got {v!r}", path=source)
            settings[name] = float(v)
        return cls(rules=rules, settings=settings)

    @classmethod
    def from_json(cls, path: str | Path) -> Thresholds:
        """Read a thresholds JSON file.

        Raises
        ------
        AuditError
            If the file is missing, not JSON, or invalid.
        """
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise AuditError("thresholds config not found", path=p) from exc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise AuditError(f"thresholds config is not readable JSON ({exc})", path=p) from exc
        return cls.from_mapping(data, source=p)


@dataclass(frozen=True)
class AuditReport:
    """Everything an audit found, ready to export.

    Attributes
    ----------
    findings
        All findings, most severe first.
    cohort
        Cohort description (manifest path and sha256, kind, counts, columns).
    model
        Model description (architecture, sha256, mpp, input size) or empty when no model was used.
    thresholds
        The severity rules and settings in force.
    tables
        Per-item and per-group tables backing the figures (JSON-ready).
    figures
        Figure name -> file path of a PNG (relative to the report directory), embedded in the HTML.
    notes
        Caveats a reader must know (e.g. what the annotation masks are).
    timings
        Seconds spent per stage.
    """

    findings: tuple[BiasFinding, ...]
    cohort: Mapping[str, Any]
    model: Mapping[str, Any]
    thresholds: Thresholds
    tables: Mapping[str, Any] = field(default_factory=dict)
    figures: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    timings: Mapping[str, float] = field(default_factory=dict)
    created: str = ""
    version: str = ""

    def by_severity(self, severity: Severity) -> list[BiasFinding]:
        """Findings of one severity."""
        return [f for f in self.findings if f.severity == severity]

    def worst(self) -> Severity:
        """The highest severity among the findings (``info`` when empty)."""
        return SEVERITIES[max((f.rank for f in self.findings), default=0)]  # type: ignore[return-value]

    def find(self, check_prefix: str) -> list[BiasFinding]:
        """Findings whose check starts with ``check_prefix``."""
        return [f for f in self.findings if f.check.startswith(check_prefix)]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the versioned schema :data:`SCHEMA`."""
        counts = {s: len(self.by_severity(s)) for s in SEVERITIES}  # type: ignore[arg-type]
        return json_safe(
            {
                "schema": SCHEMA,
                "pathxai_version": self.version,
                "created": self.created,
                "cohort": dict(self.cohort),
                "model": dict(self.model),
                "summary": {"worst": self.worst(), "counts": counts},
                "findings": [f.to_dict() for f in self.findings],
                "thresholds": self.thresholds.to_dict(),
                "notes": list(self.notes),
                "tables": dict(self.tables),
                "figures": dict(self.figures),
                "timings": dict(self.timings),
            }
        )


def sort_findings(findings: Sequence[BiasFinding]) -> tuple[BiasFinding, ...]:
    """Most severe first, then by family and check name."""
    return tuple(sorted(findings, key=lambda f: (-f.rank, FAMILIES.index(f.family), f.check)))
