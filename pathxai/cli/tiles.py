"""``pathxai tiles SLIDE --mpp 1.0 --size 224 --out coords.h5``: tissue tiles to HDF5 + a grid picture."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from pathxai.cli._common import (
    add_slide_mpp,
    command,
    fraction,
    non_negative_int,
    pick,
    plausible_mpp,
    positive_float,
    positive_int,
    progress_bar,
)

if TYPE_CHECKING:
    from pathxai.geometry import Grid


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``tiles`` command."""
    p = command(sub, run, "tiles", help="detect tissue, tile it at a target mpp, write coordinates to HDF5")
    p.add_argument("slide", help="slide file")
    p.add_argument("--mpp", type=plausible_mpp, required=True, help="target resolution of the tiles, µm/px")
    p.add_argument(
        "--size", type=positive_int, default=224, help="tile side in pixels at --mpp (default 224)"
    )
    p.add_argument("--stride", type=positive_int, default=None, help="step between tiles (default: --size)")
    p.add_argument("--min-tissue", type=fraction, default=0.25, help="minimum tissue fraction per tile")
    p.add_argument("--tissue-mpp", type=positive_float, default=8.0, help="resolution of the tissue mask")
    add_slide_mpp(p)
    p.add_argument("--out", required=True, type=Path, help="output coordinates file (.h5)")
    p.add_argument("--thumbnail", type=Path, default=None, help="grid picture (default: OUT with .png)")
    p.add_argument(
        "--workers", type=non_negative_int, default=2, help="tile-reading processes (0 = in process)"
    )
    p.add_argument("--no-read", action="store_true", help="do not stream the tiles to check them")


def run(args: argparse.Namespace) -> int:
    """Tile the slide and print a summary."""
    from pathxai.heatmap.tiles import tile_to_file
    from pathxai.slide import TissueSettings

    thumb = args.thumbnail or args.out.with_suffix(".png")
    bars = []

    def start(grid: Grid) -> None:
        if not args.no_read:
            bars.append(progress_bar(len(grid), desc=Path(args.slide).name))

    def step(n: int) -> None:
        for bar in bars:
            bar.update(n)

    try:
        result = tile_to_file(
            args.slide,
            args.out,
            **pick(args, "mpp", "size", "stride", "min_tissue", "slide_mpp", "workers"),
            tissue_settings=TissueSettings(mpp=args.tissue_mpp),
            thumbnail=thumb,
            read=not args.no_read,
            progress=step,
            on_grid=start,
        )
    finally:
        for bar in bars:
            bar.close()
    print(f"{len(result.grid)} tiles of {args.size} px at {args.mpp} µm/px -> {result.coords_path}")
    print(f"tissue: {100 * result.tissue_fraction:.1f}% of the slide; grid picture: {result.thumbnail_path}")
    for msg in result.failed:
        print(f"unreadable: {msg}")
    return 1 if result.failed else 0
