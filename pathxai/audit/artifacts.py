"""HistoQC-style artifact detectors and the relevance-on-artifact ratio (a Clever-Hans signal).

Detectors work on an item's RGB image at its analysis resolution and return boolean masks:

* ``pen:blue``, ``pen:green``, ``pen:red``, ``pen:black`` — marker ink: saturated hues H&E never
  produces (blue/green), a red far more saturated than eosin, or dark unsaturated ink;
* ``fold`` — tissue folds and other very dark, saturated regions (double tissue layers);
* ``blur`` — out-of-focus tissue blocks (low variance of the Laplacian);
* ``white_spot`` — bright unsaturated holes enclosed by tissue (air bubbles, tears; in colon also
  gland lumina, so read this one with care);
* ``background`` — glass connected to the image border.

For each kind the check reports its prevalence (dataset-wide family), its association with the
label (class-correlated family: an artifact on most tumour slides is a shortcut waiting to be
learned), and — when heatmaps exist — the **relevance-on-artifact ratio**: the share of positive
relevance on artifact pixels divided by their share of the area. A ratio well above 1 means the
model looks at the artifact.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from scipy import ndimage as ndi
from skimage.filters import laplace
from skimage.morphology import disk, remove_small_objects

from pathxai.audit.cohort import AuditItem
from pathxai.audit.findings import BiasFinding, Region, Thresholds
from pathxai.audit.grade import graded
from pathxai.audit.pixels import background_mask, hsv
from pathxai.audit.registry import CheckContext, register_check, run_checks

__all__ = ["ARTIFACT_KINDS", "ArtifactStats", "check", "compute", "detect", "masks_of", "stats_of"]

#: Every kind a detector reports, in display order.
ARTIFACT_KINDS = (
    "pen:blue",
    "pen:green",
    "pen:red",
    "pen:black",
    "fold",
    "blur",
    "white_spot",
    "background",
)
#: Kinds that are tissue layout rather than preparation faults: prevalence is information only.
LAYOUT_KINDS = frozenset({"white_spot", "background"})


def _clean(mask: np.ndarray, min_px: int) -> np.ndarray:
    if not mask.any():
        return mask
    return remove_small_objects(mask, max_size=max(0, min_px - 1))


def detect(img: np.ndarray, mpp: float, blur_threshold: float = 1.0e-3) -> dict[str, np.ndarray]:
    """Artifact masks of one uint8 RGB image at ``mpp`` µm/px.

    Parameters
    ----------
    img
        uint8 RGB ``(H, W, 3)``.
    mpp
        Its resolution (sizes of structuring elements and minimum areas are set in microns).
    blur_threshold
        Laplacian variance (grey in [0, 1]) below which a tissue block counts as blurred.

    Returns
    -------
    dict[str, numpy.ndarray]
        One boolean ``(H, W)`` mask per :data:`ARTIFACT_KINDS` entry.
    """
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {img.dtype} {img.shape}")
    h, s, v = hsv(img)
    # minimum component area: ~ 400 µm² (20 µm square) of ink or fold
    min_px = max(4, round(400.0 / (mpp * mpp)))
    bg = background_mask(img)
    out: dict[str, np.ndarray] = {}
    out["pen:blue"] = _clean((h >= 185) & (h <= 255) & (s > 0.35) & (v > 0.15), min_px)
    out["pen:green"] = _clean((h >= 75) & (h < 185) & (s > 0.30) & (v > 0.15), min_px)
    out["pen:red"] = _clean(((h < 12) | (h > 352)) & (s > 0.70) & (v > 0.35), min_px)
    out["pen:black"] = _clean((v < 0.28) & (s < 0.40), min_px)
    grey = img.astype(np.float32).mean(axis=2) / 255.0
    pen_any = out["pen:blue"] | out["pen:green"] | out["pen:red"] | out["pen:black"]
    out["fold"] = _clean((grey < 0.30) & (s >= 0.45) & ~pen_any, min_px * 4)
    # blur: blocks of ~40 µm with tissue and a flat Laplacian
    lap = laplace(grey)
    block = max(8, round(40.0 / mpp))
    blur = np.zeros(grey.shape, bool)
    tissue = ~bg
    for y in range(0, grey.shape[0] - block + 1, block):
        for x in range(0, grey.shape[1] - block + 1, block):
            t = tissue[y : y + block, x : x + block]
            if t.mean() < 0.7:
                continue
            if float(lap[y : y + block, x : x + block][t].var()) < blur_threshold:
                blur[y : y + block, x : x + block] = True
    out["blur"] = blur
    # background touching the border vs white spots enclosed by tissue
    lab, _ = ndi.label(bg)
    border = np.unique(np.concatenate([lab[0], lab[-1], lab[:, 0], lab[:, -1]]))
    border = border[border > 0]
    touching = np.isin(lab, border)
    out["background"] = bg & touching
    spot_min = max(4, round(100.0 / (mpp * mpp)))
    spots = _clean(bg & ~touching, spot_min)
    # drop huge enclosed regions (more than a quarter of the image: that is background)
    if spots.any():
        lab2, n2 = ndi.label(spots)
        sizes = np.bincount(lab2.ravel(), minlength=n2 + 1)
        big = np.nonzero(sizes > 0.25 * spots.size)[0]
        big = big[big > 0]
        if big.size:
            spots &= ~np.isin(lab2, big)
    out["white_spot"] = spots
    # ink and folds are painted on top of tissue: grow them slightly so their rims count too
    ring = disk(max(1, round(3.0 / mpp)))
    for k in ("pen:blue", "pen:green", "pen:red", "pen:black", "fold"):
        if out[k].any():
            out[k] = ndi.binary_dilation(out[k], structure=ring)
    return out


@dataclass(frozen=True)
class ArtifactStats:
    """Per item and kind: area fraction, positive-relevance share, and a few component boxes."""

    ids: tuple[str, ...]
    area: np.ndarray  # (n_items, n_kinds)
    relevance_share: np.ndarray  # (n_items, n_kinds), NaN without heatmaps
    boxes: tuple[dict[str, list[tuple[int, int, int, int]]], ...]

    def table(self) -> list[dict[str, object]]:
        """One JSON-ready row per item."""
        rows = []
        for i, item_id in enumerate(self.ids):
            row: dict[str, object] = {"id": item_id}
            for j, k in enumerate(ARTIFACT_KINDS):
                row[f"area:{k}"] = float(self.area[i, j])
                rs = self.relevance_share[i, j]
                row[f"relevance:{k}"] = None if not np.isfinite(rs) else float(rs)
            rows.append(row)
        return rows


def _boxes(mask: np.ndarray, k: int = 5) -> list[tuple[int, int, int, int]]:
    lab, n = ndi.label(mask)
    if n == 0:
        return []
    sizes = np.bincount(lab.ravel(), minlength=n + 1)[1:]
    slices = ndi.find_objects(lab)
    order = np.argsort(-sizes)[:k]
    out = []
    for i in order:
        sl = slices[int(i)]
        if sl is None:
            continue
        out.append((sl[0].start, sl[1].start, sl[0].stop, sl[1].stop))
    return out


def compute(
    items: Sequence[AuditItem], masks: Mapping[str, Mapping[str, np.ndarray]] | None = None
) -> ArtifactStats:
    """Detect artifacts in every item (or use ``masks[item.id]``) and measure relevance on them."""
    n, m = len(items), len(ARTIFACT_KINDS)
    area = np.zeros((n, m))
    share = np.full((n, m), np.nan)
    boxes = []
    for i, it in enumerate(items):
        det = masks[it.id] if masks is not None and it.id in masks else detect(it.image, it.mpp)
        pos = None
        if it.heat is not None:
            r = np.maximum(it.heat.relevance, 0.0)
            total = float(r.sum())
            pos = r if total > 0 else None
            tot = total
        bx: dict[str, list[tuple[int, int, int, int]]] = {}
        for j, k in enumerate(ARTIFACT_KINDS):
            mk = det[k]
            area[i, j] = float(mk.mean())
            if pos is not None:
                share[i, j] = float(pos[mk].sum()) / tot
            if mk.any() and k != "background":
                bx[k] = _boxes(mk)
        boxes.append(bx)
    return ArtifactStats(tuple(it.id for it in items), area, share, tuple(boxes))


def _regions(items: Sequence[AuditItem], st: ArtifactStats, idx: Sequence[int], kind: str) -> list[Region]:
    regs = []
    for i in idx:
        for y0, x0, y1, x1 in st.boxes[i].get(kind, [])[:3]:
            x, y, w, h = items[i].l0_box(y0, x0, y1, x1)
            regs.append(Region(items[i].id, x, y, w, h, kind, float(st.area[i, ARTIFACT_KINDS.index(kind)])))
    return regs


def _fisher_p(a: int, b: int, c: int, d: int) -> float:
    from scipy.stats import fisher_exact

    return float(fisher_exact([[a, b], [c, d]])[1])


def masks_of(ctx: CheckContext) -> dict[str, dict[str, np.ndarray]]:
    """Artifact masks of every item of ``ctx`` (detected once per context)."""
    return ctx.memo("artifacts.masks", lambda: {it.id: detect(it.image, it.mpp) for it in ctx.items})


def stats_of(ctx: CheckContext) -> ArtifactStats:
    """:func:`compute` on ``ctx``'s items and masks (once per context)."""
    return ctx.memo("artifacts.stats", lambda: compute(ctx.items, masks_of(ctx)))


