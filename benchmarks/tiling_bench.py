"""Benchmark of the foundation: ``iter_tiles`` throughput and peak memory vs slide size.

Usage::

    python benchmarks/tiling_bench.py throughput [--slide ../shared/data/wsi_samples/CMU-1-Small-Region.svs]
    python benchmarks/tiling_bench.py memory [--big 40000] [--small 5000]

``throughput`` streams every tile of a 224 px / 0.5 mpp grid (stride 112, no tissue filter, so
the small CMU slide gives a few hundred tiles) with 0, 1 and 2 worker processes, three rounds
each, and prints tiles/s. ``memory`` writes generated pyramidal TIFFs (tissue blob on white) of
two sizes and, for each, runs the full tissue + grid + stream in a fresh subprocess, reporting
the peak resident memory of that process and of its worker processes.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CMU = REPO.parent / "shared" / "data" / "wsi_samples" / "CMU-1-Small-Region.svs"


def throughput(slide_path: Path, rounds: int = 3) -> dict:
    from pathxai.slide import open_slide
    from pathxai.tiling import SlideSource, TilePool, iter_tiles, tile_slide

    with open_slide(slide_path) as s:
        grid, _ = tile_slide(s, mpp=0.5, size=224, stride=112, min_tissue=0.0)
    out = {"slide": str(slide_path), "tiles": len(grid), "tile_px": 224, "mpp": 0.5}
    src = SlideSource(str(slide_path))

    def run(**kw) -> float:
        t0 = time.perf_counter()
        n = sum(len(b) for b in iter_tiles(src, grid, batch_size=32, **kw))
        return n / (time.perf_counter() - t0)

    out["workers=0"] = [run(workers=0) for _ in range(rounds)]
    for workers in (1, 2):
        # cold: a private pool per call (includes process start-up)
        out[f"workers={workers} cold"] = [run(workers=workers) for _ in range(rounds)]
        # warm: one pool reused across calls, as the heatmap batch runner does across slides
        with TilePool(workers) as pool:
            run(pool=pool)
            out[f"workers={workers} warm"] = [run(pool=pool) for _ in range(rounds)]
    for key in [k for k in out if k.startswith("workers")]:
        rates = sorted(out[key])
        out[key] = {
            "tiles_per_s_median": round(rates[len(rates) // 2], 1),
            "rounds": [round(r, 1) for r in rates],
        }
    return out


def _stream_child(path: str) -> None:
    from pathxai.slide import open_slide
    from pathxai.tiling import SlideSource, iter_tiles, tile_slide

    t0 = time.perf_counter()
    with open_slide(path) as s:
        grid, mask = tile_slide(s, mpp=1.0, size=224, min_tissue=0.25)
    after_tissue_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    n = 0
    for b in iter_tiles(SlideSource(path), grid, batch_size=64, workers=2):
        n += len(b)
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(
        json.dumps(
            {
                "tiles": n,
                "seconds": time.perf_counter() - t0,
                "peak_rss_main_mb": self_kb / 1024,
                "peak_rss_after_tissue_and_grid_mb": after_tissue_kb / 1024,
                "peak_rss_worker_mb": kids_kb / 1024,
                "tissue_fraction": mask.fraction,
            }
        )
    )


def memory(big: int, small: int) -> dict:
    from pathxai.slide.testing import write_synthetic_slide

    results = {}
    cache = Path(os.environ.get("PATHXAI_BENCH_CACHE", tempfile.gettempdir())) / "pathxai-bench"
    cache.mkdir(parents=True, exist_ok=True)
    for side in (small, big):
        path = cache / f"syn_{side}.tiff"
        t0 = time.perf_counter()
        if not path.exists():  # generated slides are kept between runs (a 40k slide takes minutes)
            write_synthetic_slide(path, side, side, mpp=0.5, levels=5, tile=512)
        gen_s = time.perf_counter() - t0
        r = subprocess.run(
            [sys.executable, __file__, "_child", str(path)], capture_output=True, text=True, check=True
        )
        res = json.loads(r.stdout.strip().splitlines()[-1])
        res.update({"side_px": side, "file_mb": path.stat().st_size / 2**20, "generate_s": gen_s})
        results[f"{side}x{side}"] = res
    s, b = results[f"{small}x{small}"], results[f"{big}x{big}"]
    results["area_ratio"] = (big / small) ** 2
    results["peak_main_growth"] = b["peak_rss_main_mb"] / s["peak_rss_main_mb"]
    results["peak_worker_growth"] = b["peak_rss_worker_mb"] / s["peak_rss_worker_mb"]
    return results


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("what", choices=["throughput", "memory", "_child"])
    p.add_argument("path", nargs="?")
    p.add_argument("--slide", type=Path, default=CMU)
    p.add_argument("--big", type=int, default=40_000)
    p.add_argument("--small", type=int, default=5_000)
    a = p.parse_args()
    if a.what == "_child":
        _stream_child(a.path)
        return
    print(f"# load average before: {os.getloadavg()}", file=sys.stderr)
    res = throughput(a.slide) if a.what == "throughput" else memory(a.big, a.small)
    print(json.dumps(res, indent=2))
    print(f"# load average after: {os.getloadavg()}", file=sys.stderr)


if __name__ == "__main__":
    main()
