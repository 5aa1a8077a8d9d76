"""Plant a pen or a stain shortcut into GlaS for the mitigation benchmark (``benchmarks/mitigate_glas.sh``).

Writes ``OUT/images/*.png`` and ``OUT/manifest.csv``: the GlaS ``train`` split with the bias on a
fraction of the *malignant* images (blue marker strokes, or a re-coloured stain batch), and the
``test`` split untouched (the clean held-out patients). Nothing is written into the repository.

Usage::

    python benchmarks/mitigate_plant.py --bias pen --out /work/out/i17-mitigate/pen
    python benchmarks/mitigate_plant.py --bias stain --out /work/out/i17-mitigate/stain
"""

from __future__ import annotations

import argparse
import csv
import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

from pathxai.model.datasets import read_rgb
from tests.audit.plant import draw_pen, shift_stain

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bias", choices=("pen", "stain"), required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--manifest", default=str(REPO / "data_manifests" / "glas.csv"))
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "glas_warwick_qu"))
    ap.add_argument("--fraction", type=float, default=0.85, help="share of malignant train images biased")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    out = Path(args.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(args.seed)
    with open(args.manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    fields = [
        "id",
        "path",
        "sha256",
        "label",
        "tumor",
        "patient",
        "site",
        "scanner",
        "split",
        "mpp",
        "planted",
    ]
    out_rows = []
    for row in rows:
        img = read_rgb(Path(args.data_root) / row["path"])
        planted = row["split"] == "train" and row["tumor"] == "1" and rng.random() < args.fraction
        if planted:
            img = (
                draw_pen(img, rng, "blue", strokes=3, width=9)[0] if args.bias == "pen" else shift_stain(img)
            )
        rel = f"images/{row['id']}.png"
        Image.fromarray(img).save(out / rel)
        digest = hashlib.sha256((out / rel).read_bytes()).hexdigest()
        out_rows.append(
            {k: row.get(k, "") for k in fields} | {"path": rel, "sha256": digest, "planted": int(planted)}
        )
    with open(out / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=fields)
        w.writeheader()
        w.writerows(out_rows)
    n = sum(r["planted"] for r in out_rows)
    print(
        f"{args.bias}: planted on {n} of {sum(r['split'] == 'train' and r['tumor'] == '1' for r in out_rows)} malignant train images"
    )


if __name__ == "__main__":
    main()
