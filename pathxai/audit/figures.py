"""Figures and thumbnails of an audit (matplotlib, Agg backend; PNG files under the report directory)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from pathxai.atomic import atomic_path
from pathxai.audit.artifacts import ARTIFACT_KINDS, ArtifactStats
from pathxai.audit.cohort import AuditItem
from pathxai.audit.findings import BiasFinding
from pathxai.audit.spray import SprayResult
from pathxai.audit.stain import StainStats, outlier_features
from pathxai.render.outline import outline

__all__ = ["heat_overlay", "make_figures", "write_thumbnails"]

MAX_THUMBS = 160


def safe_name(name: str) -> str:
    """A file-system safe, collision-free name for an item id."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "item"
    return s if s == name and len(s) <= 80 else s[:80] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8]


def heat_overlay(img: np.ndarray, relevance: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """Blend a signed relevance map (red positive, blue negative) over a greyed image; uint8 RGB."""
    r = np.nan_to_num(relevance.astype(np.float64))
    vmax = float(np.percentile(np.abs(r), 99.5)) or 1.0
    norm = np.clip(r / vmax, -1.0, 1.0)
    cmap = plt.get_cmap("bwr")
    col = cmap((norm + 1.0) / 2.0)[..., :3]
    grey = img.astype(np.float64).mean(axis=2, keepdims=True) / 255.0
    base = 0.35 + 0.65 * grey
    a = alpha * np.abs(norm)[..., None]
    out = (1 - a) * base + a * col
    return np.clip(out * 255.0, 0, 255).astype(np.uint8)


def _save_png(arr: np.ndarray, path: Path) -> None:
    """Save as a palette PNG (256 adaptive colours: a third of the bytes, same look at thumbnail size)."""
    with atomic_path(path) as tmp:
        Image.fromarray(arr).quantize(256, method=Image.Quantize.MEDIANCUT).save(
            tmp, format="PNG", optimize=True
        )


def _save_fig(fig: Figure, path: Path) -> None:
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    buf.seek(0)
    with Image.open(buf) as im:
        _save_png(np.asarray(im.convert("RGB")), path)


def _shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = max_side / max(h, w)
    if s >= 1:
        return img
    return np.asarray(
        Image.fromarray(img).resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BILINEAR)
    )


def _outline(img: np.ndarray, masks: Mapping[str, np.ndarray] | None) -> np.ndarray:
    """Draw artifact masks' edges (not layout kinds) in yellow."""
    if not masks:
        return img
    out = img
    for k, m in masks.items():
        if k in ("background", "white_spot") or not m.any():
            continue
        out = outline(out, m)
    return out


def write_thumbnails(
    items: Sequence[AuditItem],
    findings: Sequence[BiasFinding],
    out_dir: Path,
    artifact_masks: Mapping[str, Mapping[str, np.ndarray]] | None = None,
    max_side: int = 260,
) -> dict[str, str]:
    """Write ``thumbs/<id>.png`` (image | heatmap overlay, artifacts outlined) for items cited by findings.

    Returns
    -------
    dict[str, str]
        Item id -> path relative to ``out_dir``.
    """
    by_id = {it.id: it for it in items}
    wanted: list[str] = []
    for f in findings:
        for i in f.items[:12]:
            if i in by_id and i not in wanted:
                wanted.append(i)
    wanted = wanted[:MAX_THUMBS]
    out: dict[str, str] = {}
    for i in wanted:
        it = by_id[i]
        img = _outline(it.image, artifact_masks.get(i) if artifact_masks else None)
        panels = [_shrink(img, max_side)]
        if it.heat is not None:
            panels.append(_shrink(heat_overlay(it.image, it.heat.relevance), max_side))
        h = max(p.shape[0] for p in panels)
        canvas = np.full((h, sum(p.shape[1] for p in panels) + 4 * (len(panels) - 1), 3), 255, np.uint8)
        x = 0
        for p in panels:
            canvas[: p.shape[0], x : x + p.shape[1]] = p
            x += p.shape[1] + 4
        rel = f"thumbs/{safe_name(i)}.png"
        _save_png(canvas, out_dir / rel)
        out[i] = rel
    return out


