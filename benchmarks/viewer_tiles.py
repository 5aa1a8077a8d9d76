"""Deep-zoom tile rendering speed of the viewer's tile service (slide JPEG and overlay PNG tiles).

    python benchmarks/viewer_tiles.py OUT_DIR   # OUT_DIR from `pathxai demo --out OUT_DIR`

Renders every tile of the three finest deep-zoom levels of each slide in the folder, cold (first
request; nothing cached but the open slide/store), and prints the median and 95th percentile.
"""

from __future__ import annotations

import statistics
import sys
import time

from pathxai.viewer.catalog import make_roots, scan
from pathxai.viewer.tiles import TileService


def main(out: str) -> None:
    roots = make_roots(out)
    svc = TileService(roots)
    for entry in scan(roots).slides:
        if entry.slide_loc is None:
            continue
        info = svc.slide_info(*entry.slide_loc)
        geom = svc.overlay_geometry(entry.store_rel)
        for kind in ("slide", "relevance", "probability"):
            times = []
            for z in range(info["maxLevel"] - 2, info["maxLevel"] + 1):
                lv = geom.levels[z]
                for c in range(lv.t_cols):
                    for r in range(lv.t_rows):
                        t = time.perf_counter()
                        if kind == "slide":
                            svc.slide_tile(*entry.slide_loc, z, c, r)
                        else:
                            svc.overlay_tile(entry.store_rel, kind, z, c, r)
                        times.append(1000 * (time.perf_counter() - t))
            times.sort()
            p95 = times[min(len(times) - 1, int(0.95 * len(times)))]
            print(
                f"{entry.slide_id} {kind:11s} tiles={len(times):4d} median={statistics.median(times):6.1f} ms p95={p95:6.1f} ms"
            )
    svc.close()


if __name__ == "__main__":
    main(sys.argv[1])
