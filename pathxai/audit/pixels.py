"""Pixel-level helpers of the checks: HSV, tissue masks, boxes (background and optical density: :mod:`pathxai.pixels`)."""

from __future__ import annotations

import numpy as np

from pathxai.pixels import background_mask, optical_density

__all__ = ["background_mask", "box_of", "hsv", "optical_density", "tissue_mask"]


def hsv(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1] of a uint8 RGB image."""
    from skimage.color import rgb2hsv

    h = rgb2hsv(img)
    return h[..., 0] * 360.0, h[..., 1], h[..., 2]


def tissue_mask(img: np.ndarray) -> np.ndarray:
    """Everything that is not background (:func:`pathxai.pixels.background_mask`)."""
    return ~background_mask(img)


def box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, x0, y1, x1)`` of a boolean mask, ``None`` when empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
