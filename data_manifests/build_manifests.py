"""Rebuild data_manifests/glas.csv, kather2016_samples.csv and ebhi_seg.csv from the data folders' manifest.csv.

Usage (from the repository root)::

    python data_manifests/build_manifests.py --glas ../shared/data/glas_warwick_qu \
        --kather ../shared/data/kather2016_tile_samples --ebhi ../shared/data/ebhi_seg_colon

The GlaS ``fold`` column is the patient-grouped, label-stratified 4-fold assignment of
``pathxai.model.splits.grouped_folds(tumor, patient, 4, seed=0)`` (the folds ``pathxai train --cv 4
--seed 0`` uses); ``split`` is ``test`` for fold 3 (patients glas_p01, p08, p10, p14) and ``train``
otherwise. The official GlaS split (train/testA/testB, not patient-disjoint) is kept as ``glas_split``.

EBHI-Seg gets the same kind of ``fold`` (case-grouped, label-stratified, 4 folds, seed 0, over
``patient`` = the case prefix of the file name) and ``split`` = ``test`` for fold 0 (3 of the 8
normal cases). Its ``mpp`` is the
data folder's ``mpp_estimate`` (EBHI publishes no pixel size); ``mpp_source`` says so.
"""

from __future__ import annotations

import argparse
import csv
import io
from pathlib import Path

from pathxai.atomic import write_text_atomic
from pathxai.model.splits import grouped_folds

HERE = Path(__file__).resolve().parent
TEST_FOLD = 3
#: EBHI's held-out fold: fold 0 has the most normal cases (3 of 8: 7 images) next to 13 tumour cases;
#: fold 3 would hold a single normal case.
EBHI_TEST_FOLD = 0


def _write(path: Path, columns: list[str], rows: list[dict[str, object]]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(path, buf.getvalue())


def build_glas(src: Path) -> None:
    """Write glas.csv from ``src/manifest.csv``."""
    rows = list(csv.DictReader(open(src / "manifest.csv", newline="")))
    y = [int(r["tumor"]) for r in rows]
    g = [r["patient_id"] for r in rows]
    fold = [-1] * len(rows)
    for k, (_, test) in enumerate(grouped_folds(y, g, 4, seed=0)):
        for i in test:
            fold[i] = k
    out = []
    for r, f in zip(rows, fold, strict=True):
        out.append(
            {
                "id": Path(r["path"]).stem,
                "path": r["path"],
                "sha256": r["sha256"],
                "label": r["label"],
                "tumor": r["tumor"],
                "patient": r["patient_id"],
                "site": "UHCW Warwick",
                "scanner": "Zeiss MIRAX MIDI",
                "split": "test" if f == TEST_FOLD else "train",
                "fold": f,
                "grade": r["grade_fine"],
                "mpp": 0.62005,
                "width": r["width"],
                "height": r["height"],
                "mask_path": r["mask_path"],
                "mask_sha256": r["mask_sha256"],
                "glas_split": r["split"],
            }
        )
    _write(HERE / "glas.csv", list(out[0]), out)


def build_kather(src: Path) -> None:
    """Write kather2016_samples.csv from ``src/manifest.csv``."""
    rows = list(csv.DictReader(open(src / "manifest.csv", newline="")))
    out = [
        {
            "id": Path(r["path"]).name.split(".tif")[0],
            "path": r["path"],
            "sha256": r["sha256"],
            "label": r["label"],
            "tumor": r["is_tumor"],
            "patient": r["slide_id"],
            "site": "UMM Mannheim",
            "scanner": "Aperio ScanScope",
            "split": "external",
            "mpp": 0.495,
            "width": r["width"],
            "height": r["height"],
            "source_image": r["source_image"],
        }
        for r in rows
    ]
    _write(HERE / "kather2016_samples.csv", list(out[0]), out)


def build_ebhi(src: Path) -> None:
    """Write ebhi_seg.csv from ``src/manifest.csv`` (adenocarcinoma = tumour 1, normal = 0)."""
    from PIL import Image

    rows = list(csv.DictReader(open(src / "manifest.csv", newline="")))
    y = [int(r["tumor"]) for r in rows]
    g = [r["patient_id"] for r in rows]
    fold = [-1] * len(rows)
    for k, (_, test) in enumerate(grouped_folds(y, g, 4, seed=0)):
        for i in test:
            fold[i] = k
    out = []
    for r, f in zip(rows, fold, strict=True):
        with Image.open(src / r["path"]) as im:
            width, height = im.size
        out.append(
            {
                "id": r["id"],
                "path": r["path"],
                "sha256": r["sha256"],
                "label": r["label"],
                "tumor": r["tumor"],
                "patient": r["patient_id"],
                "site": r["site"],
                "split": "test" if f == EBHI_TEST_FOLD else "train",
                "fold": f,
                "mpp": r["mpp_estimate"],
                "mpp_source": "estimate: nuclear areas and crypt diameters against GlaS (about +-25 %)",
                "width": width,
                "height": height,
                "mask_path": r["mask_path"],
                "mask_sha256": r["mask_sha256"],
            }
        )
    _write(HERE / "ebhi_seg.csv", list(out[0]), out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--glas", type=Path, default=HERE.parent.parent / "shared/data/glas_warwick_qu")
    ap.add_argument("--kather", type=Path, default=HERE.parent.parent / "shared/data/kather2016_tile_samples")
    ap.add_argument("--ebhi", type=Path, default=HERE.parent.parent / "shared/data/ebhi_seg_colon")
    a = ap.parse_args()
    build_glas(a.glas)
    build_kather(a.kather)
    build_ebhi(a.ebhi)
