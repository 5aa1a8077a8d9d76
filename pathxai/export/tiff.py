"""A tiled, pyramidal RGB TIFF that OpenSlide (generic-tiff) and QuPath open.

Levels are successive full-resolution IFDs, each tiled with the same tile size, level 0 first and
each next level half the size (subfile type 1 = reduced image), with TIFF resolution tags in pixels
per centimetre so readers report the overlay's µm/px. Tiles are produced on demand by a callback, so
a gigapixel overlay is written with memory bounded by one tile.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import tifffile

from pathxai.atomic import atomic_path

__all__ = ["TileFn", "write_pyramid_tiff"]

#: ``tile_fn(level, y, x, h, w) -> (h, w, 3) uint8`` pixels of a level's window.
TileFn = Callable[[int, int, int, int, int], np.ndarray]


def write_pyramid_tiff(
    path: str | Path,
    shapes: Sequence[tuple[int, int]],
    tile_fn: TileFn,
    mpp: float,
    tile: int = 256,
    compression: str = "jpeg",
    quality: int = 90,
    description: str = "",
) -> Path:
    """Write a pyramidal tiled RGB TIFF atomically.

    Parameters
    ----------
    path
        Output ``.tif``.
    shapes
        ``(height, width)`` of each level, level 0 first, each next level half the previous.
    tile_fn
        Returns the pixels of ``level`` at rows ``y..y+h`` and columns ``x..x+w`` (``h, w <= tile``).
    mpp
        µm per pixel of level 0 (level ``l`` is ``mpp * 2**l``).
    tile
        Tile side (a multiple of 16).
    compression
        ``"jpeg"``, ``"zlib"`` (deflate) or ``"none"``.
    quality
        JPEG quality.
    description
        ImageDescription of level 0.

    Returns
    -------
    Path
        ``path``.
    """
    # TIFF's ImageDescription is 7-bit ASCII: a slide named 'CMU small é 日本' is written escaped
    # with backslash escapes, not refused.
    ascii_description = description.encode("ascii", "backslashreplace").decode("ascii")
    if tile % 16:
        raise ValueError(f"tile must be a multiple of 16, got {tile}")
    if not shapes or any(h <= 0 or w <= 0 for h, w in shapes):
        raise ValueError(f"every level needs a positive size, got {list(shapes)}")
    path = Path(path)
    res = 1e4 / mpp  # pixels per centimetre
    comp: str | None = None if compression == "none" else compression
    comp_args = {"level": quality} if compression == "jpeg" else None
    h0, w0 = shapes[0]
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp, bigtiff=h0 * w0 * 3 > 2**31) as tif:
        for level, (h, w) in enumerate(shapes):

            def tiles(level: int = level, h: int = h, w: int = w) -> Iterator[np.ndarray]:
                for y in range(0, h, tile):
                    for x in range(0, w, tile):
                        th, tw = min(tile, h - y), min(tile, w - x)
                        pixels = tile_fn(level, y, x, th, tw)
                        if pixels.shape != (th, tw, 3) or pixels.dtype != np.uint8:
                            raise ValueError(
                                f"tile_fn returned {pixels.dtype} {pixels.shape}, expected uint8 {(th, tw, 3)}"
                            )
                        if (th, tw) != (tile, tile):
                            full = np.full((tile, tile, 3), 255, dtype=np.uint8)
                            full[:th, :tw] = pixels
                            pixels = full
                        yield pixels

            scale = 2**level
            tif.write(
                tiles(),
                shape=(h, w, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression=comp,
                compressionargs=comp_args,
                resolution=(res / scale, res / scale),
                resolutionunit="CENTIMETER",
                subfiletype=0 if level == 0 else 1,
                description=ascii_description if level == 0 else None,
                metadata=None,
            )
    return path
