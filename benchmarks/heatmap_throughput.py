"""Whole-slide heatmap throughput vs model-only LRP throughput, and the headline projection.

Usage::

    python benchmarks/heatmap_throughput.py --tiles 3000 --threads 2 --workers 1 --batch-size 32

1. Generates (and caches) a pyramidal TIFF at 0.5 µm/px with about ``--tiles`` tissue tiles at the default
   model's tile size and mpp (4 tissue pieces, ~40 % tissue).
2. Model-only: ``Explainer(model, "lrp")`` on one preprocessed batch of real tiles of that slide, repeated
   (median of ``--repeats``): tiles/s with nothing else running.
3. Pipeline: ``heatmap_slide`` on the whole slide (tile reading in ``--workers`` processes, preprocessing,
   LRP, pooling, HDF5 writes), reporting the tile-loop throughput, then finalisation (stitching + pyramid),
   exports and the wall time of everything.
4. Projects a 100,000 x 80,000 px slide at 1 µm/px with 40 % tissue: tiles / pipeline throughput plus the
   per-slide work (tissue detection, finalisation, exports) scaled linearly with slide area.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import time

import numpy as np
import torch
from heatmap_common import CACHE, machine_state, slide_for_tiles

from pathxai.explain import Explainer
from pathxai.model import load_model_with_card, preprocess
from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide
from pathxai.slide import open_slide
from pathxai.tiling import tile_slide


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--tiles", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--exports", default="tif,png,geojson")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, card = load_model_with_card(args.model)
    size, mpp = card.input_size, card.mpp
    slide_path = slide_for_tiles(args.tiles, size, mpp)
    print(f"# heatmap throughput ({machine_state()} at start)")
    print(
        f"torch {torch.__version__}, torch threads {args.threads}, model {card.arch} {size}px @ {mpp} um/px"
    )
    with open_slide(slide_path) as slide:
        grid, _ = tile_slide(slide, mpp, size, None, 0.25, None)
        specs = grid.specs[len(grid.specs) // 2 : len(grid.specs) // 2 + args.batch_size]
        pixels = np.stack([slide.read_l0_region(s.l0_x, s.l0_y, s.l0_w, s.l0_h, size, size) for s in specs])
        dims = slide.dimensions
    print(f"slide {slide_path.name}: {dims[0]}x{dims[1]} px at 0.5 um/px, {len(grid.specs)} tissue tiles")
    x = preprocess(pixels, card)
    with Explainer(model, "lrp", target_class=card.tumour_index, channels_last=args.channels_last) as ex:
        for _ in range(2):
            ex(x)
        times = []
        cpu0 = time.process_time()
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ex(x)
            times.append(time.perf_counter() - t0)
        model_cpu_per_tile = (time.process_time() - cpu0) / (args.repeats * args.batch_size)
    model_tps = args.batch_size / statistics.median(times)
    print(
        f"model-only LRP: {model_tps:.1f} tiles/s (batch {args.batch_size}, median of {args.repeats}); "
        f"CPU {1000 * model_cpu_per_tile:.1f} ms/tile -> idle 2-core estimate {2 / model_cpu_per_tile:.1f} tiles/s"
    )

    out = CACHE / "throughput_out"
    shutil.rmtree(out, ignore_errors=True)
    settings = HeatmapSettings(
        model=args.model,
        batch_size=args.batch_size,
        workers=args.workers,
        threads=args.threads,
        exports=tuple(e for e in args.exports.split(",") if e),
        channels_last=args.channels_last,
    )
    t0 = time.perf_counter()
    cpu0 = time.process_time()
    kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    res = heatmap_slide(slide_path, out, settings)
    wall = time.perf_counter() - t0
    kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_main = time.process_time() - cpu0
    cpu_kids = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
    tm = res.summary["timings"]
    n = res.summary["n_tiles"]
    loop_tps = n / tm["tiles_s"]
    print(f"pipeline tile loop: {loop_tps:.1f} tiles/s = {loop_tps / model_tps:.2f}x model-only")
    print(
        f"  waiting for tiles {tm['wait_tiles_s']:.2f}s, compute {tm['compute_s']:.2f}s, hdf5 writes {tm['write_s']:.2f}s"
    )
    print(
        f"  tissue+grid {tm['tissue_grid_s']:.2f}s, finalize {tm['finalize_s']:.2f}s, exports {tm['exports_s']:.2f}s "
        f"({', '.join(f'{k} {v:.2f}s' for k, v in tm.items() if k in ('tif_s', 'png_s', 'geojson_s'))})"
    )
    print(f"  whole slide wall {wall:.1f}s incl. model load -> {n / wall:.1f} tiles/s end to end")
    cpu_per_tile = (cpu_main + cpu_kids) / n
    print(
        f"  CPU: main {cpu_main:.1f}s + reader {cpu_kids:.1f}s for the whole slide = {1000 * cpu_per_tile:.1f} ms/tile "
        f"-> idle 2-core estimate {2 / cpu_per_tile:.1f} tiles/s end to end "
        f"({(2 / cpu_per_tile) / (2 / model_cpu_per_tile):.2f}x the model-only estimate)"
    )
    # Projection: a 100,000 x 80,000 px slide scanned at 0.5 um/px (50 x 40 mm), tiles at the model's mpp,
    # 40 % tissue (~16k tiles of 224 px at 1 um/px). Tile time from the measured loop throughput; tissue
    # detection, finalisation and the TIFF scale with the slide area (linear, measured here); the PNG and
    # GeoJSON work on a pyramid level of at most 4 M pixels, so their cost grows only up to that cap.
    from pathxai.store import HeatmapStore

    big_l0 = (100_000, 80_000, 0.5)
    big_tiles = big_l0[0] * big_l0[1] * (big_l0[2] / mpp) ** 2 * 0.4 / (size * size)
    area_ratio = (big_l0[0] * big_l0[1] * big_l0[2] ** 2) / (dims[0] * dims[1] * 0.5**2)
    with HeatmapStore.open(res.outputs["h5"]) as st:
        small = next(
            lv for lv in range(st.n_levels) if np.prod(st.level_shape(lv)) <= 1 << 22 or lv == st.levels
        )
        small_px = float(np.prod(st.level_shape(small)))
    capped = min(area_ratio, (1 << 22) / small_px) if small == 0 else 1.0
    linear = (tm["tissue_grid_s"] + tm["finalize_s"] + tm.get("tif_s", 0.0)) * area_ratio
    bounded = (tm.get("png_s", 0.0) + tm.get("geojson_s", 0.0)) * max(1.0, capped)
    proj = big_tiles / loop_tps + linear + bounded
    proj_idle = big_tiles * cpu_per_tile / 2
    print(
        f"projection 100,000 x 80,000 px scanned at 0.5 um/px, tiles at {mpp} um/px, 40% tissue: {big_tiles:.0f} tiles "
        f"/ {loop_tps:.1f} tiles/s = {big_tiles / loop_tps / 60:.1f} min; tissue+finalize+tif x{area_ratio:.1f} area "
        f"= {linear / 60:.1f} min; png+geojson (<= 4 Mpx level) {bounded / 60:.1f} min -> {proj / 60:.1f} min"
    )
    print(
        f"idle-machine estimate from CPU time: {big_tiles:.0f} tiles x {1000 * cpu_per_tile:.1f} ms CPU / 2 cores "
        f"= {proj_idle / 60:.1f} min (whole-slide CPU per tile of this run, per-slide work included at this "
        "slide's tiles-per-area ratio)"
    )
    print(f"machine at end: {machine_state()}")
    print(
        json.dumps(
            {
                "model_tps": model_tps,
                "loop_tps": loop_tps,
                "ratio": loop_tps / model_tps,
                "projection_min": proj / 60,
                "idle_estimate_min": proj_idle / 60,
            }
        )
    )


if __name__ == "__main__":
    main()
