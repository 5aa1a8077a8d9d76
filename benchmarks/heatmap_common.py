"""Shared helpers of the heatmap benchmarks: generated slides sized by tile count, machine state."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathxai.slide.testing import write_synthetic_slide

CACHE = Path(os.environ.get("PATHXAI_BENCH_CACHE", "/tmp/pathxai-bench"))

#: Blob layout covering about 40 % of the slide: four ellipses (tissue pieces).
_BLOBS = [
    (0.27, 0.3, 0.22, 0.24),
    (0.72, 0.3, 0.22, 0.24),
    (0.27, 0.72, 0.22, 0.24),
    (0.72, 0.72, 0.22, 0.24),
]


def slide_for_tiles(n_tiles: int, size: int, mpp: float, slide_mpp: float = 0.5, tissue: float = 0.4) -> Path:
    """A cached generated slide (4:3) with about ``n_tiles`` tissue tiles of ``size`` px at ``mpp``."""
    area_m = n_tiles / tissue * size * size
    w_m = math.sqrt(area_m * 4 / 3)
    scale = mpp / slide_mpp
    w, h = int(w_m * scale), int(w_m * 3 / 4 * scale)
    path = CACHE / f"gen_{w}x{h}_{slide_mpp}.tiff"
    if not path.exists():
        CACHE.mkdir(parents=True, exist_ok=True)
        blobs = [(cx * w, cy * h, rx * w, ry * h) for cx, cy, rx, ry in _BLOBS]
        tmp = path.with_suffix(".part.tiff")
        write_synthetic_slide(tmp, w, h, mpp=slide_mpp, levels=4, blobs=blobs)
        tmp.replace(path)
    return path


def machine_state() -> str:
    """Load average and CPU count, for the record."""
    la = os.getloadavg()
    return f"load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} on {os.cpu_count()} cores"
