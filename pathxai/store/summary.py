"""What a complete heatmap store holds, in a few numbers: tiles, tumour probabilities, canvas, settings."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pathxai.store.heatmap import HeatmapStore
from pathxai.store.trust import read_trust

__all__ = ["store_summary"]

#: Store attributes copied into the summary's ``settings``.
_SETTINGS = (
    "mpp",
    "size",
    "stride",
    "overlay_mpp",
    "slide_mpp",
    "mpp_source",
    "method",
    "model_name",
    "model_sha256",
    "window",
    "min_tissue",
)


def store_summary(store_path: Path, extra: dict[str, Any]) -> dict[str, Any]:
    """Summarise a complete store (tiles, tumour probabilities, canvas, settings), then add ``extra``."""
    with HeatmapStore.open(store_path) as store:
        attrs = store.attrs
        probs = store.probabilities
        failed = store.failed
        tumour = int(attrs["target_class"])
        p = probs[~failed, tumour] if len(probs) else np.zeros(0)
        summary = {
            "slide": attrs["slide"],
            "slide_id": attrs["slide_id"],
            "n_tiles": store.n_tiles,
            "n_failed_tiles": int(failed.sum()),
            "mean_probability": float(p.mean()) if p.size else None,
            "max_probability": float(p.max()) if p.size else None,
            "fraction_tiles_above_0.5": float((p > 0.5).mean()) if p.size else None,
            "relevance_vmax": float(attrs["relevance_vmax"]) if "relevance_vmax" in attrs else None,
            "has_relevance": store.has_relevance,
            "canvas_shape": list(store.level_shape(0)),
            "levels": store.n_levels,
            "settings": {key: attrs[key] for key in _SETTINGS},
        }
        trust = read_trust(attrs)
        if trust is not None:
            summary["trust"] = trust
    summary.update(extra)
    return summary
