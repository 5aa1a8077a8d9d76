"""Decode the plain tiled-TIFF levels of generic TIFF and Aperio slides directly with tifffile.

OpenSlide still opens every slide (format detection, levels, properties, associated images);
this module only takes over the pixel reads of pyramid levels that are ordinary tiled TIFF pages.
The reason is speed: on this project's reference CPU, OpenSlide paints even a cached tile at
12-18 ns per output pixel, while libjpeg-turbo (through imagecodecs) decodes a JPEG tile at
3-4 ns per pixel and a decoded tile is then only sliced (``benchmarks/read_paths.py``,
``benchmarks/heatmap.md``).

The decoded pixels are the ones OpenSlide returns: both use libjpeg-turbo (and OpenJPEG for
Aperio's RGB JPEG 2000), and ``tests/slide/test_tiff_tiles.py`` compares them byte for
byte on the real slides in ``../shared/data/wsi_samples``. Anything outside the short list of
layouts checked there (other vendors, other compressions, YCbCr JPEG 2000, planar or
non-8-bit pages, levels that do not map to a page) stays with OpenSlide.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pathxai.errors import SlideError

__all__ = ["DEFAULT_CACHE_BYTES", "TiffTileReader"]

#: OpenSlide vendors whose levels are plain tiled TIFF pages without overlaps or sparse tricks.
_VENDORS = frozenset({"generic-tiff", "aperio"})
#: Compressions decoded here: none, LZW, JPEG, Adobe deflate, deflate, Aperio JPEG 2000 (RGB).
_COMPRESSIONS = frozenset({1, 5, 7, 8, 32946, 33005})
_RGB, _YCBCR, _JPEG = 2, 6, 7

#: Decoded tiles kept per open slide (a few hundred 256 px tiles: two rows of a wide level).
DEFAULT_CACHE_BYTES = 64 << 20


def _plain_page(page: Any) -> bool:
    """True for a tiled, contiguous 8-bit RGB page in a compression this module decodes."""
    photometric, compression = int(page.photometric), int(page.compression)
    return bool(
        page.is_tiled
        and page.tiledepth == 1
        and page.samplesperpixel == 3
        and page.bitspersample == 8
        and int(page.planarconfig) == 1
        and compression in _COMPRESSIONS
        and (photometric == _RGB or (photometric == _YCBCR and compression == _JPEG))
    )


class TiffTileReader:
    """Read level regions of a tiled TIFF by decoding (and caching) whole TIFF tiles.

    Thread-safe (a viewer may read from several threads): a read holds the reader's lock while it
    decodes and copies tiles, and file reads use ``os.pread``.

    Parameters
    ----------
    tif
        The open ``tifffile.TiffFile`` (the reader closes it).
    pages
        For each OpenSlide level, the index of its TIFF page, or ``None`` to leave that level to
        OpenSlide.
    cache_bytes
        Budget of the decoded-tile cache per tile shape (least recently used tiles are dropped
        first); allocated once, its pages filled as tiles arrive.
    """

    def __init__(self, tif: Any, pages: Sequence[int | None], cache_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.path = Path(tif.filehandle.path)
        self._tif = tif
        self._fd = os.open(self.path, os.O_RDONLY)
        self._pages: list[Any] = [None if i is None else tif.pages[i] for i in pages]
        self._budget = int(cache_bytes)
        # Decoded tiles live in slots of one preallocated array per tile shape, not in arrays of
        # their own: long-lived cache entries scattered through the heap kept it from shrinking and
        # grew a worker's peak memory by 1.5x on a 1,600-tile slide (measured).
        self._slabs: dict[tuple[int, ...], np.ndarray] = {}
        self._free: dict[tuple[int, ...], list[int]] = {}
        self._slots: OrderedDict[tuple[int, int], tuple[tuple[int, ...], int]] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def for_levels(
        cls,
        path: str | Path,
        vendor: str,
        level_dimensions: Sequence[tuple[int, int]],
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> TiffTileReader | None:
        """A reader for the levels of an OpenSlide slide that are plain tiled pages, else ``None``.

        Levels are matched to the file's pages in order by their exact size, as OpenSlide's
        generic TIFF and Aperio drivers list them.
        """
        if vendor not in _VENDORS:
            return None
        import tifffile

        try:
            tif = tifffile.TiffFile(path)
        except (tifffile.TiffFileError, OSError, ValueError):
            return None  # OpenSlide read it; let OpenSlide keep reading it
        try:
            pages: list[Any] = list(tif.pages)
            found: list[int | None] = []
            nxt = 0
            for w, h in level_dimensions:
                match = next(
                    (i for i in range(nxt, len(pages)) if pages[i].is_tiled and pages[i].shape[:2] == (h, w)),
                    None,
                )
                if match is not None and _plain_page(pages[match]):
                    found.append(match)
                    nxt = match + 1
                else:
                    found.append(None)
            if any(i is not None for i in found):
                return cls(tif, found, cache_bytes)
        except (tifffile.TiffFileError, OSError, ValueError, KeyError):
            pass
        tif.close()
        return None

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded tiles held in the cache now."""
        with self._lock:
            return sum(int(np.prod(shape)) for shape, _ in self._slots.values())

    def has_level(self, level: int) -> bool:
        """True when ``level`` is decoded here."""
        return 0 <= level < len(self._pages) and self._pages[level] is not None

    def read(self, level: int, x: int, y: int, w: int, h: int) -> np.ndarray:
        """RGB uint8 ``(h, w, 3)`` pixels of ``level`` whose top-left is level pixel ``(x, y)``.

        Pixels outside the level, and missing (sparse) tiles, are white, as OpenSlide's
        transparent pixels composited on white are.
        """
        page = self._pages[level]
        if page is None:
            raise ValueError(f"level {level} is not a plain tiled page of {self.path}")
        height, width = page.shape[:2]
        th, tw = page.tilelength, page.tilewidth
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        inside = (x0, y0, x1, y1) == (x, y, x + w, y + h)
        out = np.empty((h, w, 3), dtype=np.uint8) if inside else np.full((h, w, 3), 255, dtype=np.uint8)
        across = -(-width // tw)
        with self._lock:  # a cached tile's slot may be reused as soon as the lock is released
            for ty in range(y0 // th, (y1 - 1) // th + 1 if y1 > y0 else 0):
                for tx in range(x0 // tw, (x1 - 1) // tw + 1 if x1 > x0 else 0):
                    tile = self._tile(level, page, ty * across + tx)
                    sx0, sy0 = max(x0, tx * tw), max(y0, ty * th)
                    sx1, sy1 = min(x1, (tx + 1) * tw), min(y1, (ty + 1) * th)
                    if tile is None:
                        out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = 255
                        continue
                    out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                        sy0 - ty * th : sy1 - ty * th, sx0 - tx * tw : sx1 - tx * tw
                    ]
        return out

    def _tile(self, level: int, page: Any, index: int) -> np.ndarray | None:
        """The decoded tile (a view of its cache slot; call with the lock held), None if sparse."""
        key = (level, index)
        hit = self._slots.get(key)
        if hit is not None:
            self._slots.move_to_end(key)
            return self._slabs[hit[0]][hit[1]]
        offset, count = int(page.dataoffsets[index]), int(page.databytecounts[index])
        if offset == 0 or count == 0:
            return None  # a sparse tile: nothing was scanned there
        try:
            data = os.pread(self._fd, count, offset)
            if len(data) != count:
                raise ValueError(f"file ends after {len(data)} of {count} bytes")
            segment, _, _ = page.decode(data, index, jpegtables=page.jpegtables)
            if segment is None:
                raise ValueError("no pixel data")
            tile = segment.reshape(page.tilelength, page.tilewidth, -1)[:, :, :3]
        except Exception as exc:  # codec errors come in many types (imagecodecs, ValueError, ...)
            raise SlideError(
                f"cannot decode TIFF tile {index} of level {level}: {exc}",
                path=self.path,
                hint="the file may be corrupt or truncated; re-copy it and compare its checksum",
            ) from exc
        return self._store(key, tile)

    def _store(self, key: tuple[int, int], tile: np.ndarray) -> np.ndarray:
        """Copy ``tile`` into a free slot (evicting the least recently used tile of its shape)."""
        shape = tile.shape
        if shape not in self._slabs:
            n = max(1, self._budget // tile.nbytes)
            self._slabs[shape] = np.empty((n, *shape), dtype=np.uint8)  # pages are touched as slots fill
            self._free[shape] = list(range(n - 1, -1, -1))
        free = self._free[shape]
        if not free:
            old = next(k for k, (s, _) in self._slots.items() if s == shape)
            free.append(self._slots.pop(old)[1])
        slot = free.pop()
        self._slabs[shape][slot] = tile
        self._slots[key] = (shape, slot)
        return self._slabs[shape][slot]

    def close(self) -> None:
        """Close the file and drop the cache."""
        with self._lock:
            self._slots.clear()
            self._slabs.clear()
            self._free.clear()
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._tif.close()
