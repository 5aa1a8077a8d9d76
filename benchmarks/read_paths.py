"""Tile reads: OpenSlide's paint vs direct TIFF tile decoding, on the heatmap benchmark's generated slide.

Usage::

    python benchmarks/read_paths.py --tiles 3000 --n 1600

1. ``read_tiles`` (the heatmap pipeline's read: sub-pixel window, whole-pixel level read, one box
   resample) over ``--n`` tissue tiles in grid order, in one process, with ``decoder="auto"`` (direct
   decoding, pathxai's default) and ``decoder="openslide"``; each pass runs twice and the second (warm
   cache) is reported. Both must return identical pixels.
2. OpenSlide's ``read_region`` of one cached 256 px TIFF tile, repeated: ns per output pixel.
3. Decoding the same JPEG tile with tifffile/imagecodecs (libjpeg-turbo): ns per pixel.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import openslide
import tifffile
from heatmap_common import machine_state, slide_for_tiles

from pathxai.model import load_model_with_card
from pathxai.slide import open_slide
from pathxai.tiling import read_tiles, tile_slide


def _per_tile_ms(path: str, decoder: str, n: int, mpp: float, size: int) -> tuple[float, np.ndarray]:
    with open_slide(path, decoder=decoder) as slide:
        grid, _ = tile_slide(slide, mpp, size, None, 0.25, None)
        specs = grid.specs[len(grid.specs) // 4 :][:n]
        read_tiles(slide, specs)  # fills the caches
        t0 = time.perf_counter()
        pixels, _ = read_tiles(slide, specs)
        return 1000 * (time.perf_counter() - t0) / len(specs), pixels


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=3000, help="size of the generated slide, in tissue tiles")
    ap.add_argument("--n", type=int, default=1600, help="tiles read per pass")
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    _, card = load_model_with_card("default")
    path = str(slide_for_tiles(args.tiles, card.input_size, card.mpp))
    print(f"# read paths ({machine_state()} at start)")
    direct, a = _per_tile_ms(path, "auto", args.n, card.mpp, card.input_size)
    osl, b = _per_tile_ms(path, "openslide", args.n, card.mpp, card.input_size)
    print(
        f"read_tiles, {args.n} tiles of {card.input_size} px at {card.mpp} um/px: direct decoding {direct:.3f} "
        f"ms/tile, OpenSlide {osl:.3f} ms/tile ({osl / direct:.2f}x); identical pixels: {np.array_equal(a, b)}"
    )
    osr = openslide.OpenSlide(path)
    x, y = 256 * 20, 256 * 10  # level-0 origin of a tissue tile of level 1 (2x), aligned to its TIFF tile
    osr.read_region((2 * x, 2 * y), 1, (256, 256))
    t0 = time.perf_counter()
    for _ in range(args.repeats):
        osr.read_region((2 * x, 2 * y), 1, (256, 256))
    paint = (time.perf_counter() - t0) / args.repeats / 256**2 * 1e9
    osr.close()
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[1]
        across = -(-page.imagewidth // page.tilewidth)
        index = (y // page.tilelength) * across + x // page.tilewidth
        tif.filehandle.seek(page.dataoffsets[index])
        data = tif.filehandle.read(page.databytecounts[index])
        t0 = time.perf_counter()
        for _ in range(args.repeats):
            page.decode(data, index, jpegtables=page.jpegtables)
        decode = (time.perf_counter() - t0) / args.repeats / (page.tilelength * page.tilewidth) * 1e9
    print(
        f"one 256 px tile of level 1: OpenSlide read_region from its cache {paint:.1f} ns/px, "
        f"tifffile/libjpeg-turbo decode {decode:.1f} ns/px"
    )
    print(f"machine at end: {machine_state()}")


if __name__ == "__main__":
    main()
