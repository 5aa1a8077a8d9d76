"""Decode the plain tiled-TIFF levels of generic TIFF and Aperio slides directly with tifffile.

OpenSlide still opens every slide (format detection, levels, properties, associated images);
this module only takes over the pixel reads of pyramid levels that are ordinary tiled TIFF pages.
The reason is speed: on this project's reference CPU, OpenSlide paints even a cached tile at
about 18 ns per output pixel, while libjpeg-turbo (through imagecodecs) decodes a JPEG tile at
about 4 ns per pixel and a decoded tile is then only sliced (``benchmarks/heatmap.md``).

The decoded pixels are the ones OpenSlide returns: both use libjpeg-turbo (and OpenJPEG for
Aperio's RGB JPEG 2000), and ``tests/foundation/test_tiff_tiles.py`` compares them byte for
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

    Thread-safe: file reads use ``os.pread`` and the cache has a lock, so a viewer may read from
    several threads.

    Parameters
    ----------
    path
        The TIFF file.
    pages
        For each OpenSlide level, the index of its TIFF page, or ``None`` to leave that level to
        OpenSlide.
    cache_bytes
        Budget of the decoded-tile cache (least recently used tiles are dropped first).
    """

    def __init__(
        self, path: str | Path, pages: Sequence[int | None], cache_bytes: int = DEFAULT_CACHE_BYTES
    ) -> None:
        import tifffile

        self.path = Path(path)
        self._tif = tifffile.TiffFile(self.path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._pages: list[Any] = [None if i is None else self._tif.pages[i] for i in pages]
        self._cache: OrderedDict[tuple[int, int], np.ndarray] = OrderedDict()
        self._cache_bytes = 0
        self._budget = int(cache_bytes)
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
            with tifffile.TiffFile(path) as tif:
                pages: list[Any] = list(tif.pages)
                found: list[int | None] = []
                nxt = 0
                for w, h in level_dimensions:
                    match = next(
                        (
                            i
                            for i in range(nxt, len(pages))
                            if pages[i].is_tiled and pages[i].shape[:2] == (h, w)
                        ),
                        None,
                    )
                    if match is not None and _plain_page(pages[match]):
                        found.append(match)
                        nxt = match + 1
                    else:
                        found.append(None)
        except (tifffile.TiffFileError, OSError, ValueError, KeyError):
            return None  # OpenSlide read it; let OpenSlide keep reading it
        if all(i is None for i in found):
            return None
        return cls(path, found, cache_bytes)

    @property
    def cached_bytes(self) -> int:
        """Bytes of decoded tiles held in the cache now."""
        return self._cache_bytes

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
        out = np.full((h, w, 3), 255, dtype=np.uint8)
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, width), min(y + h, height)
        across = -(-width // tw)
        for ty in range(y0 // th, (y1 - 1) // th + 1 if y1 > y0 else 0):
            for tx in range(x0 // tw, (x1 - 1) // tw + 1 if x1 > x0 else 0):
                tile = self._tile(level, page, ty * across + tx)
                if tile is None:
                    continue
                sx0, sy0 = max(x0, tx * tw), max(y0, ty * th)
                sx1, sy1 = min(x1, (tx + 1) * tw), min(y1, (ty + 1) * th)
                out[sy0 - y : sy1 - y, sx0 - x : sx1 - x] = tile[
                    sy0 - ty * th : sy1 - ty * th, sx0 - tx * tw : sx1 - tx * tw
                ]
        return out

    def _tile(self, level: int, page: Any, index: int) -> np.ndarray | None:
        key = (level, index)
        with self._lock:
            tile = self._cache.get(key)
            if tile is not None:
                self._cache.move_to_end(key)
                return tile
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
            tile = np.ascontiguousarray(segment.reshape(page.tilelength, page.tilewidth, -1)[:, :, :3])
        except Exception as exc:  # codec errors come in many types (imagecodecs, ValueError, ...)
            raise SlideError(
                f"cannot decode TIFF tile {index} of level {level}: {exc}",
                path=self.path,
                hint="the file may be corrupt or truncated; re-copy it and compare its checksum",
            ) from exc
        tile.flags.writeable = False
        with self._lock:
            if key not in self._cache:
                self._cache[key] = tile
                self._cache_bytes += tile.nbytes
                while self._cache_bytes > self._budget and len(self._cache) > 1:
                    _, old = self._cache.popitem(last=False)
                    self._cache_bytes -= old.nbytes
        return tile

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._cache.clear()
            self._cache_bytes = 0
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        self._tif.close()
