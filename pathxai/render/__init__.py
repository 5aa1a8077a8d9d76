"""Rendering of thumbnails, grids and overlays to RGB arrays (no file formats here)."""
