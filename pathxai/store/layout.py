"""How a heatmap store lies in HDF5: its datasets, their allocation, chunks and compression."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import h5py
import numpy as np

__all__ = [
    "CANVAS_LAYERS",
    "GZIP",
    "HEATMAP_SCHEMA",
    "NO_RELEVANCE",
    "PER_TILE",
    "RELEVANCE_DATASETS",
    "Digests",
    "copy_per_tile",
    "create_canvas_layers",
    "dataset_digest",
    "early_dcpl",
    "final_path",
    "partial_path",
]

HEATMAP_SCHEMA = "pathxai.heatmap/1"


def final_path(directory: str | Path, slide_id: str) -> Path:
    """Where the complete store of ``slide_id`` lives."""
    return Path(directory) / f"{slide_id}.h5"


def partial_path(directory: str | Path, slide_id: str) -> Path:
    """Where an unfinished run of ``slide_id`` keeps its progress."""
    return Path(directory) / f"{slide_id}.partial.h5"


#: Stitched layers of a complete store (``count`` only has level 0).
CANVAS_LAYERS = ("relevance", "probability", "count")

#: Datasets with one row per tile, in every store (partial or complete) that has relevance; a
#: probability-only store (method ``"none"``) has all but ``tile_relevance``.
PER_TILE = ("coords", "m_coords", "t_index", "tissue", "probabilities", "done", "failed", "tile_relevance")

#: The method recorded by probability-only runs (``pathxai heatmap --method none``): no relevance.
NO_RELEVANCE = "none"

#: What a probability-only store (method ``"none"``) lacks: the per-tile and the stitched relevance.
RELEVANCE_DATASETS = ("tile_relevance", "relevance")

#: Compression of a complete store's datasets (fast gzip on shuffled bytes), with a Fletcher-32
#: checksum per chunk that HDF5 verifies on every read (a flipped bit fails the read, never
#: returns wrong numbers).
GZIP = {"compression": "gzip", "compression_opts": 1, "shuffle": True, "fletcher32": True}


def early_dcpl() -> h5py.h5p.PropDCID:
    """Dataset creation properties: storage allocated at creation, never filled (raw writes at fixed offsets)."""
    dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
    dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
    dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
    return dcpl


def copy_per_tile(src: h5py.File, out: h5py.File, tile_chunk: int, digests: Digests | None = None) -> None:
    """Copy the per-tile datasets of a partial store, compressed, ``tile_chunk`` tiles per chunk.

    ``digests`` (if given) receives each dataset's bytes in order (:class:`Digests`).
    """
    n = int(src["coords"].shape[0])
    chunk = max(1, min(n, tile_chunk))
    for name in PER_TILE:
        if name not in src:  # a probability-only store has no tile_relevance
            continue
        ds = src[name]
        kwargs: dict[str, Any] = dict(GZIP) if n else {}
        if n:
            kwargs["chunks"] = (chunk, *ds.shape[1:]) if ds.shape[1:] else (max(1, min(n, 4096)),)
        dst = out.create_dataset(name, shape=ds.shape, dtype=ds.dtype, **kwargs)
        for i in range(0, n, 4096):
            block = ds[i : i + 4096]
            dst[i : i + 4096] = block
            if digests is not None:
                digests.add(name, i, block)


def create_canvas_layers(
    out: h5py.File, h: int, w: int, levels: int, layers: tuple[str, ...] = CANVAS_LAYERS
) -> None:
    """Create every pyramid level of ``layers`` (NaN-filled, chunked 256 x 256)."""
    for layer in layers:
        grp = out.create_group(layer)
        for level in range(levels + 1 if layer != "count" else 1):
            lh, lw = h, w
            for _ in range(level):
                lh, lw = -(-lh // 2), -(-lw // 2)
            grp.create_dataset(
                str(level),
                shape=(lh, lw),
                dtype="f4",
                chunks=(min(256, max(lh, 1)), min(256, max(lw, 1))) if lh and lw else None,
                fillvalue=np.nan,
                **(GZIP if lh and lw else {}),
            )


class Digests:
    """sha256 of datasets written row block by row block, in order (hashed as they are written).

    A dataset whose blocks do not arrive in row order gets no digest (:meth:`result` leaves it out).
    """

    def __init__(self) -> None:
        self._hash: dict[str, Any] = {}
        self._next_row: dict[str, int] = {}
        self._broken: set[str] = set()

    def add(self, name: str, row0: int, rows: np.ndarray, dtype: Any = None) -> None:
        """Hash ``rows`` (the dataset's rows from ``row0``, in its ``dtype``)."""
        if name in self._broken:
            return
        if self._next_row.get(name, 0) != row0:
            self._broken.add(name)
            self._hash.pop(name, None)
            return
        arr = np.ascontiguousarray(rows, dtype=dtype if dtype is not None else rows.dtype)
        self._hash.setdefault(name, hashlib.sha256()).update(arr.tobytes())
        self._next_row[name] = row0 + (arr.shape[0] if arr.ndim else 1)

    def result(self) -> dict[str, str]:
        """``{dataset: hex sha256}`` of the datasets hashed in order."""
        return {name: h.hexdigest() for name, h in sorted(self._hash.items())}


def dataset_digest(ds: h5py.Dataset, rows_per_read: int = 4096) -> str:
    """sha256 of a dataset's values read back in row order (as :class:`Digests` hashed them)."""
    h = hashlib.sha256()
    if ds.ndim == 0:
        h.update(np.ascontiguousarray(ds[()]).tobytes())
        return h.hexdigest()
    n = ds.shape[0]
    step = max(
        1,
        rows_per_read
        if ds.ndim <= 1
        else max(1, (1 << 24) // max(1, ds.dtype.itemsize * int(np.prod(ds.shape[1:])))),
    )
    for i in range(0, n, step):
        h.update(np.ascontiguousarray(ds[i : i + step]).tobytes())
    return h.hexdigest()
