"""Deep-zoom tiles for the viewer: slide tiles (JPEG) and overlay tiles (RGBA PNG) on the same grid.

Overlay tiles follow the slide's deep-zoom geometry (same level-0 size, tile size and overlap), so
OpenSeadragon stacks them exactly on the slide. Each output pixel takes the canvas pixel (from the
finest store pyramid level not coarser than the display) under its level-0 centre: the overlay is
as sharp as the store allows at every zoom, and never resampled across tile edges.

Every file is named by a root and a relative path and resolved with
:func:`pathxai.viewer.paths.resolve_under`.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
from PIL import Image

from pathxai.errors import StoreError
from pathxai.render.heatmap import probability_rgba, relevance_rgba, robust_vmax
from pathxai.slide import BaseSlide, open_slide
from pathxai.slide.deepzoom import DeepZoom, DeepZoomGeometry
from pathxai.store import HeatmapStore
from pathxai.store.layout import NO_RELEVANCE
from pathxai.viewer.paths import Roots, file_version

TILE_SIZE = 254
OVERLAP = 1
LAYERS = ("relevance", "probability")


def store_layers(attrs: Mapping[str, Any]) -> tuple[str, ...]:
    """The overlay layers a store (given by its attributes) has: probability only for method ``"none"``."""
    return ("probability",) if attrs.get("method") == NO_RELEVANCE else LAYERS


T = TypeVar("T")


class _LRU(Generic[T]):
    """A small thread-safe LRU of open resources, closed on eviction."""

    def __init__(self, size: int, close: Callable[[T], None]) -> None:
        self._items: OrderedDict[Any, T] = OrderedDict()
        self._versions: dict[Any, str | None] = {}
        self._size = size
        self._close = close
        self.lock = threading.RLock()

    def get(self, key: Any, make: Callable[[], T], version: str | None = None) -> T:
        """The item under ``key``, made (and the oldest evicted) when missing or of another version."""
        with self.lock:
            if key in self._items and self._versions.get(key) == version:
                self._items.move_to_end(key)
                return self._items[key]
            if key in self._items:  # the file was replaced since it was opened: never serve the old one
                self._close(self._items.pop(key))
            item = make()
            self._items[key] = item
            self._versions[key] = version
            while len(self._items) > self._size:
                old_key, old = self._items.popitem(last=False)
                self._versions.pop(old_key, None)
                self._close(old)
            return item

    def clear(self) -> None:
        with self.lock:
            self._versions.clear()
            while self._items:
                self._close(self._items.popitem()[1])


def encode_png(rgba: np.ndarray) -> bytes:
    """PNG bytes of an RGB or RGBA uint8 image."""
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, format="PNG", optimize=False, compress_level=3)
    return buf.getvalue()


def store_vmax(store: HeatmapStore) -> float:
    """The relevance colour limit of a store (its ``relevance_vmax`` attribute, else a robust one)."""
    if not store.has_relevance:  # probabilities only: no relevance to scale
        return 1.0
    vmax = store.attrs.get("relevance_vmax")
    try:
        v = float(vmax)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        v = float("nan")
    return v if np.isfinite(v) and v > 0 else robust_vmax(store.relevance(store.n_levels - 1))


def colour_layer(values: np.ndarray, layer: str, vmax: float) -> np.ndarray:
    """Colour a canvas window: relevance (diverging, alpha grows with ``|R|``) or probability."""
    if layer == "relevance":
        return relevance_rgba(values, vmax)
    if layer == "probability":
        return probability_rgba(values)
    raise ValueError(f"overlay layer must be one of {LAYERS}, got {layer!r}")


def overlay_window(
    store: HeatmapStore,
    layer: str,
    l0_x: float,
    l0_y: float,
    l0_per_px: float,
    out_w: int,
    out_h: int,
    scales: Sequence[float] | None = None,
) -> np.ndarray:
    """Canvas values for an output window whose pixels are ``l0_per_px`` level-0 pixels wide.

    ``scales`` are the store's :meth:`~pathxai.store.HeatmapStore.l0_per_pixel` per level when the
    caller already knows them (each lookup reads every HDF5 attribute of the file).

    Returns
    -------
    np.ndarray
        ``(out_h, out_w)`` float32 (NaN where no tile).
    """
    if scales is None:
        scales = [store.l0_per_pixel(lv) for lv in range(store.n_levels)]
    level = 0
    for lv, scale in enumerate(scales):
        if scale <= l0_per_px * 1.0001:
            level = lv
    pp = scales[level]
    cx = np.floor((l0_x + (np.arange(out_w) + 0.5) * l0_per_px) / pp).astype(np.int64)
    cy = np.floor((l0_y + (np.arange(out_h) + 0.5) * l0_per_px) / pp).astype(np.int64)
    x0, y0 = int(cx[0]), int(cy[0])
    win = store.region(level, x0, y0, int(cx[-1]) - x0 + 1, int(cy[-1]) - y0 + 1, layer=layer)
    return win[np.ix_(cy - y0, cx - x0)]


@dataclass(frozen=True)
class OpenStore:
    """An open store with what every overlay tile needs, read once when it is opened.

    Reading a store's attributes decodes every HDF5 attribute of the file (~20 ms on a busy core);
    doing it several times per tile while holding the store lock made overlay tiles queue behind each
    other under load (20 clients: overlay tiles waited ~1.2 s, slide tiles ~10 ms).
    """

    store: HeatmapStore
    vmax: float
    geometry: DeepZoomGeometry
    scales: tuple[float, ...]

    @classmethod
    def open(cls, path: Path) -> OpenStore:
        """Open ``path`` and read its colour limit, deep-zoom geometry and level scales."""
        store = HeatmapStore.open(path)
        try:
            attrs = store.attrs
            geom = DeepZoomGeometry(int(attrs["l0_width"]), int(attrs["l0_height"]), TILE_SIZE, OVERLAP)
            scales = tuple(store.l0_per_pixel(lv) for lv in range(store.n_levels))
            return cls(store, store_vmax(store), geom, scales)
        except BaseException:
            store.close()
            raise


class TileService:
    """Open slides and stores on demand (LRU) and render deep-zoom tiles, confined to ``roots``."""

    def __init__(self, roots: Roots, cache: int = 8) -> None:
        self.roots = roots
        self._slides: _LRU[tuple[BaseSlide, DeepZoom]] = _LRU(cache, lambda s: s[0].close())
        self._stores: _LRU[OpenStore] = _LRU(cache, lambda s: s.store.close())

    def close(self) -> None:
        """Close every open slide and store."""
        self._slides.clear()
        self._stores.clear()

    def _deepzoom(self, root: int, rel: str) -> DeepZoom:
        path = self.roots.slide_file(root, rel)

        def make() -> tuple[BaseSlide, DeepZoom]:
            slide = open_slide(path)
            return slide, DeepZoom(slide, TILE_SIZE, OVERLAP)

        return self._slides.get(path, make)[1]

    def _store(self, rel: str) -> OpenStore:
        path = self.roots.out_file(rel)
        try:
            version = file_version(path)
        except OSError as exc:
            raise StoreError("heatmap store is gone (replaced or deleted?)", path=path) from exc
        return self._stores.get(path, lambda: OpenStore.open(path), version)

    def slide_info(self, root: int, rel: str) -> dict[str, int]:
        """Deep-zoom geometry of a slide (for an OpenSeadragon tile source)."""
        with self._slides.lock:
            return self._deepzoom(root, rel).to_dict()

    def slide_tile(self, root: int, rel: str, level: int, col: int, row: int) -> bytes:
        """JPEG bytes of one slide tile."""
        with self._slides.lock:
            return self._deepzoom(root, rel).tile_bytes(level, col, row, "jpeg")

    def overlay_geometry(self, store_rel: str) -> DeepZoomGeometry:
        """Deep-zoom geometry of a store's slide (from its ``l0_width``/``l0_height`` attributes)."""
        with self._stores.lock:
            return self._store(store_rel).geometry

    def overlay_tile_rgba(self, store_rel: str, layer: str, level: int, col: int, row: int) -> np.ndarray:
        """RGBA pixels of one overlay tile, aligned with the slide tile of the same index."""
        if layer not in LAYERS:
            raise ValueError(f"overlay layer must be one of {LAYERS}, got {layer!r}")
        with self._stores.lock:
            opened = self._store(store_rel)
            z_x, z_y, z_w, z_h = opened.geometry.tile_bounds(level, col, row)
            d = opened.geometry.levels[level].downsample
            values = overlay_window(opened.store, layer, z_x * d, z_y * d, d, z_w, z_h, opened.scales)
        return colour_layer(values, layer, opened.vmax)

    def overlay_tile(self, store_rel: str, layer: str, level: int, col: int, row: int) -> bytes:
        """PNG bytes of one overlay tile."""
        return encode_png(self.overlay_tile_rgba(store_rel, layer, level, col, row))


def overlay_image(store: HeatmapStore, layer: str, max_side: int = 1024) -> np.ndarray:
    """The whole overlay as RGBA at the coarsest store level whose longer side is ``>= max_side``."""
    level = 0
    for lv in range(store.n_levels):
        if max(store.level_shape(lv)) >= max_side:
            level = lv
    values = store.relevance(level) if layer == "relevance" else store.probability(level)
    return colour_layer(values, layer, store_vmax(store))


def slide_path_for(roots: Roots, loc: tuple[int, str]) -> Path:
    """The confined path of a catalogued slide."""
    return roots.slide_file(*loc)
