"""Largest parameter reduction at <= 1 pp held-out AUC loss, with fine-tuning and measured CPU latency.

Runs ``pathxai prune`` (the real CLI, one process per configuration) for each ratio in ``--ratios`` with
the given criterion and fine-tuning budget, collects every ``pruning.json`` and prints a markdown table
(params, MACs, CPU latency and speed-up, patch/image AUC change, heatmap drift). The best configuration
is the one with the largest parameter reduction whose patch AUC drops by at most ``--max-auc-loss-pp``.

Usage::

    python benchmarks/prune_compress.py --out /tmp/prune_compress --criterion lrp \
        --ratios 0.3,0.4,0.5 --finetune-epochs 3 [--model default] [--global]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--manifest", default=str(REPO / "data_manifests" / "glas.csv"))
    ap.add_argument("--data-root", default=str(REPO.parent / "shared" / "data" / "glas_warwick_qu"))
    ap.add_argument("--criterion", default="lrp")
    ap.add_argument("--ratios", default="0.3,0.4,0.5")
    ap.add_argument("--finetune-epochs", default="3")
    ap.add_argument("--finetune-steps-per-epoch", default=None)
    ap.add_argument("--steps", default="1")
    ap.add_argument("--global", dest="global_pruning", action="store_true")
    ap.add_argument("--seed", default="0")
    ap.add_argument("--max-auc-loss-pp", type=float, default=1.0)
    ap.add_argument("--skip-existing", action="store_true")
    args = ap.parse_args()
    results = []
    for ratio in [r for r in args.ratios.split(",") if r]:
        out = args.out / f"{args.criterion}_r{ratio}_ft{args.finetune_epochs}_s{args.steps}"
        cmd = [
            sys.executable, "-m", "pathxai", "prune", "--model", args.model, "--manifest", args.manifest,
            "--data-root", args.data_root, "--criterion", args.criterion, "--ratio", ratio,
            "--finetune-epochs", args.finetune_epochs, "--steps", args.steps, "--seed", args.seed,
            "--out", str(out), "--quiet",
        ]  # fmt: skip
        if args.finetune_steps_per_epoch:
            cmd += ["--finetune-steps-per-epoch", args.finetune_steps_per_epoch]
        if args.global_pruning:
            cmd.append("--global")
        if not (args.skip_existing and (out / "pruning.json").is_file()):
            print("$", shlex.join(["pathxai", *cmd[3:]]), file=sys.stderr, flush=True)
            subprocess.run(cmd, check=True, cwd=REPO)
        report = json.loads((out / "pruning.json").read_text())
        results.append((ratio, report))
    print(
        "| ratio | params | MACs | CPU latency (ms) | speed-up | patch AUC | Δ AUC (pp) | image AUC | "
        "drift pearson | drift top-10% IoU |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    best = None
    for ratio, rep in results:
        b, a, s = rep["plan"]["metrics_before"], rep["plan"]["metrics_after"], rep["summary"]
        d = rep.get("drift") or {}
        print(
            f"| {ratio} | {b['params']:.0f} → {a['params']:.0f} (−{100 * s['params_removed_fraction']:.0f}%) "
            f"| {b['macs'] / 1e6:.0f}M → {a['macs'] / 1e6:.0f}M "
            f"| {b.get('latency_ms', float('nan')):.1f} → {a.get('latency_ms', float('nan')):.1f} "
            f"| {s.get('latency_speedup', float('nan')):.2f}x "
            f"| {b['auc']:.4f} → {a['auc']:.4f} | {s['auc_change_pp']:+.2f} "
            f"| {b.get('image_auc', float('nan')):.4f} → {a.get('image_auc', float('nan')):.4f} "
            f"| {d.get('pearson', float('nan')):.3f} | {d.get('topk_iou', float('nan')):.3f} |"
        )
        if s["auc_change_pp"] >= -args.max_auc_loss_pp and (
            best is None or s["params_removed_fraction"] > best[1]["summary"]["params_removed_fraction"]
        ):
            best = (ratio, rep)
    if best is not None:
        s = best[1]["summary"]
        print(
            f"\nBest within {args.max_auc_loss_pp} pp AUC loss: ratio {best[0]}: "
            f"{100 * s['params_removed_fraction']:.1f}% parameters removed, "
            f"{s.get('latency_speedup', float('nan')):.2f}x CPU speed-up, AUC change {s['auc_change_pp']:+.2f} pp"
        )
    else:
        print(f"\nNo configuration within {args.max_auc_loss_pp} pp AUC loss.")


if __name__ == "__main__":
    main()
