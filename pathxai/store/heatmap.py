"""Per-slide heatmap store in HDF5 (schema ``pathxai.heatmap/1``).

One file per slide, ``DIR/<slide_id>.h5``:

- ``/coords`` ``(N, 2)`` int64 level-0 tile origins, ``/m_coords`` ``(N, 2)`` origins at the tile mpp,
  ``/t_index`` ``(N, 2)`` int32 tile ``(column, row)``, ``/tissue`` ``(N,)`` float32 tissue fraction
  (same meaning as :mod:`pathxai.store.coords`);
- ``/probabilities`` ``(N, C)`` float32 per tile (NaN for unreadable tiles), ``/done`` ``(N,)`` bool
  progress markers, ``/failed`` ``(N,)`` bool unreadable tiles;
- ``/tile_relevance`` ``(N, s/k, s/k)`` float32 relevance of each tile pooled (summed) to the canvas
  resolution (``s`` = ``size``, ``k`` = ``canvas_downsample``), chunked per batch (absent in a
  probability-only store, method ``"none"``);
- ``/relevance/0`` float32 ``(H_c, W_c)`` stitched canvas at ``overlay_mpp = mpp * k``, NaN where no
  tile covered, ``/relevance/1..L`` 2x NaN-aware downsampled levels; ``/probability/0..L`` the tumour
  probability stitched the same way; ``/count/0`` the overlap weights (a probability-only store has
  no ``/relevance`` and no ``relevance_vmax``: :attr:`HeatmapStore.has_relevance` is False);
- attributes: ``schema``, ``status``, ``slide``, ``slide_id``, ``slide_mpp``, ``mpp_source``,
  ``l0_width``, ``l0_height``, ``mpp``, ``size``, ``stride``, ``overlay_mpp``, ``canvas_downsample``,
  ``min_tissue``, ``tissue_settings`` (JSON), ``model_sha256``, ``model_name``, ``method``,
  ``target_class``, ``window``, ``batch_size``, ``relevance_vmax``, ``pathxai_version``, ``created``.

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
from typing import Any, Self

import h5py
import numpy as np

from pathxai.atomic import atomic_path
from pathxai.errors import StoreError
from pathxai.store.compat import MATCH_KEYS, attr_value, check_compatible, check_same_slide, plain
from pathxai.store.guarded import GuardedFile, open_guarded, reserve
from pathxai.store.layout import (
    CANVAS_LAYERS,
    PER_TILE,
    RELEVANCE_DATASETS,
    Digests,
    copy_per_tile,
    create_canvas_layers,
    early_dcpl,
)

__all__ = [
    "CANVAS_LAYERS",
    "HEATMAP_SCHEMA",
    "MATCH_KEYS",
    "HeatmapStore",
    "attrs_digest",
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


def _first_line(exc: BaseException) -> str:
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)


def attrs_digest(attrs: Mapping[str, Any]) -> str:
    """sha256 of a store's attributes (as plain values, sorted), leaving out ``checksums`` itself.

    ``created`` (a timestamp) is left out too, so the same results give the same checksums in every run.
    """
    items = {k: plain(v) for k, v in attrs.items() if k not in ("checksums", "created")}
    text = json.dumps(items, sort_keys=True, default=str, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class HeatmapStore:
    """A heatmap store: a writable partial run, or a read-only complete (or partial) file.

    Build one with :meth:`create`, :meth:`resume` or :meth:`open`; use it as a context manager.
    """

    def __init__(self, h5: h5py.File, path: Path, writable: bool, guard: GuardedFile | None = None) -> None:
        self._h5: h5py.File | None = h5
        self.path = path
        self.writable = writable
        self._guard = guard
        self._per_tile: dict[str, h5py.Dataset] | None = None

    # ---- construction -----------------------------------------------------------------
    @classmethod
    def create(
        cls,
        path: str | Path,
        *,
        coords: np.ndarray,
        m_coords: np.ndarray,
        t_index: np.ndarray,
        tissue: np.ndarray,
        n_classes: int,
        tile_px: int | None,
        attrs: Mapping[str, Any],
    ) -> HeatmapStore:
        """Create a partial store (replacing any file at ``path``) with every dataset allocated.

        Parameters
        ----------
        path
            The partial file, normally :func:`partial_path`.
        coords, m_coords, t_index, tissue
            Per-tile geometry, ``N`` rows each.
        n_classes
            Number of model classes (columns of ``/probabilities``).
        tile_px
            Side of a tile's pooled relevance map (``size / canvas_downsample``); ``None``: a
            probability-only store without ``/tile_relevance``.
        attrs
            Run settings (see the module docstring); dicts are stored as JSON.

        Returns
        -------
        HeatmapStore
            Writable; call :meth:`write_batch` then :meth:`finalize`.
        """
        path = Path(path)
        n = len(coords)
        if not (len(m_coords) == len(t_index) == len(tissue) == n):
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
            h5.create_dataset("coords", data=np.asarray(coords, np.int64).reshape(n, 2))
            h5.create_dataset("m_coords", data=np.asarray(m_coords, np.int64).reshape(n, 2))
            h5.create_dataset("t_index", data=np.asarray(t_index, np.int32).reshape(n, 2))
            h5.create_dataset("tissue", data=np.asarray(tissue, np.float32).reshape(n))
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
        return cls(h5, path, writable=True, guard=guard)

    @classmethod
    def open(cls, path: str | Path) -> HeatmapStore:
        """Open a store read-only.

        Raises
        ------
        StoreError
            If the file is missing, unreadable or not a pathxai heatmap store.
        """
        return cls._open(Path(path), "r")

    @classmethod
    def resume(cls, path: str | Path, expected: Mapping[str, Any]) -> HeatmapStore:
        """Reopen a partial store for writing after checking it matches ``expected`` settings.

        Raises
        ------
        StoreMismatchError
            If it holds another slide's run or was made with other settings.
        StoreError
            If it is unreadable or not partial.
        """
        store = cls._open(Path(path), "r+")
        try:
            if store.attrs.get("status") != "partial":
                raise StoreError(f"not a partial store (status {store.attrs.get('status')!r})", path=path)
            store.check_compatible(expected)
        except BaseException:
            store.close()
            raise
        return store

    @classmethod
    def _open(cls, path: Path, mode: str) -> HeatmapStore:
        if not path.is_file():
            raise StoreError("no such heatmap store", path=path)
        guard: GuardedFile | None = None
        try:
            if mode == "r":
                h5 = h5py.File(path, mode)
            else:
                h5, guard = open_guarded(path, mode)
        except OSError as exc:
            raise StoreError(
                f"unreadable HDF5 file, probably truncated or damaged ({_first_line(exc)})",
                path=path,
                hint="delete it and rerun, or rerun with --overwrite",
            ) from exc
        store = cls(h5, path, writable=mode != "r", guard=guard)
        try:
            schema = plain(h5.attrs.get("schema"))
            if schema != HEATMAP_SCHEMA:
                raise StoreError(
                    f"not a pathxai heatmap store of this version (schema {schema!r}, expected {HEATMAP_SCHEMA!r})",
                    path=path,
                    hint="rerun with --overwrite to rebuild it",
                )
            missing = [k for k in PER_TILE if k not in h5 and k not in RELEVANCE_DATASETS]
            if missing:
                raise StoreError(
                    f"heatmap store lacks datasets {missing}",
                    path=path,
                    hint="rerun with --overwrite to rebuild it",
                )
        except BaseException as exc:
            store.close()
            if isinstance(exc, (OSError, RuntimeError, KeyError, ValueError)):  # damaged metadata
                raise StoreError(
                    f"damaged HDF5 file ({_first_line(exc)})", path=path, hint="delete it and rerun"
                ) from exc
            raise
        return store

    @staticmethod
    def progress(path: str | Path) -> tuple[int, int]:
        """Return ``(tiles done, tiles)`` of a store, even while another process writes it."""
        try:
            h5 = h5py.File(path, "r", locking=False)
        except OSError:  # this process holds the file open with locking
            h5 = h5py.File(path, "r")
        with h5:
            done = h5["done"][...]
            return int(done.sum()), int(done.size)

    # ---- lifetime ----------------------------------------------------------------------
    @property
    def h5(self) -> h5py.File:
        """The open HDF5 file."""
        if self._h5 is None:
            raise StoreError("the store is closed", path=self.path)
        return self._h5

    def close(self) -> None:
        """Close the file (a write failure is raised by the write that met it, not here)."""
        self._per_tile = None
        if self._h5 is not None:
            try:
                self._h5.close()
            finally:
                self._h5 = None
                if self._guard is not None:
                    self._guard.close()

    def _raise_if_write_failed(self) -> None:
        if self._guard is not None:
            self._guard.raise_if_failed()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._h5 is None else self.attrs.get("status")
        return f"HeatmapStore({str(self.path)!r}, {state})"

    # ---- metadata ----------------------------------------------------------------------
    @property
    def attrs(self) -> dict[str, Any]:
        """File attributes as plain Python values (JSON attributes stay strings)."""
        return {k: plain(v) for k, v in self.h5.attrs.items()}

    @property
    def tissue_settings(self) -> dict[str, Any]:
        """The tissue detection settings, decoded."""
        raw = self.attrs.get("tissue_settings", "")
        return dict(json.loads(raw)) if raw else {}

    def check_same_slide(self, expected: Mapping[str, Any]) -> None:
        """Raise :class:`StoreMismatchError` when this store holds the result of another slide.

        See :func:`pathxai.store.compat.check_same_slide`.
        """
        check_same_slide(self.attrs, expected, self.path)

    def check_compatible(self, expected: Mapping[str, Any], keys: Iterable[str] = MATCH_KEYS) -> None:
        """Raise :class:`StoreMismatchError` for another slide's store or every setting that differs.

        See :func:`pathxai.store.compat.check_compatible`.
        """
        check_compatible(self.attrs, expected, self.path, keys)

    @property
    def n_tiles(self) -> int:
        """Number of tiles."""
        return int(self.h5["coords"].shape[0])

    @property
    def coords(self) -> np.ndarray:
        """``(N, 2)`` int64 level-0 tile origins."""
        return self._read("coords")

    @property
    def m_coords(self) -> np.ndarray:
        """``(N, 2)`` int64 tile origins at the tile mpp."""
        return self._read("m_coords")

    @property
    def t_index(self) -> np.ndarray:
        """``(N, 2)`` int32 tile ``(column, row)``."""
        return self._read("t_index")

    @property
    def tissue(self) -> np.ndarray:
        """``(N,)`` tissue fractions."""
        return self._read("tissue")

    @property
    def probabilities(self) -> np.ndarray:
        """``(N, C)`` float32 class probabilities per tile (NaN for unreadable or unfinished tiles)."""
        probs = self._read("probabilities")
        if self.attrs.get("status") != "complete":
            probs[~self.done] = np.nan
        return probs

    @property
    def done(self) -> np.ndarray:
        """``(N,)`` bool: tiles whose results are stored."""
        return self._read("done")

    @property
    def failed(self) -> np.ndarray:
        """``(N,)`` bool: tiles that could not be read."""
        return self._read("failed")

    @property
    def has_relevance(self) -> bool:
        """False for a probability-only store (made with method ``"none"``): no relevance to read."""
        return "tile_relevance" in self.h5

    def _no_relevance(self) -> StoreError:
        return StoreError(
            f"store has no relevance (made with method {self.attrs.get('method')!r}: probabilities only)",
            path=self.path,
            hint="rerun 'pathxai heatmap' with an attribution method (e.g. --method lrp) for relevance",
        )

    def tile_relevance(self, index: slice | np.ndarray | None = None) -> np.ndarray:
        """Pooled relevance maps ``(n, s/k, s/k)`` of the tiles in ``index`` (all by default).

        Raises
        ------
        StoreError
            For a probability-only store (:attr:`has_relevance` is False), or a damaged one.
        """
        if not self.has_relevance:
            raise self._no_relevance()
        return self._read("tile_relevance", ... if index is None else index)

    def _read(
        self,
        name: str,
        index: Any = ...,
        layer: tuple[str, int] | None = None,
        dataset: h5py.Dataset | None = None,
    ) -> np.ndarray:
        """Read ``name[index]``; a damaged file (a chunk failing its checksum) raises :class:`StoreError`."""
        ds = dataset if dataset is not None else self._layer(*layer) if layer is not None else self.h5[name]
        try:
            return np.asarray(ds[index])
        except (OSError, RuntimeError, ValueError) as exc:
            raise StoreError(
                f"damaged store: /{name} cannot be read ({_first_line(exc)})",
                path=self.path,
                hint="check it with 'pathxai verify', then rebuild it: delete it or rerun with --overwrite",
            ) from exc

    # ---- canvases ----------------------------------------------------------------------
    @property
    def n_levels(self) -> int:
        """Number of pyramid levels including level 0 (0 for a partial store)."""
        return len(self.h5["probability"]) if "probability" in self.h5 else 0

    @property
    def levels(self) -> int:
        """Index of the coarsest pyramid level (``n_levels - 1``)."""
        return self.n_levels - 1

    def level_shape(self, level: int = 0) -> tuple[int, int]:
        """``(height, width)`` of a pyramid level."""
        return tuple(self._layer("probability", level).shape)  # type: ignore[return-value]

    def l0_per_pixel(self, level: int = 0) -> float:
        """Level-0 slide pixels per canvas pixel of ``level``."""
        a = self.attrs
        return float(a["canvas_downsample"]) * 2**level * float(a["mpp"]) / float(a["slide_mpp"])

    def _layer(self, name: str, level: int) -> h5py.Dataset:
        key = f"{name}/{level}"
        if name == "relevance" and not self.has_relevance:
            raise self._no_relevance()
        if key not in self.h5:
            status = self.attrs.get("status")
            raise StoreError(
                f"store has no {key} (status {status!r}, {self.n_levels} levels)",
                path=self.path,
                hint="partial stores have no canvases; finish the run first"
                if status != "complete"
                else None,
            )
        return self.h5[key]

    def relevance(self, level: int = 0) -> np.ndarray:
        """Stitched relevance of a pyramid level (NaN where no tile)."""
        return self._read(f"relevance/{level}", layer=("relevance", level))

    def probability(self, level: int = 0) -> np.ndarray:
        """Stitched tumour probability of a pyramid level (NaN where no tile)."""
        return self._read(f"probability/{level}", layer=("probability", level))

    def count(self) -> np.ndarray:
        """Overlap weights of level 0."""
        return self._read("count/0", layer=("count", 0))

    def region(self, level: int, c_x: int, c_y: int, w: int, h: int, layer: str = "relevance") -> np.ndarray:
        """Read a ``h x w`` window of a layer at ``level`` with top-left ``(c_x, c_y)``.

        Parts outside the canvas are NaN, so a viewer can ask for any window.
        """
        if w < 0 or h < 0:
            raise ValueError(f"region size must be non-negative, got {w}x{h}")
        if layer not in CANVAS_LAYERS:
            raise ValueError(f"layer must be one of {CANVAS_LAYERS}, got {layer!r}")
        ds = self._layer(layer, level)
        out = np.full((h, w), np.nan, dtype=np.float32)
        H, W = ds.shape
        x0, y0, x1, y1 = max(c_x, 0), max(c_y, 0), min(c_x + w, W), min(c_y + h, H)
        if x0 < x1 and y0 < y1:
            out[y0 - c_y : y1 - c_y, x0 - c_x : x1 - c_x] = self._read(
                f"{layer}/{level}", np.s_[y0:y1, x0:x1], dataset=ds
            )
        return out

    # ---- writing -------------------------------------------------------------------------
    def write_batch(
        self,
        start: int,
        probabilities: np.ndarray,
        tile_relevance: np.ndarray | None,
        failed: np.ndarray | None = None,
    ) -> None:
        """Store the results of tiles ``start .. start + B`` and mark them done (data first, then markers).

        ``tile_relevance`` is ignored by a probability-only store (it may be ``None`` there).
        """
        if not self.writable:
            raise StoreError("store is open read-only", path=self.path)
        b = len(probabilities)
        h5 = self.h5
        if self._per_tile is None:  # looking datasets up by name costs more than writing a batch
            self._per_tile = {
                name: h5[name] for name in ("probabilities", "tile_relevance", "failed", "done") if name in h5
            }
        ds = self._per_tile
        if "tile_relevance" in ds and (tile_relevance is None or len(tile_relevance) != b):
            got = "no" if tile_relevance is None else len(tile_relevance)
            raise ValueError(f"{b} probability rows but {got} relevance maps")
        n = len(ds["done"])
        if start < 0 or start + b > n:
            raise ValueError(f"batch {start}..{start + b} outside the store's {n} tiles")
        ds["probabilities"][start : start + b] = np.asarray(probabilities, np.float32)
        if "tile_relevance" in ds:
            ds["tile_relevance"][start : start + b] = np.asarray(tile_relevance, np.float32)
        if failed is not None:
            ds["failed"][start : start + b] = np.asarray(failed, bool)
        h5.flush()
        self._raise_if_write_failed()  # never mark tiles done whose results did not reach the disk
        ds["done"][start : start + b] = True
        h5.flush()
        self._raise_if_write_failed()

    def finalize(
        self,
        target: str | Path,
        canvas_shape: tuple[int, int],
        levels: int,
        bands: Iterable[tuple[str, int, int, np.ndarray]],
        attrs: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
        tile_chunk: int = 64,
    ) -> Path:
        """Write the complete store to ``target`` atomically, then delete this partial file.

        Parameters
        ----------
        target
            Final path, normally :func:`final_path`.
        canvas_shape
            ``(H_c, W_c)`` of level 0.
        levels
            Number of downsampled levels (levels ``0..levels`` are written).
        bands
            ``(layer, level, row0, rows)`` blocks covering every level of ``relevance`` (unless the
            store has none) and ``probability`` and level 0 of ``count``; consumed once, so a caller can stream a huge
            canvas band by band.
        attrs
            Extra attributes (e.g. ``relevance_vmax``), or a callable returning them after ``bands``
            is exhausted.
        tile_chunk
            Tiles per chunk of ``/tile_relevance``.

        Returns
        -------
        Path
            ``target``.
        """
        if not bool(np.all(self.done)):
            raise StoreError(
                f"cannot finalise: {int((~self.done).sum())} of {self.n_tiles} tiles are not done",
                path=self.path,
            )
        target = Path(target)
        h, w = canvas_shape
        with atomic_path(target) as tmp:
            out, guard = open_guarded(tmp, "w")
            try:
                self._write_complete(out, guard, h, w, levels, bands, attrs, tile_chunk)
            except BaseException:
                out.close()
                guard.close()
                guard.raise_if_failed(path=target)  # the failed write caused whatever followed it
                raise
            out.close()
            guard.close()
            guard.raise_if_failed(path=target)
        self.close()
        self.path.unlink(missing_ok=True)
        return target

    def _write_complete(
        self,
        out: h5py.File,
        guard: GuardedFile,
        h: int,
        w: int,
        levels: int,
        bands: Iterable[tuple[str, int, int, np.ndarray]],
        attrs: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None,
        tile_chunk: int,
    ) -> None:
        """Write the complete store into ``out``, hashing each dataset as it is written."""
        src = self.h5
        digests = Digests()
        for key, value in src.attrs.items():
            out.attrs[key] = value
        copy_per_tile(src, out, tile_chunk, digests)
        guard.raise_if_failed()
        layers = tuple(la for la in CANVAS_LAYERS if la != "relevance" or self.has_relevance)
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
