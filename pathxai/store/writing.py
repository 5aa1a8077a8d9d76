"""Writing a heatmap store's files: a new partial store, and the complete store a finished one becomes.

:class:`pathxai.store.heatmap.HeatmapStore` calls them.

Crash safety. A run writes ``DIR/<slide_id>.partial.h5``, whose datasets are all created (and their
storage allocated) when the file is created: afterwards a batch only overwrites raw bytes at fixed
offsets, flushes, and then sets its ``/done`` markers and flushes again, so a killed process leaves
at worst a batch without markers, and HDF5's metadata is never being rewritten. Finalising never
modifies the partial file: the complete store is written to a temporary file that is renamed to
``DIR/<slide_id>.h5`` (:func:`pathxai.atomic.atomic_path`) before the partial file is removed.
Nothing half-written ever carries the final name.

A full disk. Every file written here goes through :mod:`pathxai.store.guarded`: the HDF5 library
never sees the failed write (which left it unable to close the file and crashed the interpreter at
exit), and the run gets one :class:`~pathxai.errors.OutOfSpaceError`. The partial store's bytes are
allocated on disk when it is created (:func:`~pathxai.store.guarded.reserve`), so a slide that cannot
fit fails at its start, not after its tiles; a failed batch write raises before its ``/done``
markers are set, and a failed finalisation leaves no final store (its partial store is kept).

Checksums. The complete store records, in the ``checksums`` attribute (JSON), the sha256 of every
dataset's values (hashed while finalising, never per tile) and of its other attributes; its datasets
also carry HDF5 Fletcher-32 checksums per chunk, verified on every read.
:func:`pathxai.store.verify.verify_store` checks them.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pathxai.errors import StoreError
from pathxai.store.compat import attr_value, plain
from pathxai.store.guarded import GuardedFile, open_guarded, reserve
from pathxai.store.layout import (
    CANVAS_LAYERS,
    HEATMAP_SCHEMA,
    Digests,
    copy_per_tile,
    create_canvas_layers,
    early_dcpl,
)

__all__ = ["attrs_digest", "create_partial", "write_complete"]


def attrs_digest(attrs: Mapping[str, Any]) -> str:
    """sha256 of a store's attributes (as plain values, sorted), leaving out ``checksums`` itself.

    ``created`` (a timestamp) is left out too, so the same results give the same checksums in every run.
    """
    items = {k: plain(v) for k, v in attrs.items() if k not in ("checksums", "created")}
    text = json.dumps(items, sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


#: The per-tile geometry datasets of a store, in the order written: dtype and columns (0: a vector).
GEOMETRY_DATASETS: dict[str, tuple[type, int]] = {
    "coords": (np.int64, 2),
    "m_coords": (np.int64, 2),
    "t_index": (np.int32, 2),
    "tissue": (np.float32, 0),
}


def create_partial(
    path: Path,
    geometry: Mapping[str, np.ndarray],
    n_classes: int,
    tile_px: int | None,
    attrs: Mapping[str, Any],
) -> tuple[h5py.File, GuardedFile]:
    """Create the partial store ``path`` with every dataset allocated; return it open for writing.

    ``geometry`` maps each name of :data:`GEOMETRY_DATASETS` to its ``N`` rows; the other arguments
    are those of :meth:`pathxai.store.heatmap.HeatmapStore.create`.
    """
    n = len(geometry["coords"])
    if any(len(geometry[name]) != n for name in GEOMETRY_DATASETS):
        raise ValueError("coords, m_coords, t_index and tissue must have the same length")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    # Built under a temporary name and renamed once complete, so a run killed while creating
    # it never leaves an unreadable partial store (stale ``.*.part*`` files are cleaned up).
    tmp = path.with_name(f".{path.name}.part")
    try:
        h5, guard = open_guarded(tmp, "w")
    except OSError as exc:
        raise StoreError(f"cannot create the store ({exc})", path=path) from exc
    try:
        for key, value in attrs.items():
            h5.attrs[key] = attr_value(value)
        h5.attrs["schema"] = HEATMAP_SCHEMA
        h5.attrs["status"] = "partial"
        h5.attrs["n_tiles"] = n
        h5.attrs.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
        for name, (dtype, columns) in GEOMETRY_DATASETS.items():
            rows = (n, columns) if columns else (n,)
            h5.create_dataset(name, data=np.asarray(geometry[name], dtype).reshape(rows))
        h5.create_dataset("probabilities", shape=(n, n_classes), dtype="f4", dcpl=early_dcpl())
        if tile_px is not None:
            shape = (n, tile_px, tile_px)
            h5.create_dataset("tile_relevance", shape=shape, dtype="f4", dcpl=early_dcpl())
        h5.create_dataset("done", data=np.zeros(n, dtype=bool))
        h5.create_dataset("failed", data=np.zeros(n, dtype=bool))
        h5.close()
        guard.close()
        guard.raise_if_failed(path=path)
        # the whole store on disk now: a slide that cannot fit fails before its tiles
        reserve(tmp, name=path)
        os.replace(tmp, path)
        h5, guard = open_guarded(path, "r+")
    except BaseException:
        h5.close()
        guard.close()
        tmp.unlink(missing_ok=True)
        raise
    return h5, guard


def write_complete(
    src: h5py.File,
    out: h5py.File,
    guard: GuardedFile,
    canvas_shape: tuple[int, int],
    levels: int,
    bands: Iterable[tuple[str, int, int, np.ndarray]],
    attrs: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None,
    tile_chunk: int,
    has_relevance: bool,
) -> None:
    """Write the complete store of the partial file ``src`` into ``out``, hashing each dataset.

    ``bands`` are the stitched canvas blocks (see :meth:`HeatmapStore.finalize`); ``guard`` is checked
    after every write, so the first failed write stops it.
    """
    h, w = canvas_shape
    digests = Digests()
    for key, value in src.attrs.items():
        out.attrs[key] = value
    copy_per_tile(src, out, tile_chunk, digests)
    guard.raise_if_failed()
    layers = tuple(la for la in CANVAS_LAYERS if la != "relevance" or has_relevance)
    create_canvas_layers(out, h, w, levels, layers)
    for layer, level, row0, rows in bands:
        name = f"{layer}/{level}"
        out[name][row0 : row0 + rows.shape[0]] = rows
        digests.add(name, row0, rows, np.float32)
        guard.raise_if_failed()  # stop at the first failed write
    extra = attrs() if callable(attrs) else (attrs or {})
    for key, value in dict(extra).items():
        out.attrs[key] = attr_value(value)
    out.attrs["status"] = "complete"
    out.attrs["levels"] = levels
    out.attrs["canvas_height"] = h
    out.attrs["canvas_width"] = w
    out.attrs["checksums"] = json.dumps(
        {"datasets": digests.result(), "attrs": attrs_digest(out.attrs)}, sort_keys=True
    )
