#!/bin/bash
# Reproduce benchmarks/mitigate.md: GlaS with a planted pen and a planted stain shortcut, a small
# compact_cnn trained on each, audited, then mitigated by every method; one folder per run under $OUT.
#   OUT=/work/out/i17-mitigate SEEDS="0 1 2" bash benchmarks/mitigate_glas.sh
#   python benchmarks/mitigate_table.py $OUT        # the table of benchmarks/mitigate.md
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/work/out/i17-mitigate}
SEEDS=${SEEDS:-"0 1 2"}
PY=${PY:-python}
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
PX="nice -n 15 $PY -m pathxai"
cd "$REPO"
for bias in pen stain; do
  [ -f "$OUT/$bias/manifest.csv" ] || $PY benchmarks/mitigate_plant.py --bias $bias --out "$OUT/$bias"
done
for s in $SEEDS; do
  for bias in pen stain; do
    M=$OUT/models/$bias-s$s
    [ -f "$M/model_card.json" ] || $PX train --manifest "$OUT/$bias/manifest.csv" --arch compact_cnn \
      --arch-kwargs '{"widths":[8,16,32,32,64]}' --epochs 5 --stride 112 --seed $s --threads 1 --quiet --out "$M"
    A=$OUT/audits/$bias-s$s
    [ -f "$A/report.json" ] || $PX audit --manifest "$OUT/$bias/manifest.csv" --model "$M" \
      --config benchmarks/mitigate_audit.json --out "$A" --quiet
    if [ $bias = pen ]; then finding=artifact.relevance:pen:blue; methods="clarc-p rr-clarc clarc-a mask rebalance"
    else finding=stain.probe.label; methods="clarc-p rr-clarc clarc-a stain"; fi
    for m in $methods; do
      R=$OUT/mitigated/$bias-s$s-$m
      [ -f "$R/mitigation.json" ] || $PX mitigate --model "$M" --manifest "$OUT/$bias/manifest.csv" --audit "$A" \
        --finding $finding --method $m --epochs 3 --stride 112 --seed $s --quiet --out "$R" || true
    done
  done
done