def _colour_groups(values: Sequence[str]) -> tuple[dict[str, Any], list[str]]:
    uniq = sorted(set(values))
    cmap = plt.get_cmap("tab20" if len(uniq) > 10 else "tab10")
    return {u: cmap(i % cmap.N) for i, u in enumerate(uniq)}, uniq


def _stain_figure(items: Sequence[AuditItem], st: StainStats) -> Figure:
    sites = {it.meta.get("site") for it in items}
    key = "site" if len(sites) > 1 else "patient"
    groups = [str(it.meta.get(key) or it.id) for it in items]
    colours, uniq = _colour_groups(groups)
    of = outlier_features(st.features) if len(items) else np.zeros((0, 5))
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6))
    for ax, (xi, yi, xl, yl) in zip(
        axes,
        [
            (6, 8, "mean haematoxylin (rgb2hed)", "mean eosin (rgb2hed)"),
            (
                -1,
                -2,
                "H stain-vector angle to cohort median (°)",
                "E stain-vector angle to cohort median (°)",
            ),
        ],
        strict=True,
    ):
        for lab, marker in ((1, "^"), (0, "o"), (None, "s")):
            sel = [i for i, it in enumerate(items) if it.tumour == lab]
            if not sel:
                continue
            if xi >= 0:
                xs, ys = st.features[sel, xi], st.features[sel, yi]
            else:
                xs, ys = of[sel, 0], of[sel, 1]
            ax.scatter(
                xs,
                ys,
                c=[colours[groups[i]] for i in sel],
                marker=marker,
                s=28,
                edgecolors="k",
                linewidths=0.3,
            )
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.grid(alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", ls="", color=colours[u], label=u) for u in uniq[:20]]
    handles += [
        plt.Line2D([], [], marker="^", ls="", color="grey", label="tumour"),
        plt.Line2D([], [], marker="o", ls="", color="grey", label="non-tumour"),
    ]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, title=key)
    fig.suptitle(f"Stain per image, coloured by {key} (▲ tumour, ● non-tumour)")
    fig.tight_layout()
    return fig


def _artifact_figure(art: ArtifactStats, min_area: float) -> Figure:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    prev = (art.area >= min_area).mean(axis=0)
    axes[0].barh(list(ARTIFACT_KINDS), prev, color="#8c6bb1")
    axes[0].set_xlabel("fraction of items with the artifact")
    axes[0].set_xlim(0, 1)
    axes[0].invert_yaxis()
    ratios, names = [], []
    for j, k in enumerate(ARTIFACT_KINDS):
        has = (art.area[:, j] >= min_area) & np.isfinite(art.relevance_share[:, j])
        if has.any():
            ratios.append(float(art.relevance_share[has, j].mean() / max(art.area[has, j].mean(), 1e-9)))
            names.append(k)
    if ratios:
        colours = ["#d7301f" if r >= 2 else "#fc8d59" if r >= 1.5 else "#4575b4" for r in ratios]
        axes[1].barh(names, ratios, color=colours)
        axes[1].axvline(1.0, color="k", lw=1, ls="--")
        for thr, ls in ((1.5, ":"), (2.0, "-."), (3.0, "-")):
            axes[1].axvline(thr, color="#d7301f", lw=0.8, ls=ls)
        axes[1].set_xlim(0, max(3.3, max(ratios) * 1.1))
        axes[1].set_xlabel("relevance share / area share (1 = no preference; red lines: 1.5 / 2 / 3)")
        axes[1].invert_yaxis()
    else:
        axes[1].text(0.5, 0.5, "no heatmaps", ha="center", va="center")
        axes[1].set_axis_off()
    axes[0].set_title("Artifact prevalence")
    axes[1].set_title("Relevance on artifacts")
    fig.tight_layout()
    return fig


