"""The tables of ``report.json`` (counts, stain, artifacts, relevance, SpRAy, items) from a checked context."""

from __future__ import annotations

from typing import Any

from pathxai.audit import artifacts, labels, sampling, spray, stain
from pathxai.audit.cohort import AuditItem
from pathxai.audit.registry import CheckContext

__all__ = ["report_tables"]


def _item_row(it: AuditItem) -> dict[str, Any]:
    return {
        "id": it.id,
        "label": None if it.tumour is None else ("tumour" if it.tumour else "non-tumour"),
        "patient": it.meta.get("patient"),
        "split": it.meta.get("split"),
        "probability": None if it.heat is None else it.heat.probability,
        "l0_size": [round(it.image.shape[1] * it.l0_per_px), round(it.image.shape[0] * it.l0_per_px)],
    }


def report_tables(ctx: CheckContext) -> dict[str, Any]:
    """The report's tables (JSON-ready) from a context whose checks have run."""
    items = list(ctx.items)
    st_stats, spray_res = stain.stats_of(ctx), spray.result_of(ctx)
    return {
        "counts": sampling.counts_table(items),
        "stain": st_stats.table(),
        "stain_probes": {k: v.to_dict() for k, v in st_stats.probes.items()},
        "artifacts": artifacts.stats_of(ctx).table(),
        "relevance": labels.relevance_table(items),
        "stain_sensitivity": ctx.tables.get("stain_sensitivity", {}),
        "spray": spray_res.summary() if spray_res is not None else [],
        "items": [_item_row(it) for it in items],
    }
