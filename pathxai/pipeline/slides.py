"""Slide information and tiling for the front ends.

Their homes: :mod:`pathxai.slide.info`, :mod:`pathxai.heatmap.tiles`, :mod:`pathxai.tiling`.
"""

from __future__ import annotations

from pathxai.heatmap.tiles import TilingResult, tile_to_file
from pathxai.slide.info import slide_info
from pathxai.tiling import empty_grid_error

__all__ = ["TilingResult", "empty_grid_error", "slide_info", "tile_to_file"]