def _group_figure(finding: BiasFinding) -> Figure | None:
    groups = dict(finding.details.get("groups", {}))
    if not groups:
        return None
    cols = list(groups)
    fig, axes = plt.subplots(
        len(cols), 1, figsize=(10, 1.2 + 0.32 * sum(len(groups[c]) for c in cols) + 0.6 * len(cols))
    )
    axes = np.atleast_1d(axes)
    overall_auc = finding.details.get("overall_auc")
    overall_acc = finding.details.get("overall_accuracy")
    for ax, col in zip(axes, cols, strict=True):
        rows = groups[col]
        names = [f"{r['group']} (n={r['n']})" for r in rows]
        for yi, r in enumerate(rows):
            if "auc" in r and r.get("auc") is not None:
                lo, hi = r["auc_ci"]
                ax.errorbar(
                    r["auc"],
                    yi,
                    xerr=[[max(0.0, r["auc"] - lo)], [max(0.0, hi - r["auc"])]],
                    fmt="s",
                    color="#2c7fb8",
                    capsize=3,
                )
            lo, hi = r["accuracy_ci"]
            ax.errorbar(
                r["accuracy"],
                yi + 0.25,
                xerr=[[max(0.0, r["accuracy"] - lo)], [max(0.0, hi - r["accuracy"])]],
                fmt="o",
                color="#e6550d",
                capsize=3,
            )
        if overall_auc is not None:
            ax.axvline(overall_auc, color="#2c7fb8", ls="--", lw=1)
        if overall_acc is not None:
            ax.axvline(overall_acc, color="#e6550d", ls=":", lw=1)
        ax.set_yticks(range(len(rows)), names, fontsize=8)
        ax.set_xlim(-0.02, 1.02)
        ax.set_title(f"by {col}: AUC ■ / accuracy ● with 95% CI (dashed: overall)", fontsize=9)
        ax.invert_yaxis()
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return fig


def _spray_figure(items: Sequence[AuditItem], res: SprayResult, per_cluster: int = 5) -> Figure:
    k = min(res.k, 8)
    fig = plt.figure(figsize=(13, 2.7 * k + 1.8))
    gs = fig.add_gridspec(k + 1, per_cluster * 2, height_ratios=[1.2] + [1] * k)
    ax = fig.add_subplot(gs[0, :])
    ax.plot(range(1, len(res.eigenvalues) + 1), res.eigenvalues, "o-")
    ax.axvline(res.k + 0.5, color="r", ls="--")
    ax.set_title(f"Laplacian eigenvalues (eigengap → k = {res.k})", fontsize=9)
    ax.tick_params(labelsize=7)
    for c in range(k):
        sel = np.nonzero(res.labels == c)[0]
        sel = sel[np.argsort(res.centrality[sel])][:per_cluster]
        comp = {
            key: max(
                (
                    (v, sum(1 for i in np.nonzero(res.labels == c)[0] if res.attributes[i][key] == v))
                    for v in {res.attributes[i][key] for i in np.nonzero(res.labels == c)[0]}
                ),
                key=lambda t: t[1],
            )
            for key in ("patient", "artifact")
        }
        size = int((res.labels == c).sum())
        for j, m in enumerate(sel):
            i, pj = res.members[int(m)]
            it = items[i]
            p = it.heat.tiles[pj]  # type: ignore[union-attr]
            crop = it.image[p.y : p.y + p.size, p.x : p.x + p.size]
            rel = it.heat.relevance[p.y : p.y + p.size, p.x : p.x + p.size]  # type: ignore[union-attr]
            a1 = fig.add_subplot(gs[c + 1, 2 * j])
            a1.imshow(crop)
            a1.set_axis_off()
            a2 = fig.add_subplot(gs[c + 1, 2 * j + 1])
            a2.imshow(heat_overlay(crop, rel))
            a2.set_axis_off()
            if j == 0:
                a1.set_title(
                    f"cluster {c}: {size} tiles; top patient {comp['patient'][0]} "
                    f"({comp['patient'][1] / size:.0%}); artifact {comp['artifact'][0]} ({comp['artifact'][1] / size:.0%})",
                    fontsize=8,
                    loc="left",
                )
    return fig


