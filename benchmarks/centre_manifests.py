"""Write the two-centre manifests of issue 16 (pooled, leave-one-centre-out) under an output folder.

The GlaS and EBHI-Seg manifests have different data roots. Their rows are concatenated with each
``path``/``mask_path`` prefixed by the dataset's folder in ``../shared/data``, so every CSV written
here takes ``--data-root ../shared/data``.

* ``pooled.csv``: ``split`` = ``test`` for each manifest's test cases (GlaS fold 3, EBHI fold 0),
  ``val`` for the calibration cases (GlaS glas_p03 + glas_p13; EBHI case GTXC2012827, 5 normal
  images, plus adenocarcinoma cases GT2012336, GT2014789, GT2016882 of fold 2), ``train`` for the rest.
* ``loco_glas_to_ebhi.csv`` / ``loco_ebhi_to_glas.csv``: one centre entirely ``train``, the other
  entirely ``test``.

Usage::

    python benchmarks/centre_manifests.py --out /work/out/i16-model
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "data_manifests"
SOURCES = {"glas": ("glas.csv", "glas_warwick_qu"), "ebhi": ("ebhi_seg.csv", "ebhi_seg_colon")}
VAL_CASES = {"glas_p03", "glas_p13", "GTXC2012827", "GT2012336", "GT2014789", "GT2016882"}
COLUMNS = [
    "id",
    "path",
    "sha256",
    "label",
    "tumor",
    "patient",
    "site",
    "split",
    "fold",
    "mpp",
    "mask_path",
    "centre",
]


def _rows(name: str) -> list[dict[str, str]]:
    fname, folder = SOURCES[name]
    with (ROOT / fname).open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    for r in rows:
        r["path"] = f"{folder}/{r['path']}"
        if r.get("mask_path"):
            r["mask_path"] = f"{folder}/{r['mask_path']}"
        r["centre"] = name
    return rows


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    print(
        f"{path}: {len(rows)} rows, "
        + ", ".join(f"{s}={sum(r['split'] == s for r in rows)}" for s in sorted({r["split"] for r in rows}))
    )


def main() -> None:
    """Write the manifests."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True)
    out = Path(ap.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    data = {name: _rows(name) for name in SOURCES}
    pooled = []
    for rows in data.values():
        for r in rows:
            split = "val" if r["patient"] in VAL_CASES else r["split"]
            pooled.append({**r, "split": split})
    _write(out / "pooled.csv", pooled)
    for a, b in (("glas", "ebhi"), ("ebhi", "glas")):
        loco = [{**r, "split": "train"} for r in data[a]] + [{**r, "split": "test"} for r in data[b]]
        _write(out / f"loco_{a}_to_{b}.csv", loco)


if __name__ == "__main__":
    main()
