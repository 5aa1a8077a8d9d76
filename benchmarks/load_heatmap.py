"""Load test of the batch heatmap CLI: many small generated slides plus the real ones.

Runs ``pathxai heatmap MANIFEST --model M --out DIR`` twice over the same cohort:

1. locally with 2 tile-reading worker processes (``--workers 2``);
2. on a Dask ``LocalCluster`` with 2 workers (``--dask local --dask-workers 2``);

and samples the resident memory (RSS) of the whole process tree (CLI + tile workers + Dask
scheduler/nanny/worker processes) every ``--interval`` seconds. Reports wall time, slides/s,
tiles/s, peak RSS, and whether memory stays flat over time: the least-squares slope of RSS over
the second half of the run (MB per 100 slides) and the ratio of the median RSS in the last
quarter to the median in the second quarter (after warm-up).

Usage::

    python benchmarks/load_heatmap.py --n 200 --out /tmp/pathxai-load [--model default]

The cohort (generated slides, 1536 x 1152 px at 0.5 µm/px with 1-3 tissue blobs, plus the real
slides of ``../shared/data/wsi_samples`` when present, with their mpp given in the manifest
because two of them carry none or a bogus one) is written to ``OUT/cohort`` and reused.
``--model default`` needs the committed default model; if it is not installed, ``--model
fallback`` builds an untrained model of the default architecture (same compute cost).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
REAL = {
    "CMU-1-Small-Region.svs": 0.499,
    "TCGA-CR-7395-01A-01-TS1.svs": 0.25,  # no mpp in its metadata; 40x scan
    "BRACS_1640_N_3_cropped.tiff": 0.25,  # metadata says 1000 (bogus)
}


def make_cohort(directory: Path, n: int, seed: int = 0) -> Path:
    """Write ``n`` generated slides (reused when present) and a manifest including the real slides."""
    from pathxai.slide.testing import write_synthetic_slide

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = ["id,path,mpp"]
    for i in range(n):
        p = directory / f"gen{i:04d}.tiff"
        if not p.exists():
            w, h = 1536, 1152
            blobs = [
                (float(rng.uniform(0.2, 0.8) * w), float(rng.uniform(0.2, 0.8) * h),
                 float(rng.uniform(0.1, 0.3) * w), float(rng.uniform(0.1, 0.3) * h))
                for _ in range(int(rng.integers(1, 4)))
            ]  # fmt: skip
            write_synthetic_slide(p, w, h, mpp=0.5, levels=2, tile=256, blobs=blobs, compression="jpeg")
        rows.append(f"gen{i:04d},{p.name},0.5")
    real_dir = Path(os.environ.get("PATHXAI_SHARED_DATA", REPO.parent / "shared" / "data")) / "wsi_samples"
    for name, mpp in REAL.items():
        src = real_dir / name
        if src.is_file():
            copy = directory / name  # a copy outside the repo: manifest paths may not escape the root
            if not copy.exists():
                shutil.copyfile(src, copy)
            rows.append(f"{Path(name).stem},{name},{mpp}")
    manifest = directory / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def fallback_model(directory: Path) -> Path:
    """An untrained model with the default model's architecture and input (same compute cost)."""
    import torch

    from pathxai.model import ModelCard, build_model, save_model

    if (directory / "model_card.json").is_file():
        return directory
    torch.manual_seed(0)
    card = ModelCard(
        arch="compact_cnn",
        classes=("non-tumour", "tumour"),
        tumour_index=1,
        input_size=112,
        mpp=1.24,
        mean=(0.75, 0.55, 0.75),
        std=(0.15, 0.2, 0.15),
        extra={"note": "untrained stand-in for the load test"},
    )
    return save_model(build_model("compact_cnn"), card, directory)


def tree_rss(proc: psutil.Process) -> tuple[int, int]:
    """Resident bytes and number of processes of ``proc`` and all its descendants."""
    total, count = 0, 0
    try:
        procs = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0, 0
    for p in procs:
        try:
            total += p.memory_info().rss
            count += 1
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return total, count


