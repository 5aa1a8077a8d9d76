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

How the files are written (crash safety, a full disk, checksums): :mod:`pathxai.store.writing`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, Self

import h5py
import numpy as np

from pathxai.atomic import atomic_path
from pathxai.errors import StoreError
from pathxai.store.compat import (
    MATCH_KEYS,
    check_compatible,
    check_same_slide,
    check_schema,
    first_line,
    plain,
)
from pathxai.store.guarded import GuardedFile, open_guarded
from pathxai.store.layout import (
    CANVAS_LAYERS,
    HEATMAP_SCHEMA,
    final_path,
    partial_path,
)
from pathxai.store.writing import attrs_digest, create_partial, write_complete

__all__ = [
    "CANVAS_LAYERS",
    "HEATMAP_SCHEMA",
    "MATCH_KEYS",
    "HeatmapStore",
    "attrs_digest",
    "final_path",
    "partial_path",
]


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
        geometry = {"coords": coords, "m_coords": m_coords, "t_index": t_index, "tissue": tissue}
        h5, guard = create_partial(path, geometry, n_classes, tile_px, attrs)
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
                f"unreadable HDF5 file, probably truncated or damaged ({first_line(exc)})",
                path=path,
                hint="delete it and rerun, or rerun with --overwrite",
            ) from exc
        store = cls(h5, path, writable=mode != "r", guard=guard)
        try:
            check_schema(h5, path)
        except BaseException:
            store.close()
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
                f"damaged store: /{name} cannot be read ({first_line(exc)})",
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
                write_complete(
                    self.h5, out, guard, (h, w), levels, bands, attrs, tile_chunk, self.has_relevance
                )
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
