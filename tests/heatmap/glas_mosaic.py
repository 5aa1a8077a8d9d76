"""A realistic test slide with ground truth: a mosaic of real GlaS images written as a pyramidal TIFF.

GlaS images (0.62 µm/px) are cropped to ``cell`` pixels and laid out on a ``rows x cols`` grid, benign and
malignant in known positions; the gland annotation masks are laid out the same way.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

GLAS_MPP = 0.62


@dataclass(frozen=True)
class Mosaic:
    """The mosaic slide and its ground truth."""

    path: Path
    labels: np.ndarray  # (rows, cols) 1 = malignant
    names: list[list[str]]
    glands: np.ndarray  # (H, W) bool gland mask at level 0
    cell: tuple[int, int]  # (width, height) of one image in level-0 pixels
    mpp: float = GLAS_MPP


def build_glas_mosaic(
    glas_dir: Path, out: Path, patients: list[str], rows: int = 4, cols: int = 4, seed: int = 0,
    cell: tuple[int, int] = (768, 512),
) -> Mosaic:  # fmt: skip
    """Write a ``rows x cols`` mosaic of half benign, half malignant GlaS images of ``patients``.

    Pass the default model's held-out test patients (its card's ``training.test_patients``) so the
    model never saw any image of the mosaic.
    """
    with open(glas_dir / "manifest.csv", newline="") as fh:
        recs = [
            r
            for r in csv.DictReader(fh)
            if r["patient_id"] in set(patients) and int(r["width"]) >= cell[0] and int(r["height"]) >= cell[1]
        ]
    rng = np.random.default_rng(seed)
    n = rows * cols
    benign = [r for r in recs if r["tumor"] == "0"]
    malignant = [r for r in recs if r["tumor"] == "1"]
    chosen = [benign[i] for i in rng.permutation(len(benign))[: n // 2]]
    chosen += [malignant[i] for i in rng.permutation(len(malignant))[: n - n // 2]]
    order = rng.permutation(n)
    cw, ch = cell
    img = np.empty((rows * ch, cols * cw, 3), dtype=np.uint8)
    glands = np.zeros((rows * ch, cols * cw), dtype=bool)
    labels = np.zeros((rows, cols), dtype=np.int64)
    names = [["" for _ in range(cols)] for _ in range(rows)]
    for pos, idx in enumerate(order):
        r, c = divmod(pos, cols)
        rec = chosen[idx]
        pic = np.asarray(Image.open(glas_dir / rec["path"]).convert("RGB"))[:ch, :cw]
        mask = np.asarray(Image.open(glas_dir / rec["mask_path"]))[:ch, :cw] > 0
        img[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = pic
        glands[r * ch : (r + 1) * ch, c * cw : (c + 1) * cw] = mask
        labels[r, c] = int(rec["tumor"])
        names[r][c] = Path(rec["path"]).stem
    res = 1e4 / GLAS_MPP
    with tifffile.TiffWriter(out) as tif:
        level = img
        for i in range(3):
            tif.write(
                level, tile=(256, 256), photometric="rgb", compression="jpeg", compressionargs={"level": 92},
                resolution=(res / 2**i, res / 2**i), resolutionunit="CENTIMETER", subfiletype=0 if i == 0 else 1,
                metadata=None,
            )  # fmt: skip
            pil = Image.fromarray(level)
            level = np.asarray(pil.resize((pil.width // 2, pil.height // 2), Image.Resampling.BOX))
    return Mosaic(out, labels, names, glands, cell)