def run_once(argv: list[str], out: Path, interval: float) -> dict[str, Any]:
    """Run the CLI, sampling memory and progress (finished summaries) until it exits."""
    samples: list[tuple[float, float, int, int]] = []  # t, MB, processes, slides done
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONWARNINGS": "ignore"})  # fmt: skip
    ps = psutil.Process(proc.pid)
    stderr_chunks: list[str] = []
    reader = threading.Thread(target=lambda: stderr_chunks.append(proc.stderr.read() if proc.stderr else ""))
    reader.start()
    while proc.poll() is None:
        rss, nproc = tree_rss(ps)
        done = sum(1 for _ in out.glob("*.json")) if out.exists() else 0
        samples.append((time.perf_counter() - t0, rss / 2**20, nproc, done))
        time.sleep(interval)
    stdout = proc.stdout.read() if proc.stdout else ""
    reader.join()
    wall = time.perf_counter() - t0
    summaries = [json.loads(p.read_text()) for p in sorted(out.glob("*.json")) if p.name != "failures.json"]
    failures = json.loads((out / "failures.json").read_text()) if (out / "failures.json").is_file() else {}
    n_tiles = sum(int(s.get("n_tiles", 0)) for s in summaries)
    mb = np.array([s[1] for s in samples]) if samples else np.zeros(1)
    ts = np.array([s[0] for s in samples]) if samples else np.zeros(1)
    done = np.array([s[3] for s in samples]) if samples else np.zeros(1)
    half = len(mb) // 2
    q = max(1, len(mb) // 4)
    slope = None
    if len(mb) > 8 and done[-1] > done[half]:
        # MB per 100 slides over the second half (after warm-up)
        slope = float(np.polyfit(done[half:], mb[half:], 1)[0] * 100)
    return {
        "argv": " ".join(argv[2:]),
        "exit": proc.returncode,
        "wall_s": round(wall, 1),
        "slides_done": len(summaries),
        "slides_failed": failures.get("n_failed"),
        "failures": [
            f.get("slide_id") + ": " + str(f.get("error"))[:160] for f in failures.get("failures", [])
        ],
        "tiles": n_tiles,
        "slides_per_s": round(len(summaries) / wall, 3),
        "tiles_per_s": round(n_tiles / wall, 1),
        "peak_rss_mb": round(float(mb.max()), 1),
        "max_processes": max((s[2] for s in samples), default=0),
        "rss_median_q2_mb": round(float(np.median(mb[q : 2 * q])), 1) if len(mb) >= 4 else None,
        "rss_median_q4_mb": round(float(np.median(mb[3 * q :])), 1) if len(mb) >= 4 else None,
        "rss_slope_mb_per_100_slides": None if slope is None else round(slope, 1),
        "samples": len(samples),
        "timeline": [
            (round(t, 1), round(m, 1), p, d) for t, m, p, d in samples[:: max(1, len(samples) // 60)]
        ],
        "stdout_tail": stdout.splitlines()[-3:],
        "stderr_tail": ("".join(stderr_chunks)).replace("\r", "\n").splitlines()[-3:],
        "mean_tiles_per_slide": round(statistics.fmean([s.get("n_tiles", 0) for s in summaries]), 1)
        if summaries
        else None,
        "seconds": ts[-1] if len(ts) else None,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="generated slides")
    ap.add_argument("--out", type=Path, default=Path("/tmp/pathxai-load"))
    ap.add_argument("--model", default="default", help="'default', 'fallback' or a model directory")
    ap.add_argument("--modes", nargs="*", default=["workers2", "dask"], choices=["workers2", "dask"])
    ap.add_argument("--interval", type=float, default=0.5, help="memory sampling interval, s")
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args()
    manifest = make_cohort(args.out / "cohort", args.n)
    model = args.model
    if model == "fallback":
        model = str(fallback_model(args.out / "fallback_model"))
    results = []
    for mode in args.modes:
        out = args.out / f"run_{mode}"
        if out.exists():
            shutil.rmtree(out)
        argv = [sys.executable, "-m", "pathxai", "heatmap", str(manifest), "--model", model, "--out", str(out),
                "--exports", "tif,png,geojson"]  # fmt: skip
        argv += ["--workers", "2"] if mode == "workers2" else ["--dask", "local", "--dask-workers", "2"]
        r = run_once(argv, out, args.interval)
        r["mode"] = mode
        r["model"] = model
        r["load_average_after"] = os.getloadavg()
        results.append(r)
        print(json.dumps({k: v for k, v in r.items() if k != "timeline"}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if all(r["exit"] == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
