"""How much disk a slide's heatmap needs, and a refusal before starting a slide that clearly cannot fit.

The estimate counts what a run must write: the partial store (exactly: its storage is allocated on
disk when it is created), the complete store written beside it before the partial one is removed
(every dataset at half its raw size: fast gzip on shuffled float32 relevance rarely does better), and
the exports (the JPEG overlay TIFF at a tenth of its RGB pixels, the overview PNG at 0.1 byte per
pixel, GeoJSON ignored). It is meant to fall *below* the real need, so it refuses only a slide that
cannot fit; a slide that passes may still run out of space, which the stores and atomic writers
report when it happens (:class:`~pathxai.errors.OutOfSpaceError`).
"""

from __future__ import annotations

import errno
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from pathxai.atomic import SPACE_HINT, free_bytes, human_bytes
from pathxai.errors import OutOfSpaceError
from pathxai.stitch import n_levels

__all__ = ["SpaceEstimate", "check_space", "estimate_space"]

#: Bytes per tile of the per-tile datasets besides its relevance map and probabilities:
#: coords, m_coords (2 x int64 each), t_index (2 x int32), tissue (float32), done, failed (bool).
_PER_TILE_FIXED = 16 + 16 + 8 + 4 + 1 + 1

#: HDF5 metadata of a store (superblock, object headers, chunk index), roughly.
_STORE_OVERHEAD = 64 * 1024


@dataclass(frozen=True)
class SpaceEstimate:
    """Bytes a slide's run writes: partial store, complete store, exports."""

    partial: int
    complete: int
    exports: int

    @property
    def total(self) -> int:
        """Everything together (the partial store is removed only after the rest is written)."""
        return self.partial + self.complete + self.exports


def estimate_space(
    n_tiles: int,
    n_classes: int,
    tile_px: int,
    canvas_shape: tuple[int, int],
    exports: Sequence[str],
    partial_exists: bool = False,
) -> SpaceEstimate:
    """Estimate the bytes one slide's run writes (see the module docstring for the assumptions).

    Parameters
    ----------
    n_tiles
        Tiles of the slide's grid.
    n_classes
        Model classes.
    tile_px
        Side of a tile's pooled relevance map.
    canvas_shape
        ``(rows, cols)`` of the overlay canvas (level 0).
    exports
        The exports written (``tif``, ``png``, ``geojson``).
    partial_exists
        The partial store is already on disk (a resumed run): it takes no new space.

    Returns
    -------
    SpaceEstimate
    """
    per_tile = _PER_TILE_FIXED + 4 * n_classes + 4 * tile_px * tile_px
    partial = 0 if partial_exists else n_tiles * per_tile + _STORE_OVERHEAD
    h, w = canvas_shape
    pyramid = sum(math.ceil(h / 2**lv) * math.ceil(w / 2**lv) for lv in range(n_levels((h, w), 256) + 1))
    canvas = 4 * (2 * pyramid + h * w)  # relevance and probability at every level, count at level 0
    complete = (n_tiles * per_tile + canvas) // 2 + _STORE_OVERHEAD
    out = 0
    if "tif" in exports:
        out += 3 * pyramid // 10
    if "png" in exports:
        scale = max(1, math.ceil(1024 / max(h, w, 1)))
        small = max(1, max(h, w) // 1024)  # the level whose side is about 1024 px
        out += int(0.1 * 2 * (h // small) * (w // small) * scale * scale)
    return SpaceEstimate(partial, complete, out)


def check_space(directory: str | Path, slide_id: str, estimate: SpaceEstimate) -> None:
    """Refuse a slide whose estimate exceeds the free space of ``directory``.

    Raises
    ------
    OutOfSpaceError
        Naming the directory, the space needed and the space free.
    """
    free = free_bytes(directory)
    if free is None or estimate.total <= free:
        return
    raise OutOfSpaceError(
        f"not enough space for slide {slide_id}: about {human_bytes(estimate.total)} needed "
        f"(stores {human_bytes(estimate.partial + estimate.complete)}, exports "
        f"{human_bytes(estimate.exports)}), {human_bytes(free)} free",
        path=Path(directory),
        hint=f"{SPACE_HINT}; --no-space-check skips this estimate",
        errno=errno.ENOSPC,
    )
