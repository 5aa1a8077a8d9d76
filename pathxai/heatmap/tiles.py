"""Tiling a slide to a coordinates file (what ``pathxai tiles`` and the demo's tiles step call).

Tissue detected, the grid laid (:func:`~pathxai.tiling.tile_slide`), every tile optionally read
to check it, the CLAM-compatible coordinates written (:func:`~pathxai.store.write_coords`) with a
picture of the grid over the tissue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from pathxai import __version__
from pathxai.atomic import atomic_path
from pathxai.geometry import Grid
from pathxai.render.grid import grid_overlay
from pathxai.slide import TissueSettings, open_slide
from pathxai.store import write_coords
from pathxai.tiling import SlideSource, empty_grid_error, iter_tiles, tile_slide

__all__ = ["TilingResult", "tile_to_file"]


@dataclass
class TilingResult:
    """What :func:`tile_to_file` produced."""

    coords_path: Path
    thumbnail_path: Path | None
    grid: Grid
    tissue_fraction: float
    failed: list[str] = field(default_factory=list)


def tile_to_file(
    path: str | Path,
    out: str | Path,
    mpp: float,
    size: int,
    stride: int | None = None,
    min_tissue: float = 0.25,
    slide_mpp: float | None = None,
    tissue_settings: TissueSettings | None = None,
    thumbnail: str | Path | None = None,
    read: bool = True,
    workers: int = 2,
    batch_size: int = 64,
    progress: Callable[[int], None] | None = None,
    on_grid: Callable[[Grid], None] | None = None,
) -> TilingResult:
    """Detect tissue, lay the grid, optionally stream every tile, and write coordinates + thumbnail.

    Parameters
    ----------
    path, out
        Slide file and output ``.h5``.
    mpp, size, stride, min_tissue
        Grid parameters at the target resolution.
    slide_mpp
        Level-0 µm/px override.
    tissue_settings
        Tissue detection parameters.
    thumbnail
        PNG path for the grid-over-tissue picture (``None`` for none).
    read
        Stream every tile through :func:`pathxai.tiling.iter_tiles` (checks they are readable).
    workers, batch_size
        Tile reading parallelism.
    progress
        Called with the number of tiles done after each batch.
    on_grid
        Called once with the grid before tiles are streamed (e.g. to size a progress bar).

    Returns
    -------
    TilingResult
        Paths, grid, tissue fraction and unreadable tiles.
    """
    settings = tissue_settings or TissueSettings()
    with open_slide(path, mpp=slide_mpp) as slide:
        if slide.resolution.mpp is None:
            raise slide.resolution_error(path)
        grid, mask = tile_slide(slide, mpp, size, stride, min_tissue, settings)
        if not len(grid):
            raise empty_grid_error(path, grid, mask.fraction, min_tissue)
        thumb, downsample = slide.thumbnail(mpp=max(settings.mpp / 2, slide.mpp), max_side=2048)
        resolution = slide.resolution
        failed: list[str] = [f"tissue thumbnail: {m}" for m in dict.fromkeys(slide.unreadable_regions)]
    if on_grid is not None:
        on_grid(grid)
    if read and len(grid):
        source = SlideSource(str(path), slide_mpp)
        for batch in iter_tiles(source, grid, batch_size=batch_size, workers=workers):
            failed.extend(msg for _, msg in batch.failed)
            if progress:
                progress(len(batch))
    attrs = {
        "slide": str(path),
        "mpp_source": resolution.source,
        "tissue_settings": settings.to_dict(),
        "tissue_fraction": mask.fraction,
        "pathxai_version": __version__,
    }
    coords_path = write_coords(out, grid, attrs)
    thumb_path = None
    if thumbnail is not None:
        thumb_path = _write_png(Path(thumbnail), grid_overlay(thumb, downsample, grid, mask.mask))
    return TilingResult(coords_path, thumb_path, grid, mask.fraction, failed)


def _write_png(path: Path, picture: np.ndarray) -> Path:
    with atomic_path(path) as tmp:
        Image.fromarray(np.asarray(picture)).save(tmp, format="PNG")
    return path
