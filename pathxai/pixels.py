"""Pixel arithmetic of H&E images, written once (numpy only): saturation, background, optical density, stains.

Every module that asks "is this pixel glass?" or "what are this image's stain vectors?" (the
model's patch datasets, the audit's checks and stain normaliser, the slide's tissue mask) calls
these functions, with one value per constant:

* :data:`WHITE` = 0.85 and :data:`MAX_SATURATION` = 0.10: a pixel is background when its HSV value
  (brightest channel) is above ``WHITE`` and its HSV saturation below ``MAX_SATURATION``. The slide
  tissue mask uses the same test with its own adaptive (Otsu) saturation threshold on thumbnails.
* :data:`IO` = 255: optical density ``-log((I + 1) / (IO + 1))``, so white is exactly 0.
* :data:`STAIN_BETA` = 0.15, :data:`STAIN_ALPHA` = 1 (percentile), :data:`MIN_STAINED_PIXELS` = 50:
  the Macenko stain-vector estimate.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "IO",
    "MAX_SATURATION",
    "MIN_STAINED_PIXELS",
    "STAIN_ALPHA",
    "STAIN_BETA",
    "WHITE",
    "background_mask",
    "is_background",
    "macenko_stain_vectors",
    "od_to_rgb",
    "optical_density",
    "saturation_value",
    "tissue_fraction",
]

#: HSV value (0-1) above which an unsaturated pixel is background.
WHITE = 0.85
#: HSV saturation (0-1) below which a bright pixel is background.
MAX_SATURATION = 0.10
#: Transmitted light intensity of the optical density (uint8 white).
IO = 255.0
#: Pixels with any channel's optical density below this are too transparent for stain vectors.
STAIN_BETA = 0.15
#: Percentile of the robust extreme angles of the Macenko estimate.
STAIN_ALPHA = 1.0
#: Fewest stained pixels a stain-vector estimate accepts.
MIN_STAINED_PIXELS = 50


def saturation_value(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """HSV saturation and value of an RGB uint8 image, in float32 (a quarter of rgb2hsv's memory)."""
    hi = rgb.max(axis=-1).astype(np.float32)
    lo = rgb.min(axis=-1).astype(np.float32)
    sat = np.divide(hi - lo, hi, out=np.zeros_like(hi), where=hi > 0)
    return sat, hi / 255.0


def is_background(
    sat: np.ndarray, value: np.ndarray, white: float = WHITE, max_sat: float | np.floating = MAX_SATURATION
) -> np.ndarray:
    """The background test on precomputed saturation and value: bright *and* unsaturated."""
    return (value > white) & (sat < max_sat)


def background_mask(rgb: np.ndarray, white: float = WHITE, max_sat: float = MAX_SATURATION) -> np.ndarray:
    """Boolean ``(H, W)``: glass/background pixels of a uint8 RGB image (:func:`is_background`)."""
    sat, value = saturation_value(rgb)
    return is_background(sat, value, white, max_sat)


def tissue_fraction(rgb: np.ndarray, white: float = WHITE, max_sat: float = MAX_SATURATION) -> float:
    """Fraction of the pixels of a uint8 RGB image that are not background."""
    return float(1.0 - background_mask(rgb, white, max_sat).mean())


def optical_density(rgb: np.ndarray, io: float = IO) -> np.ndarray:
    """Per-channel optical density ``-log((I + 1) / (io + 1))`` as float64 (same shape as ``rgb``)."""
    return -np.log((rgb.astype(np.float64) + 1.0) / (io + 1.0))


def od_to_rgb(od: np.ndarray, io: float = IO) -> np.ndarray:
    """Inverse of :func:`optical_density`, clipped to uint8."""
    return np.clip((io + 1.0) * np.exp(-od) - 1.0, 0, 255).astype(np.uint8)


def macenko_stain_vectors(
    od: np.ndarray,
    beta: float = STAIN_BETA,
    alpha: float = STAIN_ALPHA,
    min_pixels: int = MIN_STAINED_PIXELS,
) -> np.ndarray:
    """Macenko et al. (2009) H and E stain vectors from optical densities.

    The two extreme angles of the stained pixels' optical densities in the plane of their two main
    eigenvectors.

    Parameters
    ----------
    od
        ``(N, 3)`` optical densities.
    beta
        Pixels with any channel's OD below this are ignored (too transparent).
    alpha
        Percentile of the robust extreme angles.
    min_pixels
        Fewest stained pixels accepted.

    Returns
    -------
    numpy.ndarray
        ``(2, 3)`` unit vectors, haematoxylin first (the one with the larger red OD).

    Raises
    ------
    ValueError
        If fewer than ``min_pixels`` pixels are stained enough.
    """
    px = od[np.all(od > beta, axis=1)]
    if len(px) < min_pixels:
        raise ValueError(f"only {len(px)} stained pixels; cannot estimate stain vectors")
    _, vecs = np.linalg.eigh(np.cov(px.T))
    plane = vecs[:, 1:3]
    proj = px @ plane
    phi = np.arctan2(proj[:, 1], proj[:, 0])
    lo, hi = np.percentile(phi, alpha), np.percentile(phi, 100 - alpha)
    v1 = plane @ np.array([np.cos(lo), np.sin(lo)])
    v2 = plane @ np.array([np.cos(hi), np.sin(hi)])
    he = np.array([v1, v2]) if v1[0] > v2[0] else np.array([v2, v1])
    he = he * np.sign(he.sum(axis=1, keepdims=True))
    return he / np.linalg.norm(he, axis=1, keepdims=True)