def _examples_figure(items: Sequence[AuditItem], ids: Sequence[str], title: str) -> Figure | None:
    by_id = {it.id: it for it in items}
    ids = [i for i in ids if i in by_id and by_id[i].heat is not None][:6]
    if not ids:
        return None
    fig, axes = plt.subplots(2, len(ids), figsize=(2.4 * len(ids) + 0.5, 4.4), squeeze=False)
    for j, i in enumerate(ids):
        it = by_id[i]
        axes[0, j].imshow(it.image)
        lab = "-" if it.tumour is None else ("tumour" if it.tumour else "non-tumour")
        axes[0, j].set_title(f"{i}\nlabel {lab}, p(tumour) {it.heat.probability:.2f}", fontsize=7)  # type: ignore[union-attr]
        axes[1, j].imshow(heat_overlay(it.image, it.heat.relevance))  # type: ignore[union-attr]
        for a in axes[:, j]:
            a.set_axis_off()
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _counts_figure(items: Sequence[AuditItem]) -> Figure:
    pats = sorted({it.meta.get("patient") or it.id for it in items})
    if len(pats) > 40:
        pats = pats[:40]
    splits = sorted({it.meta.get("split") or "-" for it in items})
    fig, ax = plt.subplots(figsize=(10, 0.5 + 0.22 * len(pats)))
    left = np.zeros(len(pats))
    palette = {"tumour": "#d95f02", "non-tumour": "#1b9e77", "-": "#999999"}
    hatches = ["", "//", "..", "xx"]
    for si, sp in enumerate(splits):
        for lab in ("tumour", "non-tumour", "-"):
            vals = np.asarray(
                [
                    sum(
                        1
                        for it in items
                        if (it.meta.get("patient") or it.id) == p
                        and (it.meta.get("split") or "-") == sp
                        and ("-" if it.tumour is None else "tumour" if it.tumour else "non-tumour") == lab
                    )
                    for p in pats
                ],
                float,
            )
            if vals.sum() == 0:
                continue
            ax.barh(
                pats,
                vals,
                left=left,
                color=palette[lab],
                hatch=hatches[si % 4],
                edgecolor="white",
                label=f"{lab} / {sp}",
            )
            left += vals
    ax.set_xlabel("items")
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title("Items per patient, by class and split")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def make_figures(
    items: Sequence[AuditItem],
    findings: Sequence[BiasFinding],
    stain_stats: StainStats,
    art_stats: ArtifactStats,
    spray_res: SprayResult | None,
    out_dir: Path,
    sensitivity: Mapping[str, Any] | None = None,
    min_area: float = 0.005,
) -> dict[str, str]:
    """Render every figure to ``out_dir/figures/<name>.png``; return name -> relative path."""
    out: dict[str, str] = {}

    def save(name: str, fig: Figure | None) -> None:
        if fig is None:
            return
        rel = f"figures/{name}.png"
        _save_fig(fig, out_dir / rel)
        out[name] = rel

    if items:
        save("counts", _counts_figure(items))
        save("stain_scatter", _stain_figure(items, stain_stats))
        save("artifacts", _artifact_figure(art_stats, min_area))
    perf = [f for f in findings if f.check == "sampling.group_performance"]
    if perf:
        save("group_performance", _group_figure(perf[0]))
    if spray_res is not None:
        save("spray_montage", _spray_figure(items, spray_res))
    cands = [f for f in findings if f.check == "labels.candidates"]
    if cands and cands[0].items:
        save(
            "label_candidates",
            _examples_figure(items, cands[0].items, "Candidate label errors: image / tumour relevance"),
        )
    worst_art = [f for f in findings if f.check.startswith("artifact.relevance") and f.items]
    if worst_art:
        worst = max(worst_art, key=lambda f: f.value or 0.0)
        save(
            "artifact_examples",
            _examples_figure(
                items,
                worst.items,
                f"Most relevance on {worst.check.split(':')[-1]}: image / tumour relevance",
            ),
        )
    rel_items = sorted(
        (it for it in items if it.heat is not None),
        key=lambda it: -abs((it.heat.probability if it.heat else 0) - 0.5),
    )
    if rel_items:
        tum = [it.id for it in rel_items if it.tumour == 1][:3] + [
            it.id for it in rel_items if it.tumour == 0
        ][:3]
        save(
            "typical_heatmaps",
            _examples_figure(
                items, tum, "Most confident tumour / non-tumour items: image / tumour relevance"
            ),
        )
    return out
