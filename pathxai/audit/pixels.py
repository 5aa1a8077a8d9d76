"""Pixel-level helpers shared by the checks: background/tissue masks and optical density."""

from __future__ import annotations

import numpy as np

__all__ = ["background_mask", "box_of", "hsv", "optical_density", "tissue_mask"]


def hsv(img: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Hue in degrees [0, 360), saturation and value in [0, 1] of a uint8 RGB image."""
    from skimage.color import rgb2hsv

    h = rgb2hsv(img)
    return h[..., 0] * 360.0, h[..., 1], h[..., 2]


def background_mask(img: np.ndarray, white: float = 0.82, max_sat: float = 0.10) -> np.ndarray:
    """Glass/background: bright and unsaturated pixels (the HistoQC-style white test)."""
    arr = img.astype(np.float32) / 255.0
    mx, mn = arr.max(axis=2), arr.min(axis=2)
    sat = (mx - mn) / np.maximum(mx, 1e-6)
    return (arr.mean(axis=2) > white) & (sat < max_sat)


def tissue_mask(img: np.ndarray) -> np.ndarray:
    """Everything that is not background."""
    return ~background_mask(img)


def optical_density(img: np.ndarray, io: float = 255.0) -> np.ndarray:
    """Per-channel optical density ``-log((I + 1) / io)`` as float64 ``(H, W, 3)``."""
    return -np.log((img.astype(np.float64) + 1.0) / (io + 1.0))


def box_of(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Bounding box ``(y0, x0, y1, x1)`` of a boolean mask, ``None`` when empty."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return None
    return int(ys.min()), int(xs.min()), int(ys.max()) + 1, int(xs.max()) + 1
