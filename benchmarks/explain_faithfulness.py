"""Faithfulness of the explanation methods on GlaS patches: region perturbation (MoRF) AUC vs random.

Usage::

    python benchmarks/explain_faithfulness.py --model default --patches 128 --steps 16 --patch 8

For held-out GlaS images (the GlaS test splits, or the patients the model card lists as held out) the
script cuts non-overlapping patches at the model's resolution, explains the labelled class of every
patch with each method, and runs batched region perturbation (most relevant ``k x k`` regions first,
replaced by a blurred copy of the image or by the image mean). It prints, per method, the mean AUC of the
target-logit curve (lower = more faithful) with its standard error, the AUC of the random-relevance
baseline on the same patches, the share of patches where the method beats random, and the relevance mass
/ rank accuracy inside the GlaS gland masks.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathxai.explain import Explainer
from pathxai.explain.metrics import (
    random_relevance,
    region_perturbation,
    relevance_mass_accuracy,
    relevance_rank_accuracy,
)
from pathxai.model import load_model_with_card, preprocess
from pathxai.model.datasets import read_rgb, rescale_to_mpp, tissue_fraction

GLAS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "glas_warwick_qu"
GLAS_MPP = 0.62
METHODS = [
    "lrp",
    "lrp_epsilon_gamma_box",
    "lrp_epsilon_alpha2_beta1_flat",
    "gradient",
    "gradient_x_input",
    "smoothgrad",
    "integrated_gradients",
]


def held_out_rows(card: object) -> list[dict[str, str]]:
    with open(GLAS / "manifest.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    training = getattr(card, "training", {}) or {}
    for key in ("test_patients", "held_out_patients", "heldout_patients", "val_patients"):
        patients = training.get(key)
        if patients:
            chosen = [r for r in rows if r["patient_id"] in set(patients)]
            if chosen:
                return chosen
    return [r for r in rows if r["split"].startswith("test")]


def glas_patches(card: object, n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (pixels (N, S, S, 3) uint8, labels (N,), gland masks (N, S, S)) from held-out images."""
    size = int(card.input_size)  # type: ignore[attr-defined]
    mpp = float(card.mpp)  # type: ignore[attr-defined]
    pixels, labels, masks = [], [], []
    for row in held_out_rows(card):
        img = rescale_to_mpp(read_rgb(GLAS / row["path"]), GLAS_MPP, mpp)
        h, w = img.shape[:2]
        ann = Image.fromarray(read_rgb(GLAS / row["mask_path"])[..., 0] > 0)
        gland = np.asarray(ann.resize((w, h), Image.Resampling.NEAREST), dtype=bool)
        for y in range(0, h - size + 1, size):
            for x in range(0, w - size + 1, size):
                tile = img[y : y + size, x : x + size]
                if tissue_fraction(tile) < 0.5:
                    continue
                pixels.append(tile)
                labels.append(int(row["tumor"]))
                masks.append(gland[y : y + size, x : x + size])
    rng = np.random.default_rng(seed)
    labels_a = np.asarray(labels)
    # balanced sample of benign and malignant patches
    pick = []
    for cls in (0, 1):
        idx = np.flatnonzero(labels_a == cls)
        pick += list(rng.choice(idx, size=min(len(idx), n // 2), replace=False))
    pick_a = np.sort(np.asarray(pick))
    return np.stack(pixels)[pick_a], labels_a[pick_a], np.stack(masks)[pick_a]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--patches", type=int, default=128)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--baselines", nargs="+", default=["blur", "mean"])
    parser.add_argument("--methods", nargs="+", default=METHODS)
    parser.add_argument("--random-seeds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, card = load_model_with_card(args.model)
    model = model.eval()
    pixels, labels, masks = glas_patches(card, args.patches, args.seed)
    x = preprocess(pixels, card)
    target = torch.as_tensor(labels)
    with torch.inference_mode():
        pred = model(x).argmax(1).numpy()
    print(
        f"model: {args.model} ({card.arch}, {card.input_size} px at {card.mpp} mpp); {len(x)} held-out GlaS "
        f"patches ({int((labels == 1).sum())} malignant, {int((labels == 0).sum())} benign); "
        f"patch accuracy {float((pred == labels).mean()):.3f}; load {os.getloadavg()[0]:.2f}"
    )
    print(
        f"region perturbation: MoRF, {args.patch}x{args.patch} regions, {args.steps} steps, score = logit of "
        "the labelled class; AUC over the perturbed fraction (lower = more faithful)"
    )
    print()

    relevances: dict[str, np.ndarray] = {}
    for method in args.methods:
        start = time.perf_counter()
        with Explainer(model, method, batch_size=64, target_class=1) as explainer:
            relevances[method] = explainer(x, target).relevance
        print(f"  {method}: explained in {time.perf_counter() - start:.1f} s", file=sys.stderr)

    for baseline in args.baselines:
        print(f"### baseline = {baseline}")
        print()
        rand_aucs = np.stack(
            [
                region_perturbation(
                    model,
                    x,
                    random_relevance(tuple(relevances[args.methods[0]].shape), seed=s),
                    target,
                    patch=args.patch,
                    steps=args.steps,
                    baseline=baseline,
                ).auc
                for s in range(args.random_seeds)
            ]
        ).mean(0)
        print(
            "| method | MoRF AUC (mean ± s.e.) | Δ vs random | patches better than random | "
            "relevance mass in glands | relevance rank accuracy |"
        )
        print("|---|---|---|---|---|---|")
        n = len(x)
        for method, rel in relevances.items():
            auc = region_perturbation(
                model, x, rel, target, patch=args.patch, steps=args.steps, baseline=baseline
            ).auc
            mass = np.nanmean(relevance_mass_accuracy(rel, masks))
            rank = np.nanmean(relevance_rank_accuracy(rel, masks))
            print(
                f"| {method} | {auc.mean():.3f} ± {auc.std(ddof=1) / np.sqrt(n):.3f} | "
                f"{(auc - rand_aucs).mean():+.3f} | {float((auc < rand_aucs).mean()):.2f} | {mass:.3f} | "
                f"{rank:.3f} |",
                flush=True,
            )
        gland_share = float(masks.mean())
        print(
            f"| random ({args.random_seeds} seeds) | {rand_aucs.mean():.3f} ± "
            f"{rand_aucs.std(ddof=1) / np.sqrt(n):.3f} | 0 | - | {gland_share:.3f} (gland area share) | - |"
        )
        print()
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
