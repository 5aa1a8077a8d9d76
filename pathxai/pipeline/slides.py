"""Slide information and tiling for the front ends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pathxai import __version__
from pathxai.atomic import atomic_path
from pathxai.errors import TissueError
from pathxai.geometry import Grid
from pathxai.render.grid import grid_overlay
from pathxai.slide import TissueSettings, detect_tissue, open_slide
from pathxai.store import write_coords
from pathxai.tiling import SlideSource, iter_tiles, tile_slide


def slide_info(path: str | Path, slide_mpp: float | None = None, tissue: bool = True) -> dict[str, Any]:
    """Describe a slide: vendor, size, levels, resolution and its source, associated images, tissue.

    When the metadata gives no resolution, ``mpp_suggestion`` holds the µm/px the size of its nuclei
    suggests (:mod:`pathxai.slide.nuclei_mpp`); ``mpp`` stays ``None``.

    Parameters
    ----------
    path
        Slide file.
    slide_mpp
        Level-0 µm/px override.
    tissue
        Also detect tissue (needs a known resolution; skipped with a note otherwise).

    Returns
    -------
    dict
        JSON-serialisable description.
    """
    with open_slide(path, mpp=slide_mpp) as slide:
        res = slide.resolution
        info: dict[str, Any] = {
            "path": str(path),
            "vendor": slide.vendor,
            "width": slide.dimensions[0],
            "height": slide.dimensions[1],
            "levels": [
                {"level": i, "width": w, "height": h, "downsample": round(d, 4)}
                for i, ((w, h), d) in enumerate(
                    zip(slide.level_dimensions, slide.level_downsamples, strict=True)
                )
            ],
            "mpp": res.mpp,
            "mpp_source": res.source,
            "mpp_note": res.note,
            "objective_power": slide.properties.get("openslide.objective-power"),
            "associated_images": list(slide.associated_images),
        }
        if res.mpp is None:  # a suggestion beside the metadata, never in its place
            est = slide.mpp_suggestion()
            info["mpp_suggestion"] = {
                "mpp": None if est.mpp is None else round(est.mpp, 4),
                "rel_sd": None if est.mpp is None else round(est.rel_sd, 4),
                "ci95": None
                if est.low is None or est.high is None
                else [round(est.low, 4), round(est.high, 4)],
                "n_nuclei": est.n_nuclei,
                "note": est.note,
                "text": est.describe(),
            }
        if tissue:
            if res.mpp is None:
                info["tissue_fraction"] = None
                info["tissue_note"] = "needs a resolution: pass --slide-mpp"
            else:
                mask = detect_tissue(slide)
                info["tissue_fraction"] = round(mask.fraction, 4)
                info["tissue_mask_mpp"] = round(mask.mpp, 3)
    return info


def empty_grid_error(path: str | Path, grid: Grid, tissue_fraction: float, min_tissue: float) -> TissueError:
    """Say why a slide yields no tile: too small, no tissue, or too little tissue per tile."""
    if grid.m_width < grid.size or grid.m_height < grid.size:
        return TissueError(
            f"slide is {grid.m_width}x{grid.m_height} px at {grid.mpp:g} µm/px, smaller than one "
            f"{grid.size} px tile; nothing to tile",
            path=path,
            hint="use a smaller --size or a finer --mpp",
        )
    if tissue_fraction == 0:
        return TissueError(
            "no tissue detected on the slide; nothing to tile",
            path=path,
            hint="check that the slide is not blank, or tune the tissue settings",
        )
    return TissueError(
        f"no tile has at least {min_tissue:g} tissue (tissue covers {100 * tissue_fraction:.1f}% of the slide)",
        path=path,
        hint="lower --min-tissue",
    )


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
