"""Deep-zoom (DZI) tiles of any :class:`~pathxai.slide.base.BaseSlide`, OpenSlide files and ArraySlides alike.

The pyramid follows the Deep Zoom Image convention that OpenSeadragon and OpenSlide's
``DeepZoomGenerator`` use: level ``L`` of ``L_max = ceil(log2(max(W, H)))`` is the level-0 image
downsampled by ``2 ** (L_max - L)`` (sizes rounded up); each level is cut into ``tile_size``
squares that carry ``overlap`` extra pixels on each inner edge. Pixels come from
:meth:`BaseSlide.read_l0_region`, which reads the best pyramid level and resizes.

Frames: ``l0_`` level-0 pixels, ``z_`` pixels of a deep-zoom level, ``t_`` tile indices.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from pathxai.slide.base import BaseSlide


@dataclass(frozen=True)
class DeepZoomLevel:
    """One level of the deep-zoom pyramid."""

    z_width: int
    z_height: int
    downsample: float
    t_cols: int
    t_rows: int


class DeepZoomGeometry:
    """The deep-zoom pyramid of a ``width`` x ``height`` level-0 image (no pixels).

    Parameters
    ----------
    width, height
        Level-0 size in pixels.
    tile_size
        Tile side without overlap (254 + 2 x 1 overlap gives 256-pixel tiles, as OpenSlide's default).
    overlap
        Extra pixels on each inner tile edge.
    """

    def __init__(self, width: int, height: int, tile_size: int = 254, overlap: int = 1) -> None:
        if tile_size <= 0 or overlap < 0:
            raise ValueError(f"tile_size must be > 0 and overlap >= 0, got {tile_size}, {overlap}")
        if width <= 0 or height <= 0:
            raise ValueError(f"image size must be positive, got {width}x{height}")
        self.tile_size = tile_size
        self.overlap = overlap
        w, h = int(width), int(height)
        self.l0_width, self.l0_height = w, h
        self.max_level = max(0, math.ceil(math.log2(max(w, h, 1))))
        levels = []
        for z in range(self.max_level + 1):
            d = 2.0 ** (self.max_level - z)
            zw, zh = max(1, math.ceil(w / d)), max(1, math.ceil(h / d))
            levels.append(DeepZoomLevel(zw, zh, d, math.ceil(zw / tile_size), math.ceil(zh / tile_size)))
        self.levels: tuple[DeepZoomLevel, ...] = tuple(levels)

    @property
    def level_count(self) -> int:
        """Number of deep-zoom levels (level 0 is a 1x1 image)."""
        return len(self.levels)

    def dzi(self, fmt: str = "jpeg") -> str:
        """The ``.dzi`` XML descriptor."""
        return (
            '<?xml version="1.0" encoding="UTF-8"?>'
            '<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" '
            f'Format="{fmt}" Overlap="{self.overlap}" TileSize="{self.tile_size}">'
            f'<Size Width="{self.l0_width}" Height="{self.l0_height}"/></Image>'
        )

    def tile_bounds(self, level: int, col: int, row: int) -> tuple[int, int, int, int]:
        """``(z_x, z_y, z_w, z_h)`` of a tile in its level's pixels, overlap included.

        Raises
        ------
        ValueError
            For a level or tile index outside the pyramid.
        """
        if not 0 <= level < self.level_count:
            raise ValueError(f"deep-zoom level {level} outside 0..{self.level_count - 1}")
        lv = self.levels[level]
        if not (0 <= col < lv.t_cols and 0 <= row < lv.t_rows):
            raise ValueError(f"tile ({col}, {row}) outside {lv.t_cols}x{lv.t_rows} at level {level}")
        ts, ov = self.tile_size, self.overlap
        x0 = col * ts - (ov if col > 0 else 0)
        y0 = row * ts - (ov if row > 0 else 0)
        x1 = min(lv.z_width, (col + 1) * ts + ov)
        y1 = min(lv.z_height, (row + 1) * ts + ov)
        return x0, y0, x1 - x0, y1 - y0

    def tile_l0_bounds(self, level: int, col: int, row: int) -> tuple[int, int, int, int, int, int]:
        """``(l0_x, l0_y, l0_w, l0_h, z_w, z_h)``: a tile's level-0 window and its output size."""
        z_x, z_y, z_w, z_h = self.tile_bounds(level, col, row)
        d = self.levels[level].downsample
        l0_x, l0_y = round(z_x * d), round(z_y * d)
        l0_w = max(1, min(self.l0_width - l0_x, round(z_w * d)))
        l0_h = max(1, min(self.l0_height - l0_y, round(z_h * d)))
        return l0_x, l0_y, l0_w, l0_h, z_w, z_h

    def to_dict(self) -> dict[str, int]:
        """What OpenSeadragon needs for a custom tile source."""
        return {
            "width": self.l0_width,
            "height": self.l0_height,
            "tileSize": self.tile_size,
            "tileOverlap": self.overlap,
            "maxLevel": self.max_level,
        }


class DeepZoom(DeepZoomGeometry):
    """Deep-zoom tiles of a slide.

    Parameters
    ----------
    slide
        The slide (kept open by the caller).
    tile_size, overlap
        See :class:`DeepZoomGeometry`.
    """

    def __init__(self, slide: BaseSlide, tile_size: int = 254, overlap: int = 1) -> None:
        super().__init__(*slide.dimensions, tile_size=tile_size, overlap=overlap)
        self.slide = slide

    def tile(self, level: int, col: int, row: int) -> np.ndarray:
        """RGB uint8 pixels of one tile (overlap included)."""
        l0_x, l0_y, l0_w, l0_h, z_w, z_h = self.tile_l0_bounds(level, col, row)
        return self.slide.read_l0_region(l0_x, l0_y, l0_w, l0_h, z_w, z_h)

    def tile_bytes(self, level: int, col: int, row: int, fmt: str = "jpeg", quality: int = 85) -> bytes:
        """One tile encoded as JPEG or PNG."""
        if fmt not in ("jpeg", "png"):
            raise ValueError(f"tile format must be 'jpeg' or 'png', got {fmt!r}")
        buf = io.BytesIO()
        img = Image.fromarray(self.tile(level, col, row))
        if fmt == "jpeg":
            img.save(buf, format="JPEG", quality=quality)
        else:
            img.save(buf, format="PNG")
        return buf.getvalue()
