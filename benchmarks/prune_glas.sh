#!/usr/bin/env bash
# Reproduce the pruning numbers of benchmarks/prune.md on real GlaS (patient-grouped: the default
# model's held-out patients are the evaluation set, reference/fine-tuning patches come from the others).
# Usage: benchmarks/prune_glas.sh OUT_DIR   (from the repository root, venv active; ~1 h on 2 busy cores)
set -euo pipefail
OUT=${1:-/tmp/pathxai_prune}
DATA=${GLAS_ROOT:-../shared/data/glas_warwick_qu}
MAN=data_manifests/glas.csv

# 1. No fine-tuning, scarce reference set (10 images per class): AUC vs fraction pruned, 3 seeds.
pathxai prune-sweep --model default --manifest "$MAN" --data-root "$DATA" \
  --criteria lrp,ig,gradient,taylor,weight,random --ratios 0.1,0.2,0.3,0.4,0.5,0.6,0.7 \
  --seeds 0,1,2 --reference-per-class 10 --drift-patches 16 --out "$OUT/sweep_noft"
python benchmarks/prune_report.py "$OUT/sweep_noft/sweep.csv" --at 0.3,0.5

# 2. With a short fine-tuning after pruning (same criteria and seeds, fewer ratios).
pathxai prune-sweep --model default --manifest "$MAN" --data-root "$DATA" \
  --criteria lrp,ig,gradient,taylor,weight,random --ratios '' --finetune-ratios 0.5 \
  --finetune-epochs 1 --finetune-steps-per-epoch 20 --seeds 0,1,2 --drift-patches 16 \
  --out "$OUT/sweep_ft"
python benchmarks/prune_report.py "$OUT/sweep_ft/sweep.csv" --at 0.5

# 3. Compression with fine-tuning: largest parameter reduction at <= 1 pp AUC loss, CPU latency.
python benchmarks/prune_compress.py --out "$OUT/compress" --criterion lrp --ratios 0.3,0.35 \
  --finetune-epochs 3 --finetune-steps-per-epoch 60
python benchmarks/prune_latency.py "$OUT/compress/lrp_r0.35_ft3_s1" "$OUT/compress/lrp_r0.3_ft3_s1" --rounds 20
