"""Validate the nuclei-size mpp estimator (:mod:`pathxai.slide.nuclei_mpp`) on images of known mpp.

Usage (from the repository root, with ../shared/data beside it)::

    python benchmarks/mpp_estimate.py --reference   # re-measure the GlaS reference constants
    python benchmarks/mpp_estimate.py               # validation table (markdown) + JSON lines

The reference is the 12 GlaS training patients (``split == train`` in data_manifests/glas.csv). The
validation images are not in it: the 4 GlaS test patients (0.62005 µm/px), the 24 Kather 2016 tiles
(0.495 µm/px, Mannheim), CMU-1-Small-Region (0.499 µm/px, Aperio). EBHI-Seg (no published mpp,
0.95 estimated) and the two slides with missing/bogus mpp are listed for what they suggest, not scored.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from pathxai.model.datasets import read_rgb
from pathxai.slide import open_slide
from pathxai.slide.nuclei_mpp import (
    REF_MPP,
    MppEstimate,
    estimate_image_mpp,
    estimate_slide_mpp,
    nucleus_diameters,
)

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def _rows(name: str) -> list[dict[str, str]]:
    with open(REPO / "data_manifests" / name, newline="") as fh:
        return list(csv.DictReader(fh))


def reference() -> None:
    """Print the reference constants measured on the GlaS training patients."""
    med = []
    for r in _rows("glas.csv"):
        if r["split"] != "train":
            continue
        d = nucleus_diameters(read_rgb(DATA / "glas_warwick_qu" / r["path"]))
        med.append(float(np.median(d)))
    m = np.asarray(med)
    print(
        json.dumps(
            {
                "images": len(m),
                "REF_MPP": REF_MPP,
                "REF_DIAMETER_PX": round(float(np.median(m)), 3),
                "REF_LOG_SD": round(float(np.std(np.log(m))), 4),
                "p5_p95": [round(float(v), 2) for v in np.percentile(m, [5, 95])],
            }
        )
    )


def _err(est: MppEstimate, truth: float) -> float | None:
    return None if est.mpp is None else est.mpp / truth - 1


def _summary(name: str, truth: float, ests: list[MppEstimate]) -> dict[str, object]:
    errs = np.asarray([e for e in (_err(x, truth) for x in ests) if e is not None])
    covered = [x.low <= truth <= x.high for x in ests if x.mpp is not None and x.low and x.high]
    return {
        "set": name,
        "truth": truth,
        "n": len(ests),
        "estimated": len(errs),
        "median_mpp": round(float(np.median([x.mpp for x in ests if x.mpp])), 3) if len(errs) else None,
        "median_err_pct": round(100 * float(np.median(errs)), 1) if len(errs) else None,
        "within_20pct": f"{int((np.abs(errs) <= 0.2).sum())}/{len(errs)}",
        "max_abs_err_pct": round(100 * float(np.abs(errs).max()), 1) if len(errs) else None,
        "ci95_covers": f"{sum(covered)}/{len(covered)}",
    }


def validate() -> None:
    """Estimate every validation image and print a markdown table."""
    t0 = time.time()
    out: list[dict[str, object]] = []
    glas = [r for r in _rows("glas.csv") if r["split"] == "test"]
    ests = [estimate_image_mpp(read_rgb(DATA / "glas_warwick_qu" / r["path"])) for r in glas]
    out.append(_summary("GlaS held-out patients (41 images), per image", REF_MPP, ests))
    kat = _rows("kather2016_samples.csv")
    tiles = [read_rgb(DATA / "kather2016_tile_samples" / r["path"]) for r in kat]
    ests = [estimate_image_mpp(t) for t in tiles]
    out.append(_summary("Kather 2016 tiles (24, 150x150), per tile", 0.495, ests))
    out.append(_summary("Kather 2016 tiles, all 24 pooled", 0.495, [estimate_image_mpp(tiles)]))
    by_slide: dict[str, list[np.ndarray]] = {}
    for r, t in zip(kat, tiles, strict=True):
        by_slide.setdefault(r["patient"], []).append(t)
    ests = [estimate_image_mpp(v) for v in by_slide.values()]
    out.append(_summary(f"Kather 2016 tiles pooled per source slide ({len(ests)})", 0.495, ests))
    with open_slide(DATA / "wsi_samples" / "CMU-1-Small-Region.svs") as s:
        cmu = estimate_slide_mpp(s)
    out.append(_summary("CMU-1-Small-Region.svs (slide, 4 regions of 512 px)", 0.499, [cmu]))
    for row in out:
        print(json.dumps(row))
    print()
    print(
        "| images (known mpp) | truth µm/px | estimated | median estimate | median error | within ±20 % | max abs error | 95 % interval covers truth |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for r in out:
        med = "-" if r["median_err_pct"] is None else f"{r['median_err_pct']:+.1f} %"
        top = "-" if r["max_abs_err_pct"] is None else f"{r['max_abs_err_pct']} %"
        print(
            f"| {r['set']} | {r['truth']} | {r['estimated']}/{r['n']} | {r['median_mpp']} | "
            f"{med} | {r['within_20pct']} | {top} | {r['ci95_covers']} |"
        )
    print()
    print("Not scored (no trustworthy mpp):")
    ebhi = _rows("ebhi_seg.csv")[::10]
    e = [estimate_image_mpp(read_rgb(DATA / "ebhi_seg_colon" / r["path"])) for r in ebhi]
    vals = [x.mpp for x in e if x.mpp is not None]
    print(
        f"- EBHI-Seg, every 10th image ({len(ebhi)}; PROVENANCE estimate 0.95): median "
        f"{np.median(vals):.3f} µm/px, IQR {np.percentile(vals, 25):.3f}-{np.percentile(vals, 75):.3f}, "
        f"{len(vals)} estimated"
    )
    for name in ("TCGA-CR-7395-01A-01-TS1.svs", "BRACS_1640_N_3_cropped.tiff"):
        with open_slide(DATA / "wsi_samples" / name) as s:
            t = time.time()
            print(f"- {name}: {estimate_slide_mpp(s).describe()} ({time.time() - t:.1f} s)")
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reference", action="store_true", help="re-measure the GlaS reference constants")
    a = ap.parse_args()
    if a.reference:
        reference()
    else:
        validate()
