"""Generated pyramidal TIFF slides for tests and benchmarks (OpenSlide reads them as generic TIFF).

Tiles are produced procedurally, so a 40k x 40k slide is written with bounded memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import tifffile

#: Colours of the synthetic stain: haematoxylin-ish purple and eosin-ish pink.
_PURPLE = np.array([110, 60, 150], dtype=np.float32)
_PINK = np.array([235, 150, 190], dtype=np.float32)


def _tile_pixels(
    x0: float, y0: float, tile: int, downsample: float, width: int, height: int, blobs: np.ndarray
) -> np.ndarray:
    """Pixels of one tile: white glass with elliptic tissue blobs textured with stripes."""
    xs = x0 + (np.arange(tile, dtype=np.float32) + 0.5) * downsample
    ys = y0 + (np.arange(tile, dtype=np.float32) + 0.5) * downsample
    gx, gy = np.meshgrid(xs, ys)
    inside = np.zeros((tile, tile), dtype=bool)
    for cx, cy, rx, ry in blobs:
        inside |= ((gx - cx) / rx) ** 2 + ((gy - cy) / ry) ** 2 <= 1.0
    inside &= (gx < width) & (gy < height)
    texture = 0.5 + 0.5 * np.sin(gx / 23.0) * np.cos(gy / 17.0)
    rgb = texture[..., None] * _PURPLE + (1 - texture[..., None]) * _PINK
    out = np.full((tile, tile, 3), 255, dtype=np.uint8)
    out[inside] = rgb[inside].astype(np.uint8)
    return out


def write_synthetic_slide(
    path: str | Path,
    width: int,
    height: int,
    mpp: float = 0.5,
    levels: int = 3,
    tile: int = 256,
    blobs: list[tuple[float, float, float, float]] | None = None,
    compression: str = "jpeg",
) -> Path:
    """Write a tiled, pyramidal RGB TIFF with a known resolution and tissue blobs.

    Parameters
    ----------
    path
        Output ``.tiff``.
    width, height
        Level-0 size in pixels.
    mpp
        Level-0 µm per pixel (stored as TIFF resolution in pixels per centimetre).
    levels
        Pyramid levels, each half the previous size.
    tile
        TIFF tile side (a multiple of 16).
    blobs
        Tissue ellipses ``(cx, cy, rx, ry)`` in level-0 pixels; default one centred blob
        covering about 40 % of the slide.
    compression
        TIFF compression (``"jpeg"``, ``"zlib"``, ``"none"``).

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    if blobs is None:
        blobs = [(width / 2, height / 2, width * 0.36, height * 0.36)]
    blob_arr = np.asarray(blobs, dtype=np.float32).reshape(-1, 4)
    res = 1e4 / mpp  # pixels per centimetre
    comp = None if compression == "none" else compression
    with tifffile.TiffWriter(path, bigtiff=width * height * 3 > 2**31) as tif:
        for level in range(levels):
            d = 2**level
            lw, lh = max(1, width // d), max(1, height // d)

            def tiles(lw: int = lw, lh: int = lh, d: int = d) -> Iterator[np.ndarray]:
                for ty in range(0, lh, tile):
                    for tx in range(0, lw, tile):
                        yield _tile_pixels(tx * d, ty * d, tile, d, width, height, blob_arr)

            tif.write(
                tiles(),
                shape=(lh, lw, 3),
                dtype=np.uint8,
                tile=(tile, tile),
                photometric="rgb",
                compression=comp,
                resolution=(res / d, res / d),
                resolutionunit="CENTIMETER",
                subfiletype=0 if level == 0 else 1,
                metadata=None,
            )
    return path
