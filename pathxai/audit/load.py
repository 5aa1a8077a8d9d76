"""Read a cohort manifest into :class:`~pathxai.audit.cohort.AuditItem` objects (what the checks look at).

Image cohorts (a manifest of image files, e.g. GlaS): each image is rescaled to the model's µm/px
and explained tile by tile (:func:`~pathxai.audit.heat.heat_of_image`); heatmaps are cached as
``.npz`` (keyed by the model's sha256 and the tiling), so a re-run only redoes the checks. Slide
cohorts (OpenSlide files): a thumbnail per slide, with the heat of its ``pathxai heatmap`` store
when a directory of stores is given.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pathxai.audit.cohort import AuditItem
from pathxai.audit.heat import SPRAY_SIDE, TILING, heat_from_npz, heat_from_store, heat_of_image, heat_to_npz
from pathxai.errors import AuditError, ManifestError, PathXAIError
from pathxai.manifest import MPP_COLUMNS, Manifest, ManifestRecord, resolve
from pathxai.model.card import ModelCard
from pathxai.model.datasets import read_mask, read_rgb, refuse_too_small, rescale_to_mpp

__all__ = ["DEFAULT_ANALYSIS_MPP", "build_items", "is_glas", "is_image_cohort"]

#: Resolution of the analysis image when no model is given (image cohorts) / of slide thumbnails.
DEFAULT_ANALYSIS_MPP = 1.24
SLIDE_THUMB_MPP = 4.0
#: Without a model, images are refused below half this side at the analysis mpp, as with a model's input.
MODEL_FREE_INPUT = 64
SLIDE_THUMB_MAX_SIDE = 3000


def _safe(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._")
    return s[:80] + "-" + hashlib.sha1(name.encode()).hexdigest()[:8] if s != name or len(s) > 80 else s


def _meta(rec: ManifestRecord) -> dict[str, str]:
    meta = {k: v for k, v in rec.extra.items() if isinstance(v, str)}
    for k in ("patient", "site", "scanner", "split"):
        v = getattr(rec, k)
        if v:
            meta[k] = v
    if rec.label:
        meta["label"] = rec.label
    return meta


def is_glas(manifest: Manifest) -> bool:
    """GlaS rows: a ``GlaS/`` path or a manifest named after it (its masks are gland outlines)."""
    return "glas" in manifest.path.name.lower() or any(
        "glas" in Path(r.path or "").parts[0].lower() for r in manifest.records if r.path
    )


def is_image_cohort(manifest: Manifest, data_root: Path | None = None) -> bool:
    """Every row a plain image (PNG/JPEG/BMP, or a strip TIFF such as a Kather tile), not a slide."""
    from pathxai.slide import IMAGE_SUFFIXES, is_plain_image

    def plain(rec: ManifestRecord) -> bool:
        if Path(rec.path or "").suffix.lower() in IMAGE_SUFFIXES:
            return True
        if data_root is None or rec.path is None:
            return False
        try:
            return is_plain_image(resolve(rec, data_root))
        except ManifestError:
            return False

    return all(plain(r) for r in manifest.records)


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
            hint=f"add an 'mpp' column (native µm/px of the images; read under any of: {', '.join(MPP_COLUMNS)})",
        )
    full = resolve(rec, data_root)
    img = rescale_to_mpp(read_rgb(full), rec.mpp, mpp)
    try:  # an 8 x 8 px image must not pass as evidence (stain and model checks see almost nothing)
        if card is not None:
            refuse_too_small([img], [rec.id], card.input_size)
        else:
            refuse_too_small([img], [rec.id], MODEL_FREE_INPUT, f"a {MODEL_FREE_INPUT} px analysis tile")
    except ManifestError as exc:
        raise ManifestError(f"line {rec.line}: {exc.message} (at {mpp:g} µm/px)", hint=exc.hint) from None
    mask = read_mask(rec, data_root, img.shape[:2])
    heat = None
    if explainer is not None and card is not None:
        cfile = cache / f"{_safe(rec.id)}.npz" if cache is not None else None
        if cfile is not None and cfile.is_file():
            heat = heat_from_npz(cfile, key)
            if heat is not None and heat.relevance.shape != img.shape[:2]:
                heat = None
        if heat is None:
            heat = heat_of_image(img, explainer, card)
            if cfile is not None:
                heat_to_npz(cfile, heat, key)
    return AuditItem(rec.id, img, mpp, mpp / rec.mpp, rec.tumour, _meta(rec), mask, heat)


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
        heat = heat_from_store(heatmaps, rec.id, thumb.shape[:2], down, slide_mpp, card)
    return AuditItem(rec.id, thumb, slide_mpp * down, down, rec.tumour, _meta(rec), None, heat)


def build_items(
    manifest: Manifest,
    data_root: Path,
    net: Any,
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

    kind = "image" if is_image_cohort(manifest, data_root) else "slide"
    items: list[AuditItem] = []
    explainer = None
    if kind == "image" and net is not None and card is not None:
        explainer = Explainer(net, "lrp", target_class=card.tumour_index, batch_size=64)
    mpp = card.mpp if card is not None else DEFAULT_ANALYSIS_MPP
    key = json.dumps([model_sha, "lrp", card.input_size if card else 0, mpp, SPRAY_SIDE, TILING])
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
