#!/usr/bin/env bash
# Re-audit a pruned plan (issue 18 item 5): prune the default model, audit the pruned model with the
# same audit settings as the unpruned one, and diff the two report.json files finding by finding.
#   OUT=/tmp/reaudit RATIO=0.5 FT_EPOCHS=3 bash benchmarks/prune_reaudit.sh
# BEFORE=DIR reuses an existing audit of the unpruned model made with the same $AUDIT_ARGS
# (otherwise it is run here). AUDIT_ARGS="--config benchmarks/mitigate_audit.json" shrinks both audits.
# Cost on 2 busy cores: pruning + 3x60 fine-tuning steps ~10 min, each GlaS audit ~13-20 min.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/pathxai_reaudit}
RATIO=${RATIO:-0.5}
CRITERION=${CRITERION:-lrp}
FT_EPOCHS=${FT_EPOCHS:-3}
FT_STEPS=${FT_STEPS:-60}
SEED=${SEED:-0}
DATA=${GLAS_ROOT:-$REPO/../shared/data/glas_warwick_qu}
MAN=data_manifests/glas.csv
AUDIT_ARGS=${AUDIT_ARGS:-}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PX="nice -n ${NICE:-15} $PY -m pathxai"
cd "$REPO"
PLAN=$CRITERION-r$RATIO-ft$FT_EPOCHS-s$SEED
M=$OUT/models/$PLAN
[ -f "$M/pruning.json" ] || $PX prune --model default --manifest "$MAN" --data-root "$DATA" \
  --criterion "$CRITERION" --ratio "$RATIO" --finetune-epochs "$FT_EPOCHS" \
  --finetune-steps-per-epoch "$FT_STEPS" --seed "$SEED" --no-latency --drift-patches 16 --quiet --out "$M"
BEFORE=${BEFORE:-$OUT/audits/unpruned}
# shellcheck disable=SC2086
[ -f "$BEFORE/report.json" ] || $PX audit --manifest "$MAN" --data-root "$DATA" --model default \
  $AUDIT_ARGS --out "$BEFORE" --quiet
AFTER=$OUT/audits/$PLAN
# shellcheck disable=SC2086
[ -f "$AFTER/report.json" ] || $PX audit --manifest "$MAN" --data-root "$DATA" --model "$M" \
  $AUDIT_ARGS --out "$AFTER" --quiet
$PY -m pathxai audit-diff "$BEFORE" "$AFTER" --out "$OUT/diff-$PLAN.json"
