"""HDF5 stores (the only package of pathxai that imports h5py).

- :mod:`pathxai.store.coords`: tile coordinates of a slide (CLAM-compatible ``coords``).
- :mod:`pathxai.store.heatmap`: per-slide heatmap stores (:class:`HeatmapStore`); :mod:`pathxai.store.lock`.
"""

from __future__ import annotations

from pathxai.store.coords import COORDS_SCHEMA, CoordsFile, read_coords, write_coords
from pathxai.store.heatmap import HEATMAP_SCHEMA, HeatmapStore
from pathxai.store.lock import OutputLock

__all__ = [
    "COORDS_SCHEMA",
    "HEATMAP_SCHEMA",
    "CoordsFile",
    "HeatmapStore",
    "OutputLock",
    "read_coords",
    "write_coords",
]
