"""Stitch per-tile maps into a slide-level canvas (pure numpy).

Tiles live on an integer grid at the target mpp (the ``m_`` frame). A canvas has
``canvas_downsample = k`` target pixels per canvas pixel (the ``c_`` frame, overlay mpp
``= mpp * k``). With tile size and stride divisible by ``k`` every tile covers a whole number of
canvas pixels starting at ``c = m / k``, so stitching is exact: no interpolation, no
half-pixel shifts.

Overlapping tiles are merged as a weighted mean: each tile contributes ``weight * value`` to an
accumulator and ``weight`` to a count; the canvas is ``accumulator / count`` and NaN where no tile
(count 0) covered. Weights are uniform (``"count"``) or a separable, strictly positive window
(``"hann"``, ``"triangle"``) that trusts tile centres more than tile borders.

Canvases of huge slides never need to exist in memory at once: :class:`Stitcher` accumulates a
horizontal band of rows, and :func:`downsample2` works band by band when bands start at rows that
are multiples of ``2**levels``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

__all__ = [
    "WINDOWS",
    "Stitcher",
    "downsample2",
    "level_shape",
    "n_levels",
    "pool_tiles",
    "pyramid",
    "stitch",
    "tile_window",
]

#: Names of the available weighting windows.
WINDOWS = ("count", "hann", "triangle")


def tile_window(n: int, kind: str = "count") -> np.ndarray:
    """Return the ``(n, n)`` float64 weights of one tile.

    Parameters
    ----------
    n
        Tile side in canvas pixels.
    kind
        ``"count"`` (all ones), ``"hann"`` (a sine window ``sin(pi (i + 0.5) / n)``, the square root of
        a Hann window sampled at pixel centres; positive everywhere so border pixels of a slide keep a
        value) or ``"triangle"`` (``1 - |2 (i + 0.5) / n - 1|``, also positive everywhere).

    Returns
    -------
    np.ndarray
        Separable weights, the outer product of a 1-D window with itself.
    """
    if n <= 0:
        raise ValueError(f"window size must be positive, got {n}")
    centres = (np.arange(n, dtype=np.float64) + 0.5) / n
    if kind == "count":
        w = np.ones(n)
    elif kind == "hann":
        w = np.sin(np.pi * centres)
    elif kind == "triangle":
        w = 1.0 - np.abs(2.0 * centres - 1.0)
    else:
        raise ValueError(f"unknown window {kind!r}; choose one of {WINDOWS}")
    return np.outer(w, w)


def pool_tiles(maps: np.ndarray, canvas_downsample: int, reduce: str = "sum") -> np.ndarray:
    """Pool ``(B, s, s)`` tile maps by ``k`` x ``k`` blocks to ``(B, s/k, s/k)``, ``k = canvas_downsample``.

    Parameters
    ----------
    maps
        Per-tile maps at the target mpp.
    canvas_downsample
        Tile pixels per canvas pixel (must divide the tile side).
    reduce
        ``"sum"`` keeps relevance mass (a canvas pixel holds the relevance of its ``k x k`` pixels);
        ``"mean"`` keeps intensities.

    Returns
    -------
    np.ndarray
        float32 pooled maps.
    """
    if maps.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {maps.shape}")
    b, h, w = maps.shape
    k = canvas_downsample
    if k <= 0 or h % k or w % k:
        raise ValueError(f"canvas downsample {k} must be positive and divide the tile size {h}x{w}")
    if reduce not in ("sum", "mean"):
        raise ValueError(f"reduce must be 'sum' or 'mean', got {reduce!r}")
    if k == 1:
        return np.ascontiguousarray(maps, dtype=np.float32)
    blocks = maps.reshape(b, h // k, k, w // k, k).astype(np.float64)
    pooled = blocks.sum(axis=(2, 4)) if reduce == "sum" else blocks.mean(axis=(2, 4))
    return pooled.astype(np.float32)


class Stitcher:
    """Accumulate tile maps into the rows ``[row0, row0 + height)`` of a canvas of width ``width``.

    Parameters
    ----------
    width
        Canvas width in canvas pixels.
    height
        Rows held by this stitcher (the whole canvas height, or a band).
    tile
        Tile side in canvas pixels.
    window
        A name from :data:`WINDOWS`.
    row0
        Canvas row of this stitcher's first row.
    """

    def __init__(self, width: int, height: int, tile: int, window: str = "count", row0: int = 0) -> None:
        if width < 0 or height < 0:
            raise ValueError(f"canvas size must be non-negative, got {width}x{height}")
        self.width, self.height, self.row0, self.tile = width, height, row0, tile
        self.weights = tile_window(tile, window)
        self.acc = np.zeros((height, width), dtype=np.float64)
        self.count = np.zeros((height, width), dtype=np.float64)

    def add(self, c_x: int, c_y: int, value: np.ndarray | float) -> None:
        """Add one tile whose top-left canvas pixel is ``(c_x, c_y)`` (clipped to this band).

        Parameters
        ----------
        c_x, c_y
            Tile origin in canvas pixels (whole canvas frame, not band frame).
        value
            ``(tile, tile)`` map, or a scalar for a constant tile (e.g. its probability).
        """
        t = self.tile
        y0, y1 = max(c_y, self.row0), min(c_y + t, self.row0 + self.height)
        x0, x1 = max(c_x, 0), min(c_x + t, self.width)
        if y0 >= y1 or x0 >= x1:
            return
        wy, wx = slice(y0 - c_y, y1 - c_y), slice(x0 - c_x, x1 - c_x)
        w = self.weights[wy, wx]
        dst = (slice(y0 - self.row0, y1 - self.row0), slice(x0, x1))
        if np.isscalar(value) or np.ndim(value) == 0:
            self.acc[dst] += w * float(value)  # type: ignore[arg-type]
        else:
            arr = np.asarray(value)
            if arr.shape != (t, t):
                raise ValueError(f"tile map must be ({t}, {t}), got {arr.shape}")
            self.acc[dst] += w * arr[wy, wx]
        self.count[dst] += w

    def add_many(self, c_xy: np.ndarray, values: np.ndarray | Sequence[float]) -> None:
        """Add tiles ``values[i]`` at ``c_xy[i]`` (maps ``(N, t, t)`` or scalars ``(N,)``)."""
        for (cx, cy), v in zip(np.asarray(c_xy).reshape(-1, 2), values, strict=True):
            self.add(int(cx), int(cy), v)

    def result(self, dtype: type = np.float32) -> tuple[np.ndarray, np.ndarray]:
        """Return ``(canvas, count)``: the weighted mean (NaN where count is 0) and the weights."""
        canvas = np.full(self.acc.shape, np.nan, dtype=np.float64)
        np.divide(self.acc, self.count, out=canvas, where=self.count > 0)
        return canvas.astype(dtype), self.count.astype(np.float32)


def stitch(
    maps: np.ndarray | Sequence[float],
    c_xy: np.ndarray,
    shape: tuple[int, int],
    tile: int,
    window: str = "count",
) -> tuple[np.ndarray, np.ndarray]:
    """Stitch tiles into a whole canvas in memory.

    Parameters
    ----------
    maps
        ``(N, tile, tile)`` maps, or ``(N,)`` scalars (one constant value per tile).
    c_xy
        ``(N, 2)`` integer tile origins ``(c_x, c_y)`` in canvas pixels.
    shape
        Canvas ``(height, width)``.
    tile
        Tile side in canvas pixels.
    window
        Weighting window, see :func:`tile_window`.

    Returns
    -------
    tuple[np.ndarray, np.ndarray]
        float32 canvas (NaN where uncovered) and float32 weights.
    """
    s = Stitcher(shape[1], shape[0], tile, window)
    s.add_many(c_xy, maps)  # type: ignore[arg-type]
    return s.result()


def downsample2(canvas: np.ndarray) -> np.ndarray:
    """Halve a canvas with a NaN-aware 2 x 2 mean (NaN only where all four pixels are NaN).

    Odd sizes are padded with NaN, so the result has ``ceil(h / 2) x ceil(w / 2)`` pixels.
    """
    h, w = canvas.shape
    ph, pw = h + (h % 2), w + (w % 2)
    padded = np.full((ph, pw), np.nan, dtype=np.float64)
    padded[:h, :w] = canvas
    blocks = padded.reshape(ph // 2, 2, pw // 2, 2)
    valid = ~np.isnan(blocks)
    n = valid.sum(axis=(1, 3))
    total = np.where(valid, blocks, 0.0).sum(axis=(1, 3))
    out = np.full(n.shape, np.nan, dtype=np.float64)
    np.divide(total, n, out=out, where=n > 0)
    return out.astype(canvas.dtype if canvas.dtype.kind == "f" else np.float32)


def n_levels(shape: tuple[int, int], min_side: int = 256) -> int:
    """Number of 2x levels after level 0 until the longer side is at most ``min_side``."""
    side = max(shape)
    levels = 0
    while side > min_side:
        side = math.ceil(side / 2)
        levels += 1
    return levels


def level_shape(shape: tuple[int, int], level: int) -> tuple[int, int]:
    """Shape of pyramid level ``level`` of a canvas of ``shape`` (ceil halving)."""
    h, w = shape
    for _ in range(level):
        h, w = math.ceil(h / 2), math.ceil(w / 2)
    return h, w


def pyramid(canvas: np.ndarray, levels: int | None = None, min_side: int = 256) -> list[np.ndarray]:
    """Return ``[canvas, level 1, ..., level L]`` by repeated :func:`downsample2`.

    Parameters
    ----------
    canvas
        Level 0.
    levels
        Number of downsampled levels; default :func:`n_levels` of the canvas.
    min_side
        Used when ``levels`` is None.
    """
    levels = n_levels(canvas.shape, min_side) if levels is None else levels
    out = [canvas]
    for _ in range(levels):
        out.append(downsample2(out[-1]))
    return out
