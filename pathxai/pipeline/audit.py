"""``audit``: run every bias check on a cohort and write the report (what ``pathxai audit`` calls).

Image cohorts (a manifest of image files, e.g. GlaS): each image is rescaled to the model's µm/px,
cut into overlapping tiles of the model's input size, explained with LRP (tumour class), and the
tile relevance is stitched back into an image-sized map; these heatmaps are cached as ``.npz`` in
``OUT/cache/`` (keyed by the model's sha256 and the tiling), so a re-run only redoes the checks.
Slide cohorts (OpenSlide files): every check runs on a thumbnail; the model-dependent checks use
the per-slide :class:`~pathxai.store.HeatmapStore` files of ``--heatmaps DIR`` (from
``pathxai heatmap``) and are skipped, with a note, without them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from skimage.measure import block_reduce
from tqdm.auto import tqdm

from pathxai import __version__
from pathxai.audit import artifacts, labels, sampling, spray, stain
from pathxai.audit.cohort import AuditItem, Heat, Patch
from pathxai.audit.figures import make_figures, write_thumbnails
from pathxai.audit.findings import AuditReport, BiasFinding, Thresholds, sort_findings
from pathxai.audit.report import write_report
from pathxai.errors import AuditError, ManifestError, PathXAIError
from pathxai.manifest import Manifest, ManifestRecord, read_manifest, resolve
from pathxai.model.card import ModelCard
from pathxai.model.datasets import read_rgb, rescale_to_mpp, tissue_fraction
from pathxai.model.io import load_model_with_card, preprocess, sha256_bytes, state_dict_bytes

__all__ = ["audit", "build_items", "explain_image"]

#: Resolution of the analysis image when no model is given (image cohorts) / of slide thumbnails.
DEFAULT_ANALYSIS_MPP = 1.24
SLIDE_THUMB_MPP = 4.0
SLIDE_THUMB_MAX_SIDE = 3000
#: Side of the downsized per-patch heatmaps used for SpRAy.
SPRAY_SIDE = 16
GLAS_MASK_NOTE = (
    "GlaS annotation masks outline glands (benign and malignant alike); they are not tumour masks. "
    "Relevance inside them is evidence that the model looks at glandular tissue structure, not at tumour."
)

ModelSpec = str | Path | tuple[torch.nn.Module, ModelCard] | None


def _safe(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return s[:80] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8] if s != name or len(s) > 80 else s


def _starts(n: int, size: int, stride: int) -> list[int]:
    if n <= size:
        return [0]
    s = list(range(0, n - size + 1, stride))
    if s[-1] != n - size:
        s.append(n - size)
    return s


def _pad_to(img: np.ndarray, size: int) -> np.ndarray:
    h, w = img.shape[:2]
    if h >= size and w >= size:
        return img
    out = np.full((max(h, size), max(w, size), 3), 255, np.uint8)
    out[:h, :w] = img
    return out


def explain_image(
    img: np.ndarray,
    explainer: Any,
    card: ModelCard,
    stride: int | None = None,
    batch_size: int = 64,
) -> Heat:
    """Tile ``img`` (at the model's mpp) into the model's input size, explain each tile, stitch the relevance.

    Parameters
    ----------
    img
        uint8 RGB image already at ``card.mpp``.
    explainer
        A :class:`pathxai.explain.Explainer` for the model (tumour class).
    card
        The model card.
    stride
        Tile step (default: the input size; the last row/column is flush with the edge, so it may
        overlap). Overlaps are averaged.
    batch_size
        Tiles per forward/backward pass.

    Returns
    -------
    Heat
        Relevance ``(H, W)``, mean tumour probability over tissue tiles, and the tiles.
    """
    size = card.input_size
    stride = stride or size
    h, w = img.shape[:2]
    work = _pad_to(img, size)
    ys, xs = _starts(work.shape[0], size, stride), _starts(work.shape[1], size, stride)
    pos = [(y, x) for y in ys for x in xs]
    rel = np.zeros(work.shape[:2], np.float64)
    cnt = np.zeros(work.shape[:2], np.float64)
    probs: list[float] = []
    smalls: list[np.ndarray] = []
    k = max(1, size // SPRAY_SIDE)
    for b in range(0, len(pos), batch_size):
        chunk = pos[b : b + batch_size]
        pix = np.stack([work[y : y + size, x : x + size] for y, x in chunk])
        ex = explainer(preprocess(pix, card), target=card.tumour_index)
        for (y, x), r, p in zip(chunk, ex.relevance, ex.probabilities[:, card.tumour_index], strict=True):
            rel[y : y + size, x : x + size] += r
            cnt[y : y + size, x : x + size] += 1.0
            probs.append(float(p))
            smalls.append(
                block_reduce(r[: k * SPRAY_SIDE, : k * SPRAY_SIDE], (k, k), np.sum).astype(np.float32)
            )
    relevance = (rel / np.maximum(cnt, 1.0))[:h, :w].astype(np.float32)
    tissue = np.asarray([tissue_fraction(work[y : y + size, x : x + size]) for y, x in pos])
    p_arr = np.asarray(probs)
    use = tissue >= 0.3
    prob = float(p_arr[use].mean() if use.any() else p_arr.mean())
    patches = tuple(
        Patch(int(y), int(x), size, float(p), s) for (y, x), p, s in zip(pos, probs, smalls, strict=True)
    )
    return Heat(relevance, prob, patches, method=str(getattr(explainer, "method", "lrp")))


def _heat_to_npz(path: Path, heat: Heat, key: str) -> None:
    from pathxai.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            key=np.asarray(key),
            relevance=heat.relevance,
            probability=np.asarray(heat.probability),
            yx=np.asarray([(p.y, p.x) for p in heat.patches], np.int64).reshape(-1, 2),
            size=np.asarray(heat.patches[0].size if heat.patches else 0),
            probs=np.asarray([p.probability for p in heat.patches], np.float32),
            small=np.stack([p.relevance for p in heat.patches]) if heat.patches else np.zeros((0, 1, 1)),
            method=np.asarray(heat.method),
        )


def _heat_from_npz(path: Path, key: str) -> Heat | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            size = int(z["size"])
            patches = tuple(
                Patch(int(y), int(x), size, float(p), s)
                for (y, x), p, s in zip(z["yx"], z["probs"], z["small"], strict=True)
            )
            return Heat(np.asarray(z["relevance"]), float(z["probability"]), patches, str(z["method"]))
    except (OSError, KeyError, ValueError):
        return None


def _read_mask(rec: ManifestRecord, data_root: Path, shape: tuple[int, int]) -> np.ndarray | None:
    mpath = rec.extra.get("mask_path")
    if not mpath:
        return None
    mrec = dataclasses.replace(rec, path=mpath)
    full = resolve(mrec, data_root)
    if not full.is_file():
        raise ManifestError(f"line {rec.line}: mask file not found: {full}")
    with Image.open(full) as im:
        m = im.convert("L").resize((shape[1], shape[0]), Image.Resampling.NEAREST)
        return np.asarray(m) > 0


def _meta(rec: ManifestRecord) -> dict[str, str]:
    meta = {k: v for k, v in rec.extra.items() if isinstance(v, str)}
    for k in ("patient", "site", "scanner", "split"):
        v = getattr(rec, k)
        if v:
            meta[k] = v
    if rec.label:
        meta["label"] = rec.label
    return meta


def _is_glas(manifest: Manifest) -> bool:
    """GlaS rows: a ``GlaS/`` path or a manifest named after it (its masks are gland outlines)."""
    return "glas" in manifest.path.name.lower() or any(
        "glas" in Path(r.path or "").parts[0].lower() for r in manifest.records if r.path
    )


def _is_image_cohort(manifest: Manifest) -> bool:
    from pathxai.slide import IMAGE_SUFFIXES

    return all(Path(r.path or "").suffix.lower() in IMAGE_SUFFIXES for r in manifest.records)


def _image_item(
    rec: ManifestRecord,
    data_root: Path,
    mpp: float,
    explainer: Any,
    card: ModelCard | None,
    cache: Path | None,
    key: str,
) -> AuditItem:
    if rec.mpp is None:
        raise AuditError(
            f"line {rec.line}: image {rec.path!r} has no 'mpp' in the manifest",
            hint="add an 'mpp' column (native µm/px of the images)",
        )
    full = resolve(rec, data_root)
    img = rescale_to_mpp(read_rgb(full), rec.mpp, mpp)
    mask = _read_mask(rec, data_root, img.shape[:2])
    heat = None
    if explainer is not None and card is not None:
        cfile = cache / f"{_safe(rec.id)}.npz" if cache is not None else None
        if cfile is not None and cfile.is_file():
            heat = _heat_from_npz(cfile, key)
            if heat is not None and heat.relevance.shape != img.shape[:2]:
                heat = None
        if heat is None:
            heat = explain_image(img, explainer, card)
            if cfile is not None:
                _heat_to_npz(cfile, heat, key)
    return AuditItem(rec.id, img, mpp, mpp / rec.mpp, rec.tumor, _meta(rec), mask, heat)


def _slide_item(
    rec: ManifestRecord, data_root: Path, heatmaps: Path | None, card: ModelCard | None
) -> AuditItem:
    from pathxai.slide import open_slide

    full = resolve(rec, data_root)
    with open_slide(full, mpp=rec.mpp) as slide:
        thumb, down = slide.thumbnail(mpp=max(SLIDE_THUMB_MPP, slide.mpp), max_side=SLIDE_THUMB_MAX_SIDE)
        slide_mpp = slide.mpp
    heat = None
    if heatmaps is not None:
        heat = _heat_from_store(heatmaps, rec.id, thumb.shape[:2], down, slide_mpp, card)
    return AuditItem(rec.id, thumb, slide_mpp * down, down, rec.tumor, _meta(rec), None, heat)


def _heat_from_store(
    directory: Path,
    slide_id: str,
    shape: tuple[int, int],
    down: float,
    slide_mpp: float,
    card: ModelCard | None,
) -> Heat | None:
    from pathxai.store import HeatmapStore
    from pathxai.store.heatmap import final_path

    path = final_path(directory, slide_id)
    if not path.is_file():
        raise AuditError(
            f"no heatmap store for slide {slide_id!r} in {directory}",
            path=path,
            hint="run 'pathxai heatmap' for every slide of the manifest, or drop --heatmaps",
        )
    with HeatmapStore.open(path) as st:
        a = st.attrs
        if (
            card is not None
            and a.get("model_sha256")
            and card.weights_sha256
            and a["model_sha256"] != card.weights_sha256
        ):
            raise AuditError(
                "heatmap store was made with another model than the one audited",
                path=path,
                hint="pass the same --model as 'pathxai heatmap' used",
            )
        level = 0
        while level < st.levels and max(st.level_shape(level)) > 2 * max(shape):
            level += 1
        canvas = np.nan_to_num(st.relevance(level)).astype(np.float32)
        c_l0 = st.l0_per_pixel(level)
        probs_all = st.probabilities
        tidx = int(a.get("target_class", card.tumour_index if card else 1))
        probs = probs_all[:, tidx] if probs_all.ndim == 2 and probs_all.shape[1] > tidx else probs_all[:, -1]
        coords = st.coords
        tissue = st.tissue
        small = st.tile_relevance()
        size_l0 = float(a["size"]) * float(a["mpp"]) / float(a.get("slide_mpp", slide_mpp))
    # canvas -> thumbnail grid (both start at level-0 origin)
    h, w = shape
    ys = np.clip((np.arange(h) * down / c_l0).astype(int), 0, canvas.shape[0] - 1)
    xs = np.clip((np.arange(w) * down / c_l0).astype(int), 0, canvas.shape[1] - 1)
    rel = canvas[np.ix_(ys, xs)] * (down / c_l0) ** 2
    ok = np.isfinite(probs)
    size_px = max(1, round(size_l0 / down))
    patches = tuple(
        Patch(int(c[1] / down), int(c[0] / down), size_px, float(p), np.asarray(s, np.float32))
        for c, p, s, good in zip(coords, probs, small, ok, strict=True)
        if good
    )
    use = ok & (tissue >= 0.3)
    prob = (
        float(np.nanmean(probs[use])) if use.any() else float(np.nanmean(probs)) if ok.any() else float("nan")
    )
    return Heat(rel.astype(np.float32), prob, patches, str(a.get("method", "lrp")))


def _load_model(model: ModelSpec) -> tuple[torch.nn.Module | None, ModelCard | None, str]:
    if model is None:
        return None, None, ""
    if isinstance(model, tuple):
        net, card = model
        net.eval()
        return net, card, sha256_bytes(state_dict_bytes(net))
    net, card = load_model_with_card(model)
    return net, card, card.weights_sha256


def build_items(
    manifest: Manifest,
    data_root: Path,
    net: torch.nn.Module | None,
    card: ModelCard | None,
    model_sha: str,
    heatmaps: Path | None,
    cache: Path | None,
    progress: bool = True,
) -> tuple[list[AuditItem], str]:
    """Read every manifest row into an :class:`AuditItem` (with heatmaps when a model/store is available).

    Returns
    -------
    tuple[list[AuditItem], str]
        The items and the cohort kind (``image`` or ``slide``).
    """
    from pathxai.explain import Explainer

    kind = "image" if _is_image_cohort(manifest) else "slide"
    items: list[AuditItem] = []
    explainer = None
    if kind == "image" and net is not None and card is not None:
        explainer = Explainer(net, "lrp", target_class=card.tumour_index, batch_size=64)
    mpp = card.mpp if card is not None else DEFAULT_ANALYSIS_MPP
    key = json.dumps([model_sha, "lrp", card.input_size if card else 0, mpp, SPRAY_SIDE])
    try:
        bar = tqdm(manifest.records, desc="audit: reading + explaining", unit=kind, disable=not progress)
        for rec in bar:
            try:
                if kind == "image":
                    items.append(_image_item(rec, data_root, mpp, explainer, card, cache, key))
                else:
                    items.append(_slide_item(rec, data_root, heatmaps, card))
            except PathXAIError:
                raise
            except (OSError, ValueError) as exc:
                raise AuditError(f"line {rec.line}: cannot read {rec.path!r}: {exc}") from exc
    finally:
        if explainer is not None:
            explainer.close()
    return items, kind


def _predictor(net: torch.nn.Module, card: ModelCard) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    size = card.input_size

    def predict(images: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for img in images:
                work = _pad_to(img, size)
                pos = [
                    (y, x)
                    for y in _starts(work.shape[0], size, size)
                    for x in _starts(work.shape[1], size, size)
                ]
                pix = np.stack([work[y : y + size, x : x + size] for y, x in pos])
                p = torch.softmax(net(preprocess(pix, card)), dim=1)[:, card.tumour_index].numpy()
                tissue = np.asarray([tissue_fraction(q) for q in pix])
                use = tissue >= 0.3
                out.append(float(p[use].mean() if use.any() else p.mean()))
        return np.asarray(out)

    return predict


def _seen_in_training(items: Sequence[AuditItem], card: ModelCard | None) -> set[str]:
    if card is None:
        return set()
    pats = set(card.training.get("train_patients", []) or [])
    return {it.id for it in items if (it.meta.get("patient") or it.id) in pats}


def audit(
    manifest: str | Path,
    data_root: str | Path | None = None,
    model: ModelSpec = "default",
    heatmaps: str | Path | None = None,
    out: str | Path = "audit",
    config: str | Path | Thresholds | None = None,
    reference: str | Path | None = None,
    progress: bool = True,
) -> AuditReport:
    """Audit a cohort for dataset-wide, class-correlated and sampling biases; write the report.

    Parameters
    ----------
    manifest
        CSV manifest of images or slides (``path``, ``label``/``tumor``; ``patient``, ``site``,
        ``scanner``, ``split``, ``mpp``, ``mask_path``, ``grade`` are used when present).
    data_root
        Directory the manifest paths are relative to (default: the manifest's folder).
    model
        ``"default"``, a model directory, ``(module, card)``, or ``None`` (only model-free checks).
    heatmaps
        Directory of ``<slide_id>.h5`` heatmap stores (slide cohorts).
    out
        Output directory: ``report.json``, ``report.html``, ``findings.geojson``, ``figures/``,
        ``thumbs/``, ``cache/``.
    config
        Thresholds JSON file (or a :class:`Thresholds`); defaults otherwise.
    reference
        Reference H&E image for the stain-normalisation sensitivity test (optional).
    progress
        Show progress bars.

    Returns
    -------
    AuditReport

    Raises
    ------
    AuditError, ManifestError, ModelError, StoreError
        For unusable inputs, with what to do.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    th = (
        config if isinstance(config, Thresholds) else Thresholds.from_json(config) if config else Thresholds()
    )
    man = read_manifest(manifest)
    root = Path(data_root) if data_root is not None else man.path.parent
    if not root.is_dir():
        raise AuditError(f"data root {root} is not a directory", hint="pass --data-root DIR")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    net, card, model_sha = _load_model(model)
    heat_dir = Path(heatmaps) if heatmaps is not None else None
    if heat_dir is not None and not heat_dir.is_dir():
        raise AuditError(
            f"heatmap directory {heat_dir} not found", hint="pass the --out of 'pathxai heatmap'"
        )
    torch.set_num_threads(max(1, torch.get_num_threads()))
    items, kind = build_items(man, root, net, card, model_sha, heat_dir, out_dir / "cache", progress)
    timings["items"] = time.perf_counter() - t0
    notes: list[str] = []
    if kind == "image" and any(it.mask is not None for it in items) and _is_glas(man):
        notes.append(GLAS_MASK_NOTE)
    if kind == "slide" and heat_dir is None:
        notes.append(
            "No --heatmaps given for this slide cohort: relevance-based checks (relevance on artifacts, "
            "labels, per-group performance, SpRAy) were skipped. Run 'pathxai heatmap' first."
        )
    with_heat = [it for it in items if it.heat is not None]
    findings: list[BiasFinding] = []
    stages = tqdm(total=6, desc="audit: checks", unit="check", disable=not progress)
    t = time.perf_counter()
    st_stats = stain.compute(items, th)
    findings += stain.check(items, th, st_stats)
    sens_table: dict[str, object] = {}
    if net is not None and card is not None and kind == "image":
        ref = read_rgb(reference) if reference is not None else None
        f, sens_table = stain.check_sensitivity(items, _predictor(net, card), ref, th)
        findings += f
    timings["stain"] = time.perf_counter() - t
    stages.update()
    t = time.perf_counter()
    art_masks = {it.id: artifacts.detect(it.image, it.mpp) for it in items}
    art_stats = artifacts.compute(items, art_masks)
    findings += artifacts.check(items, th, art_stats)
    timings["artifacts"] = time.perf_counter() - t
    stages.update()
    t = time.perf_counter()
    mask_kind = "gland outlines (not tumour)" if GLAS_MASK_NOTE in notes else "annotations"
    findings += labels.check(items, th, mask_kind=mask_kind)
    timings["labels"] = time.perf_counter() - t
    stages.update()
    t = time.perf_counter()
    seen = _seen_in_training(items, card)
    if seen:
        notes.append(
            f"{len(seen)} items belong to patients the model was trained on; per-group performance "
            "excludes them (other checks use all items)."
        )
    findings += sampling.check(items, th, seen_in_training=seen)
    timings["sampling"] = time.perf_counter() - t
    stages.update()
    t = time.perf_counter()
    spray_res = spray.compute(items, art_masks, th) if with_heat else None
    findings += spray.check(items, th, spray_res) if spray_res is not None else []
    timings["spray"] = time.perf_counter() - t
    stages.update()
    t = time.perf_counter()
    findings = list(sort_findings(findings))
    thumbs = write_thumbnails(items, findings, out_dir, art_masks)
    findings = [
        dataclasses.replace(f, thumbnails=tuple(thumbs.get(i, "") for i in f.items if i in thumbs)[:12])
        for f in findings
    ]
    figures = make_figures(items, findings, st_stats, art_stats, spray_res, out_dir, sens_table)
    timings["figures"] = time.perf_counter() - t
    stages.update()
    stages.close()
    cohort = {
        "manifest": str(man.path),
        "manifest_sha256": man.sha256,
        "data_root": str(root),
        "kind": kind,
        "n_items": len(items),
        "n_with_heatmaps": len(with_heat),
        "columns": list(man.columns),
        "analysis_mpp": float(np.median([it.mpp for it in items])) if items else None,
    }
    model_info: dict[str, Any] = {}
    if card is not None:
        model_info = {
            "source": str(model) if not isinstance(model, tuple) else "in-memory",
            "arch": card.arch,
            "weights_sha256": model_sha,
            "mpp": card.mpp,
            "input_size": card.input_size,
            "classes": list(card.classes),
            "tumour_index": card.tumour_index,
            "method": "lrp",
            "train_patients": list(card.training.get("train_patients", []) or []),
        }
    timings["total"] = time.perf_counter() - t0
    report = AuditReport(
        findings=tuple(findings),
        cohort=cohort,
        model=model_info,
        thresholds=th,
        tables={
            "counts": sampling.counts_table(items),
            "stain": st_stats.table(),
            "stain_probes": {k: v.to_dict() for k, v in st_stats.probes.items()},
            "artifacts": art_stats.table(),
            "relevance": labels.relevance_table(items),
            "stain_sensitivity": sens_table,
            "spray": spray_res.summary() if spray_res is not None else [],
            "items": [
                {
                    "id": it.id,
                    "label": None if it.tumor is None else ("tumour" if it.tumor else "non-tumour"),
                    "patient": it.meta.get("patient"),
                    "split": it.meta.get("split"),
                    "probability": None if it.heat is None else it.heat.probability,
                    "l0_size": [
                        round(it.image.shape[1] * it.l0_per_px),
                        round(it.image.shape[0] * it.l0_per_px),
                    ],
                }
                for it in items
            ],
        },
        figures=figures,
        notes=tuple(notes),
        timings=timings,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        version=__version__,
    )
    write_report(report, out_dir)
    return report
