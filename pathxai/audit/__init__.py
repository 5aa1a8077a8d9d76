"""Bias audit: staining, artifact, label and sampling checks grounded in heatmaps; JSON/HTML/GeoJSON reports.

Each check module exposes ``check(items, thresholds, ...) -> list[BiasFinding]`` over
:class:`~pathxai.audit.cohort.AuditItem` objects (built by :mod:`pathxai.pipeline.audit`):

* :mod:`~pathxai.audit.stain` — stain vectors, H/E statistics, outliers, stain-shortcut probe, model sensitivity;
* :mod:`~pathxai.audit.artifacts` — pen, folds, blur, white spots, background; relevance-on-artifact ratio;
* :mod:`~pathxai.audit.labels` — relevance in annotations / on background, candidate label errors;
* :mod:`~pathxai.audit.sampling` — counts, imbalance, missing cells, leakage, unseen groups, per-group AUC;
* :mod:`~pathxai.audit.spray` — SpRAy clustering of heatmaps (eigengap) and dominated clusters;
* :mod:`~pathxai.audit.report` — JSON (schema ``pathxai.audit/1``), self-contained HTML, GeoJSON.
"""

from pathxai.audit.cohort import AuditItem, Heat, Patch
from pathxai.audit.findings import SCHEMA, AuditReport, BiasFinding, Region, SeverityRule, Thresholds

__all__ = [
    "SCHEMA",
    "AuditItem",
    "AuditReport",
    "BiasFinding",
    "Heat",
    "Patch",
    "Region",
    "SeverityRule",
    "Thresholds",
]
