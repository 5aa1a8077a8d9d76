"""The slide-level canvas of a heatmap store: its tiles stitched band by band, with pyramid levels."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from pathxai.geometry import Grid
from pathxai.stitch import Stitcher, downsample2, n_levels
from pathxai.store.heatmap import HeatmapStore

__all__ = ["canvas_bands", "canvas_shape", "finalize_canvas"]


def canvas_shape(grid: Grid, canvas_downsample: int) -> tuple[int, int]:
    """``(rows, cols)`` of the overlay canvas: the grid's extent in canvas pixels."""
    k = canvas_downsample
    return max(1, math.ceil(grid.m_height / k)), max(1, math.ceil(grid.m_width / k))


def canvas_bands(
    store: HeatmapStore,
    canvas_downsample: int,
    canvas_shape: tuple[int, int],
    levels: int,
    window: str,
    tumour_index: int,
    vmax_sample: list[np.ndarray],
    band_pixels: int = 1 << 22,
) -> Iterator[tuple[str, int, int, np.ndarray]]:
    """Stitch the store's tiles band by band (memory: one band) and yield every pyramid level's rows.

    Parameters
    ----------
    store
        A store whose tiles are all computed.
    canvas_downsample
        Tile pixels per canvas pixel.
    canvas_shape
        ``(rows, cols)`` of level 0 (:func:`canvas_shape`).
    levels
        Number of downsampled pyramid levels after level 0.
    window
        Overlap weighting of :class:`~pathxai.stitch.Stitcher`.
    tumour_index
        Class whose probability is stitched.
    vmax_sample
        Receives a subsample of the absolute relevance of each band, for the colour scale.
    band_pixels
        Canvas pixels per band (bounds memory).

    Yields
    ------
    tuple[str, int, int, np.ndarray]
        ``(name, level, first row, rows)`` for ``"relevance"`` (unless the store is probability-only),
        ``"probability"`` (every level) and ``"count"`` (level 0).
    """
    h, w = canvas_shape
    k = canvas_downsample
    m_xy = store.m_coords
    c_x, c_y = m_xy[:, 0] // k, m_xy[:, 1] // k
    tile_c = int(store.attrs["size"]) // k
    ok = ~store.failed
    with_relevance = store.has_relevance
    probs = store.probabilities[:, tumour_index] if store.n_tiles else np.zeros(0, np.float32)
    step = 2**levels
    band = max(step, (max(tile_c, band_pixels // max(w, 1)) // step) * step)
    n_valid_est = max(1, int(ok.sum()) * tile_c * tile_c)
    stride_sample = max(1, n_valid_est // 2_000_000)
    for r0 in range(0, h, band):
        rows = min(band, h - r0)
        i0 = int(np.searchsorted(c_y, r0 - tile_c, side="right"))
        i1 = int(np.searchsorted(c_y, r0 + rows, side="left"))
        prob_st = Stitcher(w, rows, tile_c, window, row0=r0)
        for j in range(i0, i1):
            if ok[j]:
                prob_st.add(int(c_x[j]), int(c_y[j]), float(probs[j]))
        prob, count = prob_st.result()
        rel = (
            _relevance_band(store, i0, i1, ok, c_x, c_y, (w, rows, r0, tile_c), window)
            if with_relevance
            else None
        )
        if rel is not None:
            finite = rel[np.isfinite(rel)]
            if finite.size:
                vmax_sample.append(np.abs(finite[::stride_sample]))
            yield "relevance", 0, r0, rel
        yield "probability", 0, r0, prob
        yield "count", 0, r0, count
        for level in range(1, levels + 1):
            prob = downsample2(prob)
            if rel is not None:
                rel = downsample2(rel)
                yield "relevance", level, r0 >> level, rel
            yield "probability", level, r0 >> level, prob


def _relevance_band(
    store: HeatmapStore,
    i0: int,
    i1: int,
    ok: np.ndarray,
    c_x: np.ndarray,
    c_y: np.ndarray,
    band: tuple[int, int, int, int],
    window: str,
) -> np.ndarray:
    """The relevance of tiles ``i0 .. i1`` stitched into one band ``(width, rows, first row, tile side)``."""
    w, rows, r0, tile_c = band
    maps = store.tile_relevance(slice(i0, i1)) if i1 > i0 else np.zeros((0, tile_c, tile_c), np.float32)
    rel_st = Stitcher(w, rows, tile_c, window, row0=r0)
    for j in range(i0, i1):
        if ok[j]:
            rel_st.add(int(c_x[j]), int(c_y[j]), maps[j - i0])
    return rel_st.result()[0]


def finalize_canvas(
    store: HeatmapStore,
    target: Path,
    grid: Grid,
    canvas_downsample: int,
    window: str,
    tumour_index: int,
    tissue_fraction: float,
    tile_chunk: int,
    extra_attrs: Mapping[str, Any] | None = None,
) -> Path:
    """Stitch a store whose tiles are all done and write it, complete with its pyramid, to ``target``.

    The complete store also records ``relevance_vmax`` (a robust maximum of the absolute relevance,
    for the colour scale; not in a probability-only store), the slide's ``tissue_fraction`` and
    ``extra_attrs`` (e.g. the run's trust summary); see :meth:`~pathxai.store.heatmap.HeatmapStore.finalize`.
    """
    shape = canvas_shape(grid, canvas_downsample)
    levels = n_levels(shape, 256)
    samples: list[np.ndarray] = []
    bands = canvas_bands(store, canvas_downsample, shape, levels, window, tumour_index, samples)

    def final_attrs() -> dict[str, Any]:
        from pathxai.render.heatmap import robust_vmax

        extra = dict(extra_attrs or {})
        if not store.has_relevance:
            return {"tissue_fraction": tissue_fraction, **extra}
        vals = np.concatenate(samples) if samples else np.zeros(0, np.float32)
        return {"relevance_vmax": robust_vmax(vals), "tissue_fraction": tissue_fraction, **extra}

    return store.finalize(target, shape, levels, bands, final_attrs, tile_chunk=tile_chunk)