def check(
    items: Sequence[AuditItem], thresholds: Thresholds | None = None, stats: ArtifactStats | None = None
) -> list[BiasFinding]:
    """Artifact prevalence, label association and relevance-on-artifact findings (``stats``: precomputed)."""
    ctx = CheckContext(items, thresholds or Thresholds())
    if stats is not None:
        ctx.provide("artifacts.stats", stats)
    return run_checks(ctx, module=__name__)


def _present(ctx: CheckContext, j: int) -> tuple[np.ndarray, list[int]]:
    """Items where kind ``j`` covers at least the minimum area, and their indices by decreasing area."""
    st = stats_of(ctx)
    present = st.area[:, j] >= ctx.thresholds.setting("min_artifact_area")
    return present, [int(i) for i in np.argsort(-st.area[:, j]) if present[i]]


@register_check("artifact.prevalence", family="dataset")
def check_prevalence(ctx: CheckContext) -> list[BiasFinding]:
    """Per kind (``artifact.prevalence:<kind>``): fraction of items showing it."""
    items, st = ctx.items, stats_of(ctx)
    min_area = ctx.thresholds.setting("min_artifact_area")
    out = []
    for j, kind in enumerate(ARTIFACT_KINDS):
        present, idx = _present(ctx, j)
        layout = kind in LAYOUT_KINDS
        med = float(np.median(st.area[present, j])) if present.any() else 0
        out.append(
            graded(
                ctx.thresholds,
                "dataset",
                f"artifact.prevalence:{kind}",
                f"fraction of items with {kind} covering >= {min_area:.1%} of the image",
                float(present.mean()),
                f"{kind}: present in {int(present.sum())} of {len(items)} items "
                f"(median area among them {med:.1%})."
                + (" Tissue layout, reported for reference." if layout else ""),
                grade=not layout,
                items=tuple(items[i].id for i in idx[:50]),
                regions=_regions(items, st, idx[:20], kind),
                details={"area_mean": float(st.area[:, j].mean())},
            )
        )
    return out


