"""Label checks grounded in heatmaps.

Relevance inside annotations, tumour calls resting on background, and candidate label errors
(confident disagreement between model and label).

Annotation masks are whatever the cohort provides. For GlaS they outline *glands* (benign and
malignant alike), not tumour: relevance inside them says the model looks at glandular structure,
not that it looks at tumour. The report states which kind of mask was used.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pathxai.audit.cohort import AuditItem, whole_region
from pathxai.audit.findings import BiasFinding, Thresholds
from pathxai.audit.grade import graded
from pathxai.audit.pixels import background_mask
from pathxai.audit.registry import CheckContext, register_check, run_checks

__all__ = ["check", "relevance_table"]


def _pos_share(rel: np.ndarray, mask: np.ndarray) -> float:
    r = np.maximum(rel, 0.0)
    tot = float(r.sum())
    return float(r[mask].sum()) / tot if tot > 0 else float("nan")


def relevance_table(items: Sequence[AuditItem]) -> list[dict[str, object]]:
    """Per item with a heatmap: probability, positive relevance share in the mask and on background."""
    rows = []
    for it in items:
        if it.heat is None:
            continue
        bg = background_mask(it.image)
        row: dict[str, object] = {
            "id": it.id,
            "tumor": it.tumour,
            "probability": float(it.heat.probability),
            "background_area": float(bg.mean()),
            "background_relevance": _pos_share(it.heat.relevance, bg),
        }
        if it.mask is not None:
            row["mask_area"] = float(it.mask.mean())
            row["mask_relevance"] = _pos_share(it.heat.relevance, it.mask)
        rows.append(row)
    return rows


def check(
    items: Sequence[AuditItem], thresholds: Thresholds | None = None, mask_kind: str = "annotation"
) -> list[BiasFinding]:
    """Annotation relevance, background relevance on tumour items, and label-error candidates.

    Parameters
    ----------
    items
        The cohort (items without a heatmap are skipped).
    thresholds
        Severity rules.
    mask_kind
        What the annotation masks outline (e.g. ``"gland outlines (not tumour)"``), stated in the finding.

    Returns
    -------
    list[BiasFinding]
    """
    ctx = CheckContext(items, thresholds or Thresholds(), mask_kind=mask_kind)
    return run_checks(ctx, module=__name__)


def _rows(ctx: CheckContext) -> list[dict[str, object]]:
    return ctx.memo("labels.relevance_table", lambda: relevance_table(ctx.items))


@register_check("labels.annotation", family="class-correlated")
def check_annotation(ctx: CheckContext) -> list[BiasFinding]:
    """Positive relevance share inside the annotation masks relative to their area."""
    mask_kind = ctx.mask_kind
    masked = [r for r in _rows(ctx) if "mask_relevance" in r and np.isfinite(float(r["mask_relevance"]))]  # type: ignore[arg-type]
    if not masked:
        return []
    by_id = {it.id: it for it in ctx.items}
    share = np.asarray([float(r["mask_relevance"]) for r in masked])  # type: ignore[arg-type]
    area = np.asarray([float(r["mask_area"]) for r in masked])  # type: ignore[arg-type]
    ratio = float(share.mean() / max(area.mean(), 1e-9))
    per = share / np.maximum(area, 1e-9)
    low = [masked[int(i)]["id"] for i in np.argsort(per)[:20]]
    by_class = {}
    for c in (0, 1):
        sel = [i for i, r in enumerate(masked) if r["tumor"] == c]
        if sel:
            by_class["tumour" if c else "non-tumour"] = float(share[sel].mean() / max(area[sel].mean(), 1e-9))
    return [
        graded(
            ctx.thresholds,
            "class-correlated",
            "labels.annotation",
            f"positive relevance share inside {mask_kind} / their area share",
            ratio,
            f"{share.mean():.0%} of the positive relevance falls inside the {mask_kind}, which cover "
            f"{area.mean():.0%} of the images (ratio {ratio:.2f}; by class "
            + ", ".join(f"{k} {v:.2f}" for k, v in by_class.items())
            + "). Above 1: the model looks at the annotated structures; "
            "the items listed first have the least relevance on them.",
            grade=False,
            items=tuple(str(i) for i in low),
            regions=tuple(whole_region(by_id[str(i)], "low relevance in annotation") for i in low[:10]),
            details={"ratio_by_class": by_class, "n_items": len(masked), "mask_kind": mask_kind},
        )
    ]


@register_check("labels.background_relevance", family="class-correlated")
def check_background_relevance(ctx: CheckContext) -> list[BiasFinding]:
    """Tumour-labelled items whose tumour relevance rests on background/glass."""
    cut = ctx.thresholds.setting("background_relevance_share")
    tum = [r for r in _rows(ctx) if r["tumor"] == 1 and np.isfinite(float(r["background_relevance"]))]  # type: ignore[arg-type]
    if not tum:
        return []
    by_id = {it.id: it for it in ctx.items}
    share = {str(r["id"]): float(r["background_relevance"]) for r in tum}  # type: ignore[arg-type]
    bad = sorted((i for i in share if share[i] >= cut), key=lambda i: -share[i])
    return [
        graded(
            ctx.thresholds,
            "class-correlated",
            "labels.background_relevance",
            f"fraction of tumour-labelled items with >= {cut:.0%} of positive relevance on background",
            len(bad) / len(tum),
            f"{len(bad)} of {len(tum)} tumour-labelled items put at least {cut:.0%} of their tumour "
            "relevance on background/glass: the call rests on non-tissue.",
            items=tuple(bad),
            regions=tuple(whole_region(by_id[i], "relevance on background", share[i]) for i in bad[:20]),
            details={"median_background_relevance": float(np.median(list(share.values())))},
        )
    ]


@register_check("labels.candidates", family="class-correlated")
def check_candidates(ctx: CheckContext) -> list[BiasFinding]:
    """Labelled items the model confidently calls the other class (candidates for label review)."""
    conf = ctx.thresholds.setting("label_error_confidence")
    labelled = [r for r in _rows(ctx) if r["tumor"] in (0, 1)]
    if not labelled:
        return []
    by_id = {it.id: it for it in ctx.items}
    cands = []
    for r in labelled:
        p = float(r["probability"])  # type: ignore[arg-type]
        p_label = p if r["tumor"] == 1 else 1.0 - p
        if 1.0 - p_label >= conf:
            cands.append((1.0 - p_label, r))
    cands.sort(key=lambda t: -t[0])
    return [
        graded(
            ctx.thresholds,
            "class-correlated",
            "labels.candidates",
            f"fraction of labelled items the model contradicts with probability >= {conf:.2f}",
            len(cands) / len(labelled),
            f"{len(cands)} of {len(labelled)} items are confidently called the other class by the model: "
            "candidates for label review (or model errors; look at the heatmaps).",
            items=tuple(str(r["id"]) for _, r in cands),
            regions=tuple(
                whole_region(by_id[str(r["id"])], f"label {r['tumor']} vs model", c) for c, r in cands[:20]
            ),
            details={
                "candidates": [
                    {"id": r["id"], "label": r["tumor"], "tumour_probability": r["probability"]}
                    for _, r in cands[:50]
                ]
            },
        )
    ]
