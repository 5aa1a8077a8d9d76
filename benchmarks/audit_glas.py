"""Time ``pathxai audit`` on the GlaS cohort (165 images), cold (heatmaps computed) and warm (heatmap cache hit).

Usage::

    python benchmarks/audit_glas.py --model default --out /tmp/audit_bench [--manifest data_manifests/glas.csv]

Prints one JSON line per run with the wall time, the per-stage timings of the report and the
finding counts. The warm run reuses ``OUT/cache/*.npz`` (LRP heatmaps), so it measures the checks,
figures and report only.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

from pathxai.pipeline.audit import audit

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--manifest", default=str(REPO / "data_manifests" / "glas.csv"))
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "glas_warwick_qu"))
    ap.add_argument("--model", default="default")
    ap.add_argument(
        "--reference",
        default=str(REPO.parent / "shared" / "data" / "he_reference_image" / "target_image.png"),
    )
    ap.add_argument("--out", default="/tmp/audit_bench")
    args = ap.parse_args()
    out = Path(args.out)
    if out.exists():
        shutil.rmtree(out)
    for run in ("cold", "warm"):
        t = time.perf_counter()
        rep = audit(
            args.manifest, args.data_root, model=args.model, out=out, reference=args.reference, progress=False
        )
        wall = time.perf_counter() - t
        counts = rep.to_dict()["summary"]["counts"]
        print(
            json.dumps(
                {
                    "run": run,
                    "wall_s": round(wall, 1),
                    "stages_s": {k: round(v, 1) for k, v in rep.timings.items()},
                    "findings": counts,
                    "n_items": rep.cohort["n_items"],
                    "html_bytes": (out / "report.html").stat().st_size,
                    "load_avg": os.getloadavg()[0],
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
