"""Choose the LRP rules of the ``lrp`` pruning criterion on the reference set only (PxP-revisited style).

Usage::

    python benchmarks/prune_lrp_rules.py --out OUT/lrp_rules.csv [--seeds 0,1,2] [--ratios 0.5,0.6]

For every candidate composite (EpsilonPlusFlat, EpsilonGammaBox with several gammas, Alpha2Beta1) and
seed: rank channels on the seed's reference patches (10 images per class), prune at each ratio
(no fine-tuning, BatchNorm statistics as in the default settings) and score the pruned network's
patch AUC on the *reference images' own tiles* (labels of the reference images; never held-out
data). The selection uses the mean reference AUC over seeds and ratios; the held-out AUC is printed
beside it for the record only (not used to choose).
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import statistics
from pathlib import Path

import torch
from sklearn.metrics import roc_auc_score

from pathxai.model.io import load_model_with_card
from pathxai.prune.data import load_prune_data
from pathxai.prune.heldout import evaluate_model
from pathxai.prune.runner import prune_once, reference_scores
from pathxai.prune.settings import PruneSettings

CANDIDATES = {
    "epsilon_plus_flat": ("lrp", 0.25),
    "gamma_box_0.1": ("lrp_epsilon_gamma_box", 0.1),
    "gamma_box_0.25": ("lrp_epsilon_gamma_box", 0.25),
    "gamma_box_1": ("lrp_epsilon_gamma_box", 1.0),
    "alpha2_beta1": ("lrp_epsilon_alpha2_beta1_flat", 0.25),
}


@torch.no_grad()
def reference_auc(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, tumour_index: int) -> float:
    """Patch AUC of ``model`` on the reference tiles."""
    model.eval()
    probs = torch.cat([torch.softmax(model(x[i : i + 32]), 1)[:, tumour_index] for i in range(0, len(x), 32)])
    return float(roc_auc_score(y.numpy(), probs.numpy()))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--manifest", default="data_manifests/glas.csv")
    ap.add_argument("--data-root", default="../shared/data/glas_warwick_qu")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--ratios", default="0.5,0.6")
    ap.add_argument("--candidates", default=",".join(CANDIDATES))
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    model, card = load_model_with_card(args.model)
    data = load_prune_data(card, args.manifest, args.data_root, progress=False)
    base = PruneSettings(drift_patches=0, latency=False)
    rows = []
    for name in args.candidates.split(","):
        method, gamma = CANDIDATES[name]
        settings = dataclasses.replace(base, lrp_method=method, lrp_gamma=gamma)
        for seed in (int(s) for s in args.seeds.split(",")):
            x, y = data.reference_tile_set(settings.reference_per_class, seed, settings.bn_tiles_per_image)
            scores = reference_scores(model, data, "lrp", settings, seed)
            for ratio in (float(r) for r in args.ratios.split(",")):
                _, pruned = prune_once(
                    model, data, "lrp", ratio, settings, seed=seed, precomputed_scores=scores
                )
                row = {
                    "candidate": name,
                    "seed": seed,
                    "ratio": ratio,
                    "reference_auc": reference_auc(pruned, x, y, card.tumour_index),
                    "heldout_auc": evaluate_model(pruned, data)["auc"],
                }
                rows.append(row)
                print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    print("\n| candidate | reference AUC (selection) | held-out AUC (record only) |\n|---|---|---|")
    ranked = sorted(
        {r["candidate"] for r in rows},
        key=lambda c: -statistics.mean(r["reference_auc"] for r in rows if r["candidate"] == c),
    )
    for c in ranked:
        ref = [r["reference_auc"] for r in rows if r["candidate"] == c]
        held = [r["heldout_auc"] for r in rows if r["candidate"] == c]
        print(f"| {c} | {statistics.mean(ref):.3f} | {statistics.mean(held):.3f} |")
    print(f"\nselected on the reference set: {ranked[0]}")


if __name__ == "__main__":
    main()
