"""Colour for heatmaps: robust symmetric scaling, colour maps, blending over a slide, colour bars.

Relevance is signed: it is shown with a diverging map centred on zero (blue negative, red positive)
whose limits are ``[-vmax, vmax]`` with ``vmax`` a high percentile of ``|R|`` (a few extreme pixels
never wash out the picture). Its opacity grows with ``|R| / vmax``, so irrelevant tissue stays
visible underneath. Probabilities use a sequential map on ``[0, 1]``. NaN (no tile) is transparent.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "DEFAULT_PERCENTILE",
    "PROBABILITY_CMAP",
    "RELEVANCE_CMAP",
    "blend",
    "colorbar",
    "colormap_lut",
    "overview_image",
    "probability_rgba",
    "relevance_rgba",
    "resize_rgba",
    "robust_vmax",
]

DEFAULT_PERCENTILE = 99.5
RELEVANCE_CMAP = "bwr"
PROBABILITY_CMAP = "RdYlBu_r"


def robust_vmax(values: np.ndarray, percentile: float = DEFAULT_PERCENTILE) -> float:
    """Symmetric colour limit: the ``percentile`` of ``|values|`` over finite entries.

    Returns a tiny positive number when there is nothing to scale (all NaN or all zero), so callers
    can always divide by it.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    v = np.abs(np.asarray(values, dtype=np.float64))
    v = v[np.isfinite(v)]
    if v.size == 0:
        return 1e-12
    q = float(np.percentile(v, percentile))
    return q if q > 0 else max(float(v.max()), 1e-12)


@lru_cache(maxsize=16)
def colormap_lut(name: str) -> np.ndarray:
    """Return a matplotlib colour map as a ``(256, 3)`` uint8 lookup table."""
    import matplotlib

    try:
        cmap = matplotlib.colormaps[name]
    except KeyError:
        raise ValueError(f"unknown colour map {name!r}") from None
    lut = cmap(np.linspace(0.0, 1.0, 256))[:, :3]
    return np.round(lut * 255).astype(np.uint8)


