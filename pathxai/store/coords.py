"""Tile coordinates in HDF5, compatible with CLAM's ``coords`` layout.

Layout (``schema = "pathxai.coords/1"``):

- ``/coords``: ``(N, 2)`` int64 level-0 ``(x, y)`` of each tile (CLAM reads this dataset);
- ``/m_coords``: ``(N, 2)`` int64 origins at the target mpp;
- ``/t_index``: ``(N, 2)`` int32 tile ``(column, row)``;
- ``/tissue``: ``(N,)`` float32 tissue fraction.

Attributes on ``/coords`` (and the file): ``patch_size`` and ``patch_level`` (CLAM), plus
``slide``, ``slide_mpp``, ``mpp_source``, ``mpp``, ``size``, ``stride``, ``l0_width``,
``l0_height``, ``l0_patch_size``, ``min_tissue``, ``tissue_settings`` (JSON), ``schema``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pathxai.atomic import atomic_path
from pathxai.errors import StoreError
from pathxai.geometry import Grid, make_spec
from pathxai.store.guarded import open_guarded

COORDS_SCHEMA = "pathxai.coords/1"


@dataclass(frozen=True)
class CoordsFile:
    """The content of a coordinates file."""

    grid: Grid
    attrs: dict[str, Any]


def write_coords(path: str | Path, grid: Grid, attrs: Mapping[str, Any] | None = None) -> Path:
    """Write a grid's coordinates atomically.

    Parameters
    ----------
    path
        Output ``.h5`` file.
    grid
        The tiles.
    attrs
        Extra attributes (slide path, mpp source, tissue settings dict, ...); dicts are stored as JSON.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    meta: dict[str, Any] = {"schema": COORDS_SCHEMA, **grid.to_dict()}
    meta["l0_patch_size"] = round(grid.size * grid.scale)
    for key, value in (attrs or {}).items():
        meta[key] = json.dumps(value) if isinstance(value, (dict, list)) else ("" if value is None else value)
    n = len(grid.specs)
    with atomic_path(path) as tmp:
        h5, guard = open_guarded(tmp, "w")  # a full disk: one OutOfSpaceError, never a crash at exit
        try:
            ds = h5.create_dataset(
                "coords", data=grid.coords(), maxshape=(None, 2), chunks=(max(1, min(n, 4096)), 2)
            )
            h5.create_dataset("m_coords", data=grid.m_coords(), maxshape=(None, 2), chunks=ds.chunks)
            t_index = np.array([(s.t_col, s.t_row) for s in grid.specs], dtype=np.int32).reshape(-1, 2)
            h5.create_dataset("t_index", data=t_index, maxshape=(None, 2), chunks=ds.chunks)
            h5.create_dataset("tissue", data=grid.tissue.astype(np.float32), maxshape=(None,))
            # CLAM's attributes: patch_size is the level-0 side; patch_level 0 (we resize from level 0's frame).
            meta["patch_size"] = meta["l0_patch_size"]
            meta["patch_level"] = 0
            for key, value in meta.items():
                ds.attrs[key] = value
                h5.attrs[key] = value
        finally:
            h5.close()
            guard.close()
        guard.raise_if_failed(path=path)
    return path


def read_coords(path: str | Path) -> CoordsFile:
    """Read a coordinates file written by :func:`write_coords`.

    Raises
    ------
    StoreError
        If the file is missing, not HDF5, or not a pathxai coordinates file.
    """
    path = Path(path)
    if not path.is_file():
        raise StoreError("no such coordinates file", path=path)
    try:
        with h5py.File(path, "r") as h5:
            attrs = dict(h5.attrs)
            if attrs.get("schema") != COORDS_SCHEMA:
                raise StoreError(
                    f"not a pathxai coordinates file (schema {attrs.get('schema')!r}, expected {COORDS_SCHEMA!r})",
                    path=path,
                )
            t_index = h5["t_index"][...]
            tissue = h5["tissue"][...]
    except OSError as exc:
        raise StoreError(f"unreadable HDF5 file: {exc}", path=path) from exc
    scale = float(attrs["mpp"]) / float(attrs["slide_mpp"])
    specs = tuple(
        make_spec(int(c), int(r), int(attrs["size"]), int(attrs["stride"]), scale, float(attrs["mpp"]))
        for c, r in t_index
    )
    grid = Grid(
        l0_width=int(attrs["l0_width"]),
        l0_height=int(attrs["l0_height"]),
        slide_mpp=float(attrs["slide_mpp"]),
        mpp=float(attrs["mpp"]),
        size=int(attrs["size"]),
        stride=int(attrs["stride"]),
        specs=specs,
        tissue=tissue.astype(np.float32),
        min_tissue=float(attrs["min_tissue"]),
    )
    return CoordsFile(grid=grid, attrs={k: (v.item() if hasattr(v, "item") else v) for k, v in attrs.items()})
