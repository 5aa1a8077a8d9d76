"""One slide's heatmap, now in :mod:`pathxai.heatmap.slide_run` (re-exported here for old imports)."""

from __future__ import annotations

from pathxai.heatmap.slide_run import SlideResult, heatmap_slide, run_job

__all__ = ["SlideResult", "heatmap_slide", "run_job"]
