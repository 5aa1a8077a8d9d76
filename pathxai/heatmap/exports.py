"""A finished heatmap store's exports: pyramidal TIFF overlay, PNG overview and QuPath GeoJSON.

A probability-only store (method ``"none"``) gets the same three files: the TIFF overlays the tumour
probability instead of the relevance, the PNG has the probability panel only, and the GeoJSON has
the ``Tumor`` regions only.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pathxai.errors import SlideError
from pathxai.slide import BaseSlide
from pathxai.store.heatmap import HeatmapStore

__all__ = ["write_exports"]


def _read_or_white(slide: BaseSlide, x: int, y: int, w: int, h: int, out_w: int, out_h: int) -> np.ndarray:
    """Background pixels for an export; an unreadable region (corrupt tile) is left white."""
    try:
        return slide.read_l0_region(x, y, w, h, out_w, out_h)
    except SlideError:
        return np.full((out_h, out_w, 3), 255, dtype=np.uint8)


def write_exports(
    store_path: Path,
    slide: BaseSlide,
    paths: dict[str, Path],
    exports: Sequence[str],
    opacity: float,
    probability_threshold: float,
) -> dict[str, float]:
    """Write the requested exports of a complete store; return the seconds each took.

    Parameters
    ----------
    store_path
        The finished ``.h5`` store.
    slide
        The open slide, for the overlay's background.
    paths
        Output path per export name (``"tif"``, ``"png"``, ``"geojson"``).
    exports
        Which exports to write.
    opacity
        Opacity of the overlay in the PNG overview.
    probability_threshold
        Tumour probability above which GeoJSON "Tumor" regions are drawn.
    """
    timings: dict[str, float] = {}
    with HeatmapStore.open(store_path) as store:
        levels = store.levels
        # the finest level with at most ~4 M pixels, for the overview and the polygons (bounded cost)
        small = next((lv for lv in range(levels + 1) if math.prod(store.level_shape(lv)) <= 1 << 22), levels)
        if "tif" in exports:
            t0 = time.perf_counter()
            _write_tif(store, slide, paths["tif"])
            timings["tif_s"] = time.perf_counter() - t0
        if "png" in exports:
            t0 = time.perf_counter()
            _write_png(store, slide, paths["png"], small, opacity)
            timings["png_s"] = time.perf_counter() - t0
        if "geojson" in exports:
            t0 = time.perf_counter()
            _write_geojson(store, paths["geojson"], small, probability_threshold)
            timings["geojson_s"] = time.perf_counter() - t0
    return timings


def _write_tif(store: HeatmapStore, slide: BaseSlide, path: Path) -> None:
    """The pyramidal RGB overlay: relevance (else probability) blended over the slide, white where no tile lies."""
    from pathxai.export import write_pyramid_tiff
    from pathxai.render.heatmap import blend, probability_rgba, relevance_rgba

    attrs = store.attrs
    layer = "relevance" if store.has_relevance else "probability"
    vmax = float(attrs["relevance_vmax"]) if store.has_relevance else 1.0
    f0 = store.l0_per_pixel(0)
    shapes = [store.level_shape(lv) for lv in range(store.levels + 1)]

    def tile_fn(level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        rel = store.region(level, x, y, w, h, layer)
        if not np.isfinite(rel).any():  # no tile here: glass, skip reading the slide
            return np.full((h, w, 3), 255, dtype=np.uint8)
        f = f0 * 2**level
        l0x, l0y = round(x * f), round(y * f)
        l0w = max(1, min(round((x + w) * f), slide.dimensions[0]) - l0x)
        l0h = max(1, min(round((y + h) * f), slide.dimensions[1]) - l0y)
        base = np.full((h, w, 3), 255, dtype=np.uint8)
        if l0x < slide.dimensions[0] and l0y < slide.dimensions[1]:
            bw = min(w, max(1, round(l0w / f)))
            bh = min(h, max(1, round(l0h / f)))
            base[:bh, :bw] = _read_or_white(slide, l0x, l0y, l0w, l0h, bw, bh)
        rgba = relevance_rgba(rel, vmax) if layer == "relevance" else probability_rgba(rel)
        return blend(base, rgba, 0.85)

    what = "relevance" if layer == "relevance" else "tumour probability"
    write_pyramid_tiff(
        path,
        shapes,
        tile_fn,
        mpp=float(attrs["overlay_mpp"]),
        description=f"pathxai {attrs['method']} {what} overlay of {attrs['slide_id']}",
    )


def _write_png(store: HeatmapStore, slide: BaseSlide, path: Path, small: int, opacity: float) -> None:
    """The overview picture of pyramid level ``small``: probability and relevance over a thumbnail."""
    from pathxai.export import write_png
    from pathxai.render.heatmap import overview_image

    attrs = store.attrs
    prob_small = store.probability(small)
    rel_small = store.relevance(small) if store.has_relevance else None
    sh, sw = prob_small.shape
    scale = max(1, math.ceil(1024 / max(sh, sw)))
    f = store.l0_per_pixel(small) / scale
    th, tw = sh * scale, sw * scale
    l0w = min(round(tw * f), slide.dimensions[0])
    l0h = min(round(th * f), slide.dimensions[1])
    thumb = np.full((th, tw, 3), 255, dtype=np.uint8)
    bw, bh = max(1, round(l0w / f)), max(1, round(l0h / f))
    thumb[: min(bh, th), : min(bw, tw)] = _read_or_white(slide, 0, 0, l0w, l0h, bw, bh)[:th, :tw]
    title = (
        f"{attrs['slide_id']}  {attrs['method']}  tiles {store.n_tiles} @ {attrs['mpp']:.3g} um/px"
        f"  overlay {attrs['overlay_mpp']:.3g} um/px"
    )
    vmax = float(attrs["relevance_vmax"]) if rel_small is not None else 1.0
    write_png(path, overview_image(thumb, prob_small, rel_small, vmax, opacity, title))


def _write_geojson(store: HeatmapStore, path: Path, small: int, probability_threshold: float) -> None:
    """QuPath polygons of pyramid level ``small``: high tumour probability and high relevance (if any)."""
    from pathxai.export import mask_features, write_geojson

    attrs = store.attrs
    prob_small = store.probability(small)
    fl = store.l0_per_pixel(small)
    prob_mask = np.nan_to_num(prob_small, nan=0.0) >= probability_threshold
    common = {"slide_id": attrs["slide_id"], "method": attrs["method"]}
    feats = mask_features(prob_mask, fl, "Tumor", (200, 0, 0), values=prob_small, properties=common)
    thr = np.inf
    if store.has_relevance:
        from scipy import ndimage

        rel_small = store.relevance(small)
        smooth = ndimage.gaussian_filter(np.nan_to_num(rel_small, nan=0.0), sigma=1.0)
        pos = smooth[smooth > 0]
        thr = 0.5 * float(np.percentile(pos, 99.5)) if pos.size else np.inf
        rel_mask = smooth >= thr
        feats += mask_features(
            rel_mask, fl, "High relevance", (255, 128, 0), values=rel_small, properties=common
        )
    write_geojson(
        path,
        feats,
        properties={
            "slide": attrs["slide"],
            "coordinates": "level-0 pixels",
            "probability_threshold": probability_threshold,
            "relevance_threshold": thr if np.isfinite(thr) else None,
        },
    )
