"""Exports of a finished heatmap: PNG overview, pyramidal TIFF overlay, QuPath GeoJSON."""

from __future__ import annotations

from pathxai.export.geojson import mask_features, read_geojson, write_geojson
from pathxai.export.png import write_png
from pathxai.export.tiff import write_pyramid_tiff

__all__ = ["mask_features", "read_geojson", "write_geojson", "write_png", "write_pyramid_tiff"]
