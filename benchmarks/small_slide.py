"""Whole-process time of ``pathxai heatmap`` on GlaS mosaics: LRP, ``--method none`` and a hand-written loop.

Usage::

    python benchmarks/small_slide.py --grid 2 --rounds 5          # a biopsy-sized slide (a few dozen tiles)
    python benchmarks/small_slide.py --grid 12 --rounds 3         # 881 tissue tiles

Builds a ``grid x grid`` mosaic of real GlaS images (768 x 512 crops at 0.62 µm/px, half benign, half
malignant, written as a JPEG pyramidal TIFF like ``tests/heatmap/glas_mosaic.py``) under ``--cache``, then
runs, in alternation for ``--rounds`` rounds, each as a fresh process timed from start to exit:

- ``pathxai heatmap SLIDE --out DIR --overwrite`` (LRP, all exports);
- ``pathxai heatmap SLIDE --method none --out DIR --overwrite`` (probabilities only, all exports);
- the hand-written loop of ``benchmarks/heatmap_naive.py`` on the whole slide (``--naive SLIDE``): open the
  slide, lay the tissue grid, ``read_region`` per tile, zennit's stock EpsilonPlusFlat registered once, a
  numpy canvas. No exports: it is what a first script does.

Prints each run's wall time and peak RSS (of the process and its workers, from ``wait4``) and the
ratios of the medians. The run's own timings are in ``DIR/<id>.json``.
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GLAS_MPP = 0.62
ROOT = Path(__file__).resolve().parents[1]


def build_mosaic(
    glas_dir: Path, out: Path, grid: int, cell: tuple[int, int] = (768, 512), seed: int = 0
) -> Path:
    """Write a ``grid x grid`` mosaic of GlaS images (half malignant), reusing images when there are too few."""
    import tifffile
    from PIL import Image

    if out.exists():
        return out
    with open(glas_dir / "manifest.csv", newline="") as fh:
        recs = [r for r in csv.DictReader(fh) if int(r["width"]) >= cell[0] and int(r["height"]) >= cell[1]]
    rng = np.random.default_rng(seed)
    n = grid * grid
    chosen = []
    for tumour, count in (("0", n // 2), ("1", n - n // 2)):
        pool = [r for r in recs if r["tumor"] == tumour]
        chosen += [pool[i % len(pool)] for i in rng.permutation(max(count, len(pool)))[:count]]
    cw, ch = cell
    img = np.empty((grid * ch, grid * cw, 3), dtype=np.uint8)
    for pos, idx in enumerate(rng.permutation(n)):
        r, c = divmod(pos, grid)
        pic = np.asarray(Image.open(glas_dir / chosen[idx]["path"]).convert("RGB"))[:ch, :cw]
        img[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = pic
    res = 1e4 / GLAS_MPP
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".part.tiff")
    with tifffile.TiffWriter(tmp) as tif:
        level = img
        for i in range(3):
            tif.write(
                level, tile=(256, 256), photometric="rgb", compression="jpeg", compressionargs={"level": 92},
                resolution=(res / 2**i, res / 2**i), resolutionunit="CENTIMETER", subfiletype=0 if i == 0 else 1,
                metadata=None,
            )  # fmt: skip
            pil = Image.fromarray(level)
            level = np.asarray(pil.resize((pil.width // 2, pil.height // 2), Image.Resampling.BOX))
    tmp.replace(out)
    return out


def naive(slide_path: str, threads: int) -> None:
    """The hand-written loop over every tissue tile of the slide (run in its own process)."""
    import torch
    from zennit.attribution import Gradient
    from zennit.composites import EpsilonPlusFlat
    from zennit.torchvision import SequentialMergeBatchNorm

    from pathxai.model import load_model_with_card, preprocess
    from pathxai.slide import open_slide
    from pathxai.tiling import tile_slide

    torch.set_num_threads(threads)
    model, card = load_model_with_card("default")
    size, mpp = card.input_size, card.mpp
    composite = EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])
    with open_slide(slide_path) as slide, Gradient(model, composite) as attributor:
        grid, _ = tile_slide(slide, mpp, size, None, 0.25, None)
        w, h = slide.dimensions
        scale = mpp / slide.mpp
        canvas = np.zeros((int(h / scale) + size, int(w / scale) + size), dtype=np.float32)
        probs = []
        for s in grid.specs:
            pixels = slide.read_region((s.l0_x, s.l0_y), (size, size), mpp)
            out_grad = torch.zeros(1, len(card.classes))
            out_grad[0, card.tumour_index] = 1.0
            logits, rel = attributor(preprocess(pixels, card), out_grad)
            probs.append(torch.softmax(logits, 1).detach().numpy())
            canvas[s.m_y : s.m_y + size, s.m_x : s.m_x + size] = rel.sum(1)[0].detach().numpy()
    print(f"naive: {len(grid.specs)} tiles")


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB, largest of the process tree's members) of ``cmd``."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    dt = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode() if proc.stderr else ""
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-2000:]}")
    return dt, usage.ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--grid", type=int, default=2, help="mosaic side in GlaS images")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--glas", type=Path, default=Path("/work/shared/data/glas_warwick_qu"))
    ap.add_argument(
        "--cache", type=Path, default=Path(os.environ.get("PATHXAI_BENCH_CACHE", "/tmp/pathxai-bench"))
    )
    ap.add_argument("--runs", default="lrp,none,naive", help="which runs, comma-separated (lrp, none, naive)")
    ap.add_argument("--threads", type=int, default=2, help="torch threads of the naive loop")
    ap.add_argument("--naive", metavar="SLIDE", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.naive:
        naive(args.naive, args.threads)
        return
    slide = build_mosaic(args.glas, args.cache / f"glas_mosaic_{args.grid}x{args.grid}.tiff", args.grid)
    out = args.cache / f"small_slide_out_{args.grid}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    py = sys.executable
    cmds = {
        "lrp": [py, "-m", "pathxai", "heatmap", str(slide), "--out", str(out / "lrp"), "--overwrite"],
        "none": [
            py,
            "-m",
            "pathxai",
            "heatmap",
            str(slide),
            "--method",
            "none",
            "--out",
            str(out / "none"),
            "--overwrite",
        ],
        "naive": [py, str(Path(__file__).resolve()), "--naive", str(slide), "--threads", str(args.threads)],
    }
    runs = [r for r in args.runs.split(",") if r]
    la = os.getloadavg()
    print(f"# {slide.name}, {args.rounds} rounds, load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at start")
    times: dict[str, list[float]] = {r: [] for r in runs}
    for rnd in range(1, args.rounds + 1):
        for r in runs:
            dt, rss = timed(cmds[r], env)
            times[r].append(dt)
            print(f"round {rnd} {r:5s} {dt:6.2f} s  peak RSS {rss:7.0f} MB", flush=True)
    med = {r: statistics.median(v) for r, v in times.items()}
    print("medians: " + ", ".join(f"{r} {v:.2f} s" for r, v in med.items()))
    if "lrp" in med and "naive" in med:
        print(f"pathxai lrp / naive loop: {med['lrp'] / med['naive']:.2f}x")
    if "lrp" in med and "none" in med:
        print(f"--method none / lrp: {med['none'] / med['lrp']:.2f}x")
    summary = out / "lrp" / f"{slide.stem}.json"
    if summary.exists():
        import json

        print("lrp run timings:", json.loads(summary.read_text()).get("timings"))
    la = os.getloadavg()
    print(f"# load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} at end")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