def _lookup(unit: np.ndarray, cmap: str) -> np.ndarray:
    idx = np.clip(np.nan_to_num(unit, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return colormap_lut(cmap)[idx]


def relevance_rgba(
    relevance: np.ndarray, vmax: float, cmap: str = RELEVANCE_CMAP, gamma: float = 0.5
) -> np.ndarray:
    """Colour signed relevance.

    Parameters
    ----------
    relevance
        ``(H, W)`` float, NaN where unknown.
    vmax
        Symmetric limit (see :func:`robust_vmax`).
    cmap
        A diverging matplotlib colour map.
    gamma
        Opacity is ``clip(|R| / vmax, 0, 1) ** gamma`` (NaN: 0).

    Returns
    -------
    np.ndarray
        ``(H, W, 4)`` uint8 RGBA.
    """
    if not vmax > 0:
        raise ValueError(f"vmax must be positive, got {vmax}")
    r = np.asarray(relevance, dtype=np.float32)
    unit = np.clip(r / vmax, -1.0, 1.0)
    rgba = np.empty((*r.shape, 4), dtype=np.uint8)
    rgba[..., :3] = _lookup((unit + 1.0) / 2.0, cmap)
    alpha = np.abs(np.nan_to_num(unit, nan=0.0)) ** gamma
    rgba[..., 3] = np.round(alpha * 255).astype(np.uint8)
    return rgba


def probability_rgba(probability: np.ndarray, cmap: str = PROBABILITY_CMAP) -> np.ndarray:
    """Colour probabilities in ``[0, 1]`` (opaque; NaN transparent) as ``(H, W, 4)`` uint8 RGBA."""
    p = np.asarray(probability, dtype=np.float32)
    rgba = np.empty((*p.shape, 4), dtype=np.uint8)
    rgba[..., :3] = _lookup(np.clip(p, 0.0, 1.0), cmap)
    rgba[..., 3] = np.where(np.isnan(p), 0, 255).astype(np.uint8)
    return rgba


def resize_rgba(rgba: np.ndarray, width: int, height: int) -> np.ndarray:
    """Resize an RGBA overlay with nearest-neighbour sampling (keeps tile edges crisp)."""
    if rgba.shape[1] == width and rgba.shape[0] == height:
        return rgba
    img = Image.fromarray(rgba, mode="RGBA")
    return np.asarray(img.resize((width, height), Image.Resampling.NEAREST))


def blend(base: np.ndarray, overlay: np.ndarray, opacity: float = 0.6) -> np.ndarray:
    """Alpha-blend an RGBA overlay over an RGB image of the same size.

    Parameters
    ----------
    base
        ``(H, W, 3)`` uint8.
    overlay
        ``(H, W, 4)`` uint8; its alpha is multiplied by ``opacity``.
    opacity
        Global opacity in ``[0, 1]``.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be in [0, 1], got {opacity}")
    if base.shape[:2] != overlay.shape[:2]:
        raise ValueError(f"base {base.shape[:2]} and overlay {overlay.shape[:2]} differ in size")
    a = overlay[..., 3:4].astype(np.float32) * (opacity / 255.0)
    out = base.astype(np.float32) * (1.0 - a) + overlay[..., :3].astype(np.float32) * a
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def colorbar(
    cmap: str, vmin: float, vmax: float, label: str, width: int = 320, height: int = 56
) -> np.ndarray:
    """A horizontal colour bar with end and centre labels, as an RGB uint8 image."""
    img = Image.new("RGB", (width, height), (255, 255, 255))
    bar = colormap_lut(cmap)[np.linspace(0, 255, width - 20).astype(np.uint8)]
    strip = np.repeat(bar[None], 16, axis=0)
    img.paste(Image.fromarray(strip), (10, 18))
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    draw.text((10, 2), label, fill=(0, 0, 0), font=font)
    mid = (vmin + vmax) / 2
    for frac, value in ((0.0, vmin), (0.5, mid), (1.0, vmax)):
        text = f"{value:.3g}"
        x = 10 + frac * (width - 20)
        tw = draw.textlength(text, font=font)
        draw.line([(x, 34), (x, 38)], fill=(0, 0, 0))
        draw.text((min(max(0, x - tw / 2), width - tw), 40), text, fill=(0, 0, 0), font=font)
    return np.asarray(img)


def overview_image(
    thumb: np.ndarray,
    probability: np.ndarray,
    relevance: np.ndarray | None,
    vmax: float,
    opacity: float = 0.6,
    title: str = "",
) -> np.ndarray:
    """Two panels side by side (tumour probability, relevance) over a thumbnail, colour bars below.

    Without ``relevance`` (a probability-only run) the picture has the probability panel only.

    Parameters
    ----------
    thumb
        RGB uint8 slide thumbnail covering exactly the canvas extent.
    probability, relevance
        Canvas levels (any resolution; resized to the thumbnail with nearest neighbour).
    vmax
        Symmetric relevance limit.
    opacity
        Overlay opacity (relevance is drawn a little stronger, its alpha already fades with ``|R|``).
    title
        Text above the panels.

    Returns
    -------
    np.ndarray
        RGB uint8 image.
    """
    h, w = thumb.shape[:2]
    prob_rgba = resize_rgba(probability_rgba(probability), w, h)
    bar_w = max(160, min(w, 360))
    panels = [blend(thumb, prob_rgba, opacity)]
    bars = [colorbar(PROBABILITY_CMAP, 0.0, 1.0, "tumour probability", width=bar_w)]
    if relevance is not None:
        rel_rgba = resize_rgba(relevance_rgba(relevance, vmax), w, h)
        panels.append(blend(thumb, rel_rgba, min(1.0, opacity + 0.3)))
        bars.append(colorbar(RELEVANCE_CMAP, -vmax, vmax, "LRP relevance (tumour)", width=bar_w))
    gap, top = 10, 18
    bar_h = bars[0].shape[0]
    n = len(panels)
    out = Image.new("RGB", (n * w + (n + 1) * gap, top + h + bar_h + 2 * gap), (255, 255, 255))
    draw = ImageDraw.Draw(out)
    draw.text((gap, 3), title, fill=(0, 0, 0), font=ImageFont.load_default())
    for i, (panel, bar) in enumerate(zip(panels, bars, strict=True)):
        x = gap + i * (w + gap)
        out.paste(Image.fromarray(panel), (x, top))
        out.paste(Image.fromarray(bar), (x, top + h + gap))
    return np.asarray(out)
