"""Region outlines drawn over an image (artifact masks in the audit's thumbnails and the viewer)."""

from __future__ import annotations

import numpy as np

__all__ = ["OUTLINE_RGB", "outline"]

#: Colour of drawn outlines (yellow: visible over H&E and over the relevance colour map).
OUTLINE_RGB = (255, 220, 0)


def outline(
    img: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int] = OUTLINE_RGB, width: int = 2
) -> np.ndarray:
    """``img`` (uint8 RGB) with the edge of ``mask`` (``width`` pixels inside it) drawn in ``colour``."""
    from scipy import ndimage as ndi

    out = img.copy()
    if mask.any():
        out[mask & ~ndi.binary_erosion(mask, iterations=width)] = colour
    return out