@register_check("artifact.label_association", family="class-correlated")
def check_label_association(ctx: CheckContext) -> list[BiasFinding]:
    """Per kind (``artifact.label_association:<kind>``): prevalence difference tumour vs non-tumour."""
    items, st = ctx.items, stats_of(ctx)
    labels = np.asarray([-1 if it.tumour is None else it.tumour for it in items])
    pos, neg = labels == 1, labels == 0
    if not pos.any() or not neg.any():
        return []
    out = []
    for j, kind in enumerate(ARTIFACT_KINDS):
        present, idx = _present(ctx, j)
        if kind in LAYOUT_KINDS or not present.any():
            continue
        p_t, p_n = float(present[pos].mean()), float(present[neg].mean())
        pval = _fisher_p(
            int(present[pos].sum()),
            int((~present[pos]).sum()),
            int(present[neg].sum()),
            int((~present[neg]).sum()),
        )
        out.append(
            graded(
                ctx.thresholds,
                "class-correlated",
                f"artifact.label_association:{kind}",
                "difference in artifact prevalence between tumour and non-tumour items",
                abs(p_t - p_n),
                partial(_association_message, kind, p_t, p_n, pval),
                grade=pval <= ctx.thresholds.setting("alpha"),
                items=tuple(items[i].id for i in idx[:50]),
                regions=_regions(items, st, idx[:20], kind),
                details={"prevalence_tumour": p_t, "prevalence_non_tumour": p_n, "p_value": pval},
            )
        )
    return out


def _association_message(kind: str, p_t: float, p_n: float, pval: float, sev: str) -> str:
    return f"{kind} is on {p_t:.0%} of tumour and {p_n:.0%} of non-tumour items (Fisher p={pval:.2g}). " + (
        "The artifact predicts the label: a model can learn it as a shortcut."
        if sev != "info"
        else "No clear association with the label."
    )


def _relevance_message(kind: str, n: int, area: float, share: float, ratio: float, sev: str) -> str:
    return (
        f"On the {n} items with {kind}, it covers {area:.1%} of the image but "
        f"receives {share:.1%} of the positive tumour relevance (ratio {ratio:.2f}). "
        + (
            "The model attends to the artifact (Clever-Hans risk)."
            if sev in ("medium", "high")
            else "The model does not single it out."
            if ratio < 1.5
            else "Somewhat more relevance than its area."
        )
    )


@register_check("artifact.relevance", family="class-correlated")
def check_relevance(ctx: CheckContext) -> list[BiasFinding]:
    """Per kind (``artifact.relevance:<kind>``): positive-relevance share on the artifact / its area share."""
    items, st = ctx.items, stats_of(ctx)
    out = []
    for j, kind in enumerate(ARTIFACT_KINDS):
        present, _ = _present(ctx, j)
        has = present & np.isfinite(st.relevance_share[:, j])
        if has.sum() < 1:
            continue
        share = float(np.mean(st.relevance_share[has, j]))
        area = float(np.mean(st.area[has, j]))
        ratio = share / max(area, 1e-9)
        per_item = st.relevance_share[has, j] / np.maximum(st.area[has, j], 1e-9)
        order = np.nonzero(has)[0][np.argsort(-per_item)]
        n = int(has.sum())
        out.append(
            graded(
                ctx.thresholds,
                "class-correlated",
                f"artifact.relevance:{kind}",
                "share of positive relevance on artifact pixels / their area share",
                ratio,
                partial(_relevance_message, kind, n, area, share, ratio),
                items=tuple(items[int(i)].id for i in order[:50]),
                regions=_regions(items, st, [int(i) for i in order[:20]], kind),
                details={
                    "relevance_share": share,
                    "area_share": area,
                    "n_items": n,
                    "per_item_ratio_median": float(np.median(per_item)),
                },
            )
        )
    return out
