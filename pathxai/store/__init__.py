"""HDF5 stores (the only package of pathxai that imports h5py).

- :mod:`pathxai.store.coords`: tile coordinates of a slide (CLAM-compatible ``coords``).
"""

from __future__ import annotations

from pathxai.store.coords import COORDS_SCHEMA, CoordsFile, read_coords, write_coords

__all__ = ["COORDS_SCHEMA", "CoordsFile", "read_coords", "write_coords"]
