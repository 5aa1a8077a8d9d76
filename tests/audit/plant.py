"""Planting controlled biases into real GlaS images (test helpers)."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.draw import line

PEN_COLOURS = {
    "blue": (35, 60, 190),
    "green": (30, 150, 70),
    "black": (25, 25, 30),
}


def draw_pen(
    img: np.ndarray, rng: np.random.Generator, colour: str = "blue", strokes: int = 3, width: int = 7
) -> tuple[np.ndarray, np.ndarray]:
    """Draw marker strokes across ``img``; return the marked image and the stroke mask."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), bool)
    for _ in range(strokes):
        y0, y1 = rng.integers(0, h, 2)
        rr, cc = line(int(y0), 0, int(y1), w - 1)
        mask[rr, cc] = True
    mask = ndi.binary_dilation(mask, iterations=width // 2)
    out = img.copy()
    ink = np.asarray(PEN_COLOURS[colour], np.float64)
    noise = rng.normal(0, 6, (int(mask.sum()), 3))
    # ink is translucent: a little tissue shows through
    out[mask] = np.clip(0.85 * ink + 0.15 * img[mask] + noise, 0, 255).astype(np.uint8)
    return out, mask


def shift_stain(img: np.ndarray, scale: tuple[float, float, float] = (1.0, 1.3, 0.75)) -> np.ndarray:
    """Re-colour an H&E image in optical-density space (a different stain batch / scanner profile)."""
    od = -np.log((img.astype(np.float64) + 1.0) / 256.0)
    od = od * np.asarray(scale)
    return np.clip(256.0 * np.exp(-od) - 1.0, 0, 255).astype(np.uint8)


def darken_fold(img: np.ndarray, y0: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    """Emulate a tissue fold: a band where the tissue is doubled (optical density x3)."""
    out = img.copy()
    band = img[y0:y1].astype(np.float64)
    od = -np.log((band + 1.0) / 256.0) * 3.0 + 0.25
    out[y0:y1] = np.clip(256.0 * np.exp(-od) - 1.0, 0, 255).astype(np.uint8)
    mask = np.zeros(img.shape[:2], bool)
    mask[y0:y1] = True
    return out, mask
