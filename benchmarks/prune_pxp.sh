#!/usr/bin/env bash
# Issue 18: pruning past 50 % without fine-tuning (BatchNorm statistics, ablations) and the PxP protocol.
# Usage: benchmarks/prune_pxp.sh OUT_DIR [MODEL]   (repository root, venv active; resumable: re-running
# skips finished rows). MODEL defaults to "default" (re-run this script when the default model changes).
# Every sweep: no fine-tuning, 10 reference images per class, seeds 0,1,2, held-out = the card's test patients.
set -euo pipefail
OUT=${1:-/tmp/pathxai_pxp}
MODEL=${2:-default}
DATA=${GLAS_ROOT:-../shared/data/glas_warwick_qu}
COMMON=(--model "$MODEL" --manifest data_manifests/glas.csv --data-root "$DATA" --seeds 0,1,2
        --reference-per-class 10 --drift-patches 0 --quiet)

# 1. The targets at 30/50/60 % with the default stability options (BatchNorm "shift").
pathxai prune-sweep "${COMMON[@]}" --criteria lrp,weight --ratios 0.3,0.5,0.6 --out "$OUT/pxp"
# 2. Ablation of the BatchNorm handling (none = the statistics of the unpruned network; full = plain
#    re-estimation on the reference tiles).
for bn in none full; do
  pathxai prune-sweep "${COMMON[@]}" --criteria lrp,weight --ratios 0.3,0.5,0.6 --bn-recalibrate "$bn" \
    --out "$OUT/ablation_bn_$bn"
done
# 3. PxP protocol: rates 0-95 % in 5 % steps, area under AUC-vs-rate per criterion (rows of step 1 reused).
pathxai prune-sweep "${COMMON[@]}" --pxp --criteria lrp,weight,random,ig,pattern_attribution --out "$OUT/pxp"
# 4. Ranking ablations for LRP: signed relevance, global ranking (raw and max-normalised per layer).
pathxai prune-sweep "${COMMON[@]}" --criteria lrp --ratios 0.3,0.5,0.6 --relevance signed --out "$OUT/ablation_signed"
pathxai prune-sweep "${COMMON[@]}" --criteria lrp --ratios 0.3,0.5,0.6 --global --out "$OUT/ablation_global"
pathxai prune-sweep "${COMMON[@]}" --criteria lrp --ratios 0.3,0.5,0.6 --global --normalizer max \
  --out "$OUT/ablation_global_max"
# 5. LRP rules chosen on the reference set only (held-out AUC printed for the record, not used).
python benchmarks/prune_lrp_rules.py --model "$MODEL" --data-root "$DATA" --out "$OUT/lrp_rules.csv"
# Tables.
for d in "$OUT"/pxp "$OUT"/ablation_*; do
  echo "== $d"; python benchmarks/prune_report.py "$d/sweep.csv" --at 0.3,0.5,0.6
done
cat "$OUT/pxp/pxp.csv"
