"""``sweep.png``: a sweep's held-out quality versus fraction of channels pruned, per criterion."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pathxai.errors import PruneError
from pathxai.prune.criteria import CRITERIA
from pathxai.prune.sweep import read_rows

__all__ = ["plot_sweep"]


def _panel(ax: Any, rows: list[dict[str, str]], ft: float, metric: str, base: list[float]) -> None:
    """Draw one fine-tuning setting: mean ± sd over seeds per criterion, from the unpruned value."""
    for crit in [c for c in CRITERIA if any(r["criterion"] == c for r in rows)]:
        sel = [
            r
            for r in rows
            if r["criterion"] == crit and float(r["finetune_epochs"] or 0) == ft and r.get(metric)
        ]
        ratios = sorted({float(r["ratio"]) for r in sel})
        if not ratios:
            continue
        mean = [np.mean([float(r[metric]) for r in sel if float(r["ratio"]) == q]) for q in ratios]
        sd = [np.std([float(r[metric]) for r in sel if float(r["ratio"]) == q]) for q in ratios]
        xs = [0.0, *ratios] if base else ratios
        ys = [base[0], *mean] if base else mean
        es = [0.0, *sd] if base else sd
        ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=crit, lw=2 if crit == "lrp" else 1)
    if base:
        ax.axhline(base[0], color="grey", ls="--", lw=0.8, label="unpruned")
    ax.set_xlabel("fraction of channels pruned")
    ax.set_ylabel(f"held-out patch {metric.upper() if metric == 'auc' else metric}")
    ax.set_title("no fine-tuning" if ft == 0 else f"fine-tuned {ft:g} epoch(s)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)


def plot_sweep(csv_path: str | Path, png_path: str | Path, metric: str = "auc") -> Path:
    """Plot ``metric`` (mean ± sd over seeds) versus ratio per criterion; a panel per fine-tuning setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = read_rows(Path(csv_path))
    if not rows:
        raise PruneError("sweep CSV has no rows to plot", path=csv_path)
    base = [float(r[metric]) for r in rows if r["criterion"] == "none" and r.get(metric)]
    settings = sorted({float(r["finetune_epochs"] or 0) for r in rows if r["criterion"] != "none"})
    fig, axes = plt.subplots(
        1, max(1, len(settings)), figsize=(5.5 * max(1, len(settings)), 4), squeeze=False
    )
    for ax, ft in zip(axes[0], settings or [0.0], strict=False):
        _panel(ax, rows, ft, metric, base)
    fig.tight_layout()
    png = Path(png_path)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.stem}.part.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png)
    return png
