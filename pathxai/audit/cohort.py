"""What the checks look at: one :class:`AuditItem` per image or slide of the cohort.

An item holds the image at the *analysis resolution* (for image cohorts the model's µm/px; for
slide cohorts a thumbnail), the scale back to level-0 pixels, the manifest metadata, an optional
annotation mask, and an optional :class:`Heat` (the model's relevance and probabilities aligned
with the image). The pipeline builds items; the checks never read files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from pathxai.audit.findings import Region

__all__ = ["AuditItem", "Heat", "TileHeat", "group_values", "whole_region"]


@dataclass(frozen=True)
class TileHeat:
    """One model input (tile) of an item, in analysis pixels, with its prediction.

    Attributes
    ----------
    y, x, size
        Top-left corner and side in analysis pixels.
    probability
        Tumour probability of the tile.
    relevance
        Downsized relevance map of the tile (``(s, s)`` float32), for strategy clustering.
    """

    y: int
    x: int
    size: int
    probability: float
    relevance: np.ndarray


@dataclass(frozen=True)
class Heat:
    """A model's view of one item.

    Attributes
    ----------
    relevance
        ``(H, W)`` float32 relevance for the tumour class, aligned with the item's image.
    probability
        Item-level tumour probability (mean over tissue tiles).
    tiles
        The tiles the model saw.
    method
        Attribution method name.
    """

    relevance: np.ndarray
    probability: float
    tiles: tuple[TileHeat, ...] = ()
    method: str = "lrp"


@dataclass(frozen=True)
class AuditItem:
    """One image or slide, ready for the checks.

    Attributes
    ----------
    id
        Manifest id.
    image
        uint8 RGB ``(H, W, 3)`` at ``mpp``.
    mpp
        Resolution of ``image`` in µm/px.
    l0_per_px
        Level-0 pixels per ``image`` pixel (to report regions in level-0 coordinates).
    tumour
        1 tumour / 0 non-tumour / ``None`` unlabelled.
    meta
        Metadata columns (``patient``, ``site``, ``scanner``, ``split``, ``grade`` ... as strings).
    mask
        Optional boolean annotation mask aligned with ``image``.
    heat
        Optional model relevance/probabilities.
    """

    id: str
    image: np.ndarray
    mpp: float
    l0_per_px: float
    tumour: int | None
    meta: Mapping[str, str] = field(default_factory=dict)
    mask: np.ndarray | None = None
    heat: Heat | None = None

    def __post_init__(self) -> None:
        img = self.image
        if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"item {self.id!r}: image must be uint8 (H, W, 3), got {img.dtype} {img.shape}")
        if self.mask is not None and self.mask.shape != img.shape[:2]:
            raise ValueError(f"item {self.id!r}: mask shape {self.mask.shape} != image {img.shape[:2]}")
        if self.heat is not None and self.heat.relevance.shape != img.shape[:2]:
            raise ValueError(
                f"item {self.id!r}: relevance shape {self.heat.relevance.shape} != image {img.shape[:2]}"
            )

    def l0_box(self, y0: int, x0: int, y1: int, x1: int) -> tuple[int, int, int, int]:
        """Convert an analysis-pixel box (rows ``y0:y1``, columns ``x0:x1``) to level-0 ``(x, y, w, h)``."""
        s = self.l0_per_px
        return (round(x0 * s), round(y0 * s), max(1, round((x1 - x0) * s)), max(1, round((y1 - y0) * s)))


def group_values(items: Sequence[AuditItem], column: str) -> list[str | None]:
    """The value of metadata ``column`` for every item (``None`` where missing or empty)."""
    return [item.meta.get(column) or None for item in items]


def whole_region(item: AuditItem, label: str, score: float | None = None) -> Region:
    """A :class:`Region` covering all of ``item`` (level-0 coordinates)."""
    h, w = item.image.shape[:2]
    x, y, ww, hh = item.l0_box(0, 0, h, w)
    return Region(item.id, x, y, ww, hh, label, score)
