"""Inspect one tile of a heatmap run: its pixels, stored probabilities and heatmap, new heatmaps on demand.

Models are loaded only through :func:`pathxai.model.load_model_with_card` (safetensors + a model
card whose sha256 is verified; never a pickle), and only the committed default model or model
directories under the viewer's output directory are considered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from torch import nn

from pathxai.errors import ModelError
from pathxai.explain import Explainer
from pathxai.model import ModelCard, load_model_with_card, preprocess
from pathxai.render.heatmap import relevance_rgba, robust_vmax
from pathxai.slide import open_slide
from pathxai.store import HeatmapStore
from pathxai.viewer.catalog import Catalog


@dataclass(frozen=True)
class TileView:
    """One stored tile of a heatmap run."""

    index: int
    l0_x: int
    l0_y: int
    l0_size: int
    pixels: np.ndarray
    probabilities: np.ndarray
    classes: tuple[str, ...]
    tile_relevance: np.ndarray | None  # None for a probability-only run (method "none")
    method: str
    mpp: float
    size: int


def tile_at(store: HeatmapStore, l0_x: float, l0_y: float) -> int | None:
    """Index of the tile whose window contains level-0 ``(x, y)`` (nearest centre if several), else ``None``."""
    coords = store.coords
    if len(coords) == 0:
        return None
    a = store.attrs
    l0_size = float(a["size"]) * float(a["mpp"]) / float(a["slide_mpp"])
    inside = (
        (coords[:, 0] <= l0_x)
        & (l0_x < coords[:, 0] + l0_size)
        & (coords[:, 1] <= l0_y)
        & (l0_y < coords[:, 1] + l0_size)
    )
    idx = np.flatnonzero(inside)
    if idx.size == 0:
        return None
    centres = coords[idx] + l0_size / 2
    d = (centres[:, 0] - l0_x) ** 2 + (centres[:, 1] - l0_y) ** 2
    return int(idx[int(np.argmin(d))])


def top_tiles(store: HeatmapStore, n: int = 10, class_index: int | None = None) -> list[int]:
    """The ``n`` tiles with the highest probability of ``class_index`` (default: the explained class)."""
    probs = store.probabilities
    if probs.size == 0:
        return []
    c = int(store.attrs.get("target_class", probs.shape[1] - 1)) if class_index is None else class_index
    p = np.nan_to_num(probs[:, c], nan=-1.0)
    return [int(i) for i in np.argsort(-p, kind="stable")[:n]]


def read_tile(store: HeatmapStore, slide_path: str | Path, index: int) -> TileView:
    """Read tile ``index``: pixels from the slide at the run's mpp and size, plus the stored results."""
    a = store.attrs
    if not 0 <= index < store.n_tiles:
        raise ValueError(f"tile index {index} outside 0..{store.n_tiles - 1}")
    x, y = (int(v) for v in store.coords[index])
    mpp, size = float(a["mpp"]), int(a["size"])
    slide_mpp = float(a["slide_mpp"])
    with open_slide(slide_path, mpp=slide_mpp) as slide:
        pixels = slide.read_region((x, y), (size, size), mpp)
    classes = a.get("classes")
    names = tuple(json.loads(classes)) if isinstance(classes, str) else tuple(classes or ())
    return TileView(
        index=index,
        l0_x=x,
        l0_y=y,
        l0_size=round(size * mpp / slide_mpp),
        pixels=pixels,
        probabilities=np.asarray(store.probabilities[index], dtype=np.float32),
        classes=names,
        tile_relevance=store.tile_relevance(np.array([index]))[0] if store.has_relevance else None,
        method=str(a.get("method", "")),
        mpp=mpp,
        size=size,
    )


def heatmap_rgb(
    relevance: np.ndarray, pixels: np.ndarray | None = None, vmax: float | None = None
) -> np.ndarray:
    """Colour a relevance map (upsampled to ``pixels`` when given, blended over them) as RGB uint8."""
    from pathxai.render.heatmap import blend, resize_rgba

    v = robust_vmax(relevance) if vmax is None else vmax
    rgba = relevance_rgba(relevance, v)
    if pixels is None:
        return rgba[..., :3]
    rgba = resize_rgba(rgba, pixels.shape[1], pixels.shape[0])
    return blend(pixels, rgba, 0.85)


def find_model(catalog: Catalog, sha256: str) -> str | None:
    """The model reference (``"default"`` or a model directory under the output root) with these weights."""
    for m in catalog.models:
        card = catalog.roots.out / m.rel / "model_card.json"
        try:
            raw = json.loads(card.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(raw, dict) and raw.get("weights_sha256") == sha256:
            return str(catalog.roots.out / m.rel)
    try:
        _, card_d = load_model_with_card("default")
    except ModelError:
        return None
    return "default" if card_d.weights_sha256 == sha256 else None


def explain_tile(
    model: nn.Module, card: ModelCard, pixels: np.ndarray, method: str, target: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Heatmap of one tile with ``method``: ``(relevance (H, W), probabilities (C,))``."""
    x = preprocess(pixels, card)
    with Explainer(model, method, target_class=card.tumour_index if target is None else target) as ex:
        out = ex(x)
    return out.relevance[0], out.probabilities[0]
