"""Record a two-centre model's per-centre held-out results, recipe and licence in its model card.

Reads the ``pathxai evaluate`` JSONs of the held-out test cases (``per_site``, at the card's threshold)
and of the Kather 2016 tiles, and writes them to the card's ``metrics["test_per_centre"]`` and
``metrics["kather2016"]``, with a plain-language ``extra["training_data"]`` and the licence. The
weights are not touched (their sha256 stays valid).

Usage::

    python benchmarks/card_centres.py MODEL_DIR --test EVAL_TEST.json --kather EVAL_KATHER.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from pathxai.model.card import CARD_FILENAME, ModelCard

LICENCE = (
    "research use only, non-commercial: trained on GlaS (Warwick-QU, research use only) and EBHI-Seg "
    "(CC BY 4.0, Shi et al., Front. Med. 2023); the GlaS terms bind the weights"
)
TRAINING_DATA = {
    "sites": {
        "UHCW Warwick": "GlaS / Warwick-QU colon H&E, Zeiss MIRAX MIDI 20x, 0.62005 um/px (data_manifests/glas.csv)",
        "China Medical University Shenyang": (
            "EBHI-Seg adenocarcinoma (tumour) and normal (non-tumour) biopsies, 224 px images; pixel size "
            "not published, 0.95 um/px is an estimate (about +-25 %), trained with +-15 % scale jitter "
            "(data_manifests/ebhi_seg.csv)"
        ),
    },
    "split": (
        "pooled manifest from benchmarks/centre_manifests.py: test = GlaS fold 3 + EBHI fold 0 (never seen), "
        "val = GlaS glas_p03, glas_p13 + EBHI GTXC2012827, GT2012336, GT2014789, GT2016882 (calibration only), "
        "train = the rest"
    ),
    "recipe": (
        "compact_cnn 24-48-96-192-256, 112 px at 1.24 um/px, stride 112, 3 epochs, AdamW 2e-3 cosine; HED "
        "jitter sigma 0.1 / bias 0.05 + stain-matrix perturbation 0.05, scale jitter +-15 %, flips/rotations, "
        "patches sampled balanced over (site, class); temperature and threshold fitted on val"
    ),
}


def main() -> None:
    """Update the card in place."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--test", type=Path, required=True)
    ap.add_argument("--kather", type=Path, required=True)
    args = ap.parse_args()
    path = args.model / CARD_FILENAME
    card = ModelCard.from_json(path.read_text())
    test = json.loads(args.test.read_text())
    kather = json.loads(args.kather.read_text())
    keep = (
        "n",
        "n_tumour",
        "auc",
        "accuracy",
        "balanced_accuracy",
        "sensitivity",
        "specificity",
        "threshold",
    )
    per_centre = {
        site: {level: {k: m[level][k] for k in keep} for level in ("patch", "image")}
        for site, m in test["per_site"].items()
    }
    metrics = {
        **card.metrics,
        "test_per_centre": per_centre,
        "kather2016": {k: kather[k] for k in keep},
    }
    new = dataclasses.replace(
        card, metrics=metrics, licence=LICENCE, extra={**card.extra, "training_data": TRAINING_DATA}
    )
    path.write_text(new.to_json())
    print(f"updated {path}")


if __name__ == "__main__":
    main()
