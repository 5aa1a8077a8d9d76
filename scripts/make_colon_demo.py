"""Build the colon demo "slide" (``pathxai/data/colon_demo/``) from EBHI-Seg images held out of training.

Usage (from the repository root)::

    PYTHONPATH=$PWD python scripts/make_colon_demo.py \
        --data-root ../shared/data --manifest /work/out/i16b/pooled.csv --out pathxai/data/colon_demo

The images come from the ``test`` split of the default model's two-centre manifest (the EBHI rows, site
'China Medical University Shenyang'): every normal test image, and as many adenocarcinoma test images
(one per case, seeded) as fill the same number of cells. Rows of the ``train`` or ``val`` split are never
used. The 224 px images are laid out on a grid (normal images on the left, adenocarcinoma on the right,
so few tiles mix both), framed by glass, and written with pathxai's pyramid writer at the EBHI pixel-size
ESTIMATE (0.95 µm/px; EBHI publishes none). The truth map gives one code per level-0 pixel
(:data:`pathxai.data.colon.TRUTH_CODES`): lesion masks of adenocarcinoma images are tumour, normal
images non-tumour.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from pathxai.data.colon import (
    ADENOCARCINOMA_OTHER,
    ATTRIBUTION,
    GLASS,
    LESION,
    NORMAL,
    TRUTH_CODES,
)
from pathxai.export.tiff import write_pyramid_tiff
from pathxai.jsonio import write_json

SITE = "China Medical University Shenyang"
CELL = 224
GLASS_RGB = (244, 244, 244)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def held_out_rows(manifest: Path, split: str = "test") -> list[dict[str, str]]:
    """The EBHI rows of ``split`` (never ``train``/``val``) of the two-centre manifest."""
    with open(manifest, newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["site"] == SITE and r["split"] == split]
    if split in ("train", "val"):
        raise ValueError("the demo mosaic must not show training or validation cases")
    return rows


def choose(rows: list[dict[str, str]], seed: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """All normal rows, and as many adenocarcinoma rows, one per case as long as cases last (seeded)."""
    normal = sorted((r for r in rows if r["tumor"] == "0"), key=lambda r: r["id"])
    tumour = sorted((r for r in rows if r["tumor"] == "1"), key=lambda r: r["id"])
    rng = np.random.default_rng(seed)
    by_case: dict[str, list[dict[str, str]]] = {}
    for r in tumour:
        by_case.setdefault(r["patient"], []).append(r)
    cases = sorted(by_case)
    order = [cases[i] for i in rng.permutation(len(cases))]
    picked: list[dict[str, str]] = []
    while len(picked) < len(normal) + 1 and any(by_case.values()):
        for case in order:
            if by_case[case] and len(picked) < len(normal) + 1:
                pool = by_case[case]
                picked.append(pool.pop(int(rng.integers(len(pool)))))
    return normal, picked


def layout(
    normal: list[dict[str, str]], tumour: list[dict[str, str]], rows: int, margin: int
) -> list[tuple[dict[str, str], int, int]]:
    """``(row, x, y)`` of every image: normal images fill the left columns, adenocarcinoma the right."""
    half = -(-max(len(normal), len(tumour)) // rows)  # columns per class
    cells: list[tuple[dict[str, str], int, int]] = []
    for block, recs in enumerate((normal, tumour)):
        for i, rec in enumerate(recs):
            col, row = block * half + i // rows, i % rows
            cells.append((rec, margin + col * CELL, margin + row * CELL))
    return cells


def build(
    data_root: Path, manifest: Path, out: Path, rows: int, margin: int, seed: int, mpp: float, quality: int
) -> None:
    """Write the mosaic TIFF, the truth PNG and the JSON description into ``out``."""
    normal, tumour = choose(held_out_rows(manifest), seed)
    cells = layout(normal, tumour, rows, margin)
    width = max(x for _, x, _ in cells) + CELL + margin
    height = max(y for _, _, y in cells) + CELL + margin
    img = np.empty((height, width, 3), dtype=np.uint8)
    img[:] = GLASS_RGB
    truth = np.full((height, width), GLASS, dtype=np.uint8)
    described: list[dict[str, Any]] = []
    for rec, x, y in cells:
        pic = np.asarray(Image.open(data_root / rec["path"]).convert("RGB"))
        if pic.shape != (CELL, CELL, 3) or _sha256(data_root / rec["path"]) != rec["sha256"]:
            raise SystemExit(f"{rec['path']}: not the 224 px image of the manifest")
        img[y : y + CELL, x : x + CELL] = pic
        if rec["tumor"] == "1":
            lesion = np.asarray(Image.open(data_root / rec["mask_path"]).convert("L")) >= 128
            truth[y : y + CELL, x : x + CELL] = np.where(lesion, LESION, ADENOCARCINOMA_OTHER)
        else:
            truth[y : y + CELL, x : x + CELL] = NORMAL
        described.append(
            {
                "id": rec["id"],
                "case": rec["patient"],
                "label": rec["label"],
                "tumor": int(rec["tumor"]),
                "file": Path(rec["path"]).name,
                "sha256": rec["sha256"],
                "x": x,
                "y": y,
                "width": CELL,
                "height": CELL,
            }
        )
    levels = [(height, width)]
    pyramid = [img]
    while min(levels[-1]) > 256:
        pil = Image.fromarray(pyramid[-1])
        pyramid.append(np.asarray(pil.resize((pil.width // 2, pil.height // 2), Image.Resampling.BOX)))
        levels.append(pyramid[-1].shape[:2])
    n_cases = sorted({c["case"] for c in described})
    description = (
        f"pathxai colon demo mosaic of {len(described)} EBHI-Seg images ({len(normal)} normal, "
        f"{len(tumour)} adenocarcinoma; cases {', '.join(n_cases)}), test split of the default model's "
        f"two-centre manifest. {ATTRIBUTION}. Pixel size {mpp} um/px is an ESTIMATE (EBHI publishes none)."
    )
    out.mkdir(parents=True, exist_ok=True)
    write_pyramid_tiff(
        out / "ebhi_colon_mosaic.tif",
        levels,
        lambda lv, y, x, h, w: pyramid[lv][y : y + h, x : x + w],
        mpp,
        quality=quality,
        description=description,
    )
    Image.fromarray(truth).save(out / "ebhi_colon_truth.png", optimize=True)
    write_json(
        out / "ebhi_colon_mosaic.json",
        {
            "name": "pathxai colon demo mosaic (EBHI-Seg)",
            "attribution": ATTRIBUTION,
            "licence": "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/); images unchanged, laid out "
            "on a grid and JPEG-compressed",
            "mpp": mpp,
            "mpp_note": "an ESTIMATE from nuclear areas and crypt diameters against GlaS (about +-25 %); "
            "EBHI-Seg publishes no pixel size",
            "source_manifest": {
                "file": manifest.name,
                "sha256": _sha256(manifest),
                "site": SITE,
                "split": "test",
            },
            "selection": "every normal image of the test split, and as many adenocarcinoma images (one per case "
            f"while cases last, seed {seed}); no train or val case",
            "cases": n_cases,
            "width": width,
            "height": height,
            "truth_codes": {str(k): v for k, v in TRUTH_CODES.items()},
            "images": described,
        },
    )


def main() -> None:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", type=Path, default=Path("../shared/data"))
    p.add_argument("--manifest", type=Path, default=Path("/work/out/i16b/pooled.csv"))
    p.add_argument("--out", type=Path, default=Path("pathxai/data/colon_demo"))
    p.add_argument("--rows", type=int, default=4)
    p.add_argument("--margin", type=int, default=64)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mpp", type=float, default=0.95)
    p.add_argument("--quality", type=int, default=95, help="JPEG quality of the tiles")
    a = p.parse_args()
    build(a.data_root, a.manifest, a.out, a.rows, a.margin, a.seed, a.mpp, a.quality)


if __name__ == "__main__":
    main()
