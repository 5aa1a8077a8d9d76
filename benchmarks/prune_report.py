"""Summarise a ``pathxai prune-sweep`` CSV as markdown tables (mean ± sd over seeds).

Usage::

    python benchmarks/prune_report.py OUT/sweep.csv [--metric auc] [--at 0.3,0.5]

Prints, per fine-tuning setting, a table of the metric per criterion and ratio, and for the ratios in
``--at`` the paired per-seed difference between LRP and every baseline (mean ± sd, and how many seeds
LRP was ahead).
"""

from __future__ import annotations

import argparse
import csv
import statistics
from collections import defaultdict
from pathlib import Path

ORDER = ("lrp", "ig", "gradient", "taylor", "weight", "random")


def _ms(values: list[float], digits: int = 3) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("csv", type=Path)
    ap.add_argument("--metric", default="auc")
    ap.add_argument("--at", default="0.3,0.5")
    args = ap.parse_args()
    rows = list(csv.DictReader(args.csv.open()))
    metric = args.metric
    base = [float(r[metric]) for r in rows if r["criterion"] == "none" and r[metric]]
    if base:
        print(f"Unpruned model: held-out {metric} = {base[0]:.4f}\n")
    table: dict[tuple[float, str, float], dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r["criterion"] == "none" or not r[metric]:
            continue
        ft = float(r["finetune_epochs"] or 0)
        table[(ft, r["criterion"], float(r["ratio"]))][int(r["seed"])] = float(r[metric])
    fts = sorted({k[0] for k in table})
    crits = [c for c in ORDER if any(k[1] == c for k in table)]
    for ft in fts:
        ratios = sorted({k[2] for k in table if k[0] == ft})
        title = "no fine-tuning" if ft == 0 else f"fine-tuned {ft:g} epoch(s) after pruning"
        print(f"#### {metric} vs fraction of channels pruned, {title}\n")
        print("| criterion | " + " | ".join(f"{q:.0%}" for q in ratios) + " |")
        print("|---|" + "---|" * len(ratios))
        for c in crits:
            cells = [_ms(list(table.get((ft, c, q), {}).values())) for q in ratios]
            print(f"| {c} | " + " | ".join(cells) + " |")
        print()
        at = [float(a) for a in args.at.split(",") if a]
        if "lrp" not in crits:
            continue
        print(f"LRP minus baseline, paired by seed ({metric} points x 100 = pp):\n")
        print("| ratio | " + " | ".join(c for c in crits if c != "lrp") + " |")
        print("|---|" + "---|" * (len(crits) - 1))
        for q in at:
            lrp = table.get((ft, "lrp", q), {})
            cells = []
            for c in crits:
                if c == "lrp":
                    continue
                other = table.get((ft, c, q), {})
                if c == "weight" and len(other) == 1:  # deterministic: one run stands for every seed
                    other = dict.fromkeys(lrp, next(iter(other.values())))
                seeds = sorted(set(lrp) & set(other))
                diffs = [100 * (lrp[s] - other[s]) for s in seeds]
                wins = sum(d > 0 for d in diffs)
                cells.append(f"{_ms(diffs, 1)} pp ({wins}/{len(diffs)})" if diffs else "n/a")
            print(f"| {q:.0%} | " + " | ".join(cells) + " |")
        print()


if __name__ == "__main__":
    main()
