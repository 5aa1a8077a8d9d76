"""Bias audit: staining, artifact, label and sampling checks grounded in heatmaps; JSON/HTML/GeoJSON reports.

Every check is a function ``(CheckContext) -> list[BiasFinding]`` registered under its report name
with :func:`~pathxai.audit.registry.register_check` (``sampling.leakage``; a family such as
``artifact.relevance`` writes ``artifact.relevance:<kind>``), and builds its findings with
:func:`~pathxai.audit.grade.graded`. Each check module keeps ``check(items, thresholds, ...)``, which
runs its registered checks:

* :mod:`~pathxai.audit.stain` — stain vectors, H/E statistics, outliers, stain-shortcut probe, model sensitivity;
* :mod:`~pathxai.audit.artifacts` — pen, folds, blur, white spots, background; relevance-on-artifact ratio;
* :mod:`~pathxai.audit.labels` — relevance in annotations / on background, candidate label errors;
* :mod:`~pathxai.audit.sampling` — counts, imbalance, missing cells, leakage, unseen groups, per-group AUC;
* :mod:`~pathxai.audit.spray` — SpRAy clustering of heatmaps (eigengap) and dominated clusters;
* :mod:`~pathxai.audit.load` / :mod:`~pathxai.audit.heat` — manifest rows into items; an image's heat
  through the slide geometry (``ArraySlide`` -> ``build_grid`` -> ``Stitcher``), a slide's from its store;
* :mod:`~pathxai.audit.report` / :mod:`~pathxai.audit.tables` — JSON (schema ``pathxai.audit/1``),
  self-contained HTML, GeoJSON.
"""

from pathxai.audit.cohort import AuditItem, Heat, TileHeat
from pathxai.audit.findings import SCHEMA, AuditReport, BiasFinding, Region, SeverityRule, Thresholds

__all__ = [
    "SCHEMA",
    "AuditItem",
    "AuditReport",
    "BiasFinding",
    "Heat",
    "Region",
    "SeverityRule",
    "Thresholds",
    "TileHeat",
]
