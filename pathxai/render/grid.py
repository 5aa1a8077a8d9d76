"""Draw a tile grid and a tissue mask over a slide thumbnail."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from pathxai.geometry import Grid


def grid_overlay(
    thumb: np.ndarray,
    downsample: float,
    grid: Grid,
    tissue_mask: np.ndarray | None = None,
    outline: tuple[int, int, int] = (20, 170, 60),
) -> np.ndarray:
    """Return the thumbnail with non-tissue dimmed and each tile outlined.

    Parameters
    ----------
    thumb
        RGB uint8 thumbnail.
    downsample
        Level-0 pixels per thumbnail pixel.
    grid
        Tiles to draw.
    tissue_mask
        Optional boolean mask (any resolution; resized to the thumbnail).
    outline
        Tile outline colour.

    Returns
    -------
    np.ndarray
        RGB uint8 image of the thumbnail's size.
    """
    img = thumb.copy()
    if tissue_mask is not None:
        m = Image.fromarray(tissue_mask.astype(np.uint8) * 255).resize(
            (thumb.shape[1], thumb.shape[0]), Image.Resampling.NEAREST
        )
        off = np.asarray(m) == 0
        img[off] = (img[off].astype(np.float32) * 0.45 + 40).astype(np.uint8)
    pil = Image.fromarray(img)
    draw = ImageDraw.Draw(pil)
    for s in grid.specs:
        x0, y0 = s.l0_x / downsample, s.l0_y / downsample
        x1, y1 = (s.l0_x + s.l0_w) / downsample, (s.l0_y + s.l0_h) / downsample
        draw.rectangle([x0, y0, max(x0, x1 - 1), max(y0, y1 - 1)], outline=outline, width=1)
    return np.asarray(pil)
