"""Peak memory of a whole-slide heatmap run: a small generated slide vs one of 16x its area.

Usage::

    python benchmarks/heatmap_memory.py --tiles 60 --workers 2

Each run happens in a fresh subprocess (``--child``) that runs ``heatmap_slide`` with all exports and reports
``resource.getrusage`` max RSS of itself (model, tile batches, stitching bands, exports) and of its
children (the largest worker process that reads and explains tiles). The big slide has 4x the width and height of the small one.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from heatmap_common import CACHE, machine_state, slide_for_tiles


def child(slide: str, out: str, threads: int, workers: int, batch: int, model: str) -> None:
    from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide

    t0 = time.perf_counter()
    res = heatmap_slide(
        slide, out, HeatmapSettings(model=model, threads=threads, workers=workers, batch_size=batch)
    )
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"n_tiles": res.summary["n_tiles"], "self_mb": self_kb / 1024, "workers_mb": kids_kb / 1024,
                      "wall_s": time.perf_counter() - t0, "canvas": res.summary["canvas_shape"]}))  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=150, help="tissue tiles of the small slide")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--model", default="default")
    ap.add_argument("--child", nargs=2, metavar=("SLIDE", "OUT"))
    args = ap.parse_args()
    if args.child:
        child(args.child[0], args.child[1], args.threads, args.workers, args.batch_size, args.model)
        return
    from pathxai.model.io import DEFAULT_MODEL_DIR, card_from_file

    card = card_from_file(DEFAULT_MODEL_DIR if args.model == "default" else args.model)
    print(f"# peak memory ({machine_state()} at start), torch threads {args.threads}, workers {args.workers}")
    rows = []
    for factor in (1, 16):
        slide = slide_for_tiles(args.tiles * factor, card.input_size, card.mpp)
        out = CACHE / f"mem_out_{factor}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, __file__, "--child", str(slide), str(out), "--threads", str(args.threads),
               "--workers", str(args.workers), "--batch-size", str(args.batch_size), "--model", args.model]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        r["slide"] = Path(slide).name
        rows.append(r)
        print(f"{factor:>2}x area: {r['slide']}: {r['n_tiles']} tiles, canvas {r['canvas']}, "
              f"peak RSS main {r['self_mb']:.0f} MB, largest worker {r['workers_mb']:.0f} MB, wall {r['wall_s']:.1f}s")  # fmt: skip
    growth = rows[1]["self_mb"] / rows[0]["self_mb"]
    wgrowth = rows[1]["workers_mb"] / max(rows[0]["workers_mb"], 1e-9)
    print(f"growth for 16x area: main process {growth:.2f}x, largest worker {wgrowth:.2f}x")
    print(f"machine at end: {machine_state()}")


if __name__ == "__main__":
    main()
