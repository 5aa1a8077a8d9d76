"""The PxP protocol (Hatefi et al. 2024): area under the AUC-versus-pruning-rate curve per criterion.

Rates 0-95 % in 5 % steps, no fine-tuning, one score per (criterion, seed): the trapezoid area under
held-out patch AUC versus fraction of channels removed, divided by the rate range (so it reads as the
mean AUC over the range; 1 is perfect, an unpruned AUC kept all the way gives that AUC). The rate-0
point is the unpruned model, shared by every criterion. :func:`pxp_areas` reads them from sweep rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pathxai.atomic import write_text_atomic

__all__ = ["PXP_COLUMNS", "PXP_RATES", "PxpArea", "curve_area", "pxp_areas", "pxp_table", "write_pxp_csv"]

#: Pruning rates of the protocol: 0, 0.05, ..., 0.95.
PXP_RATES: tuple[float, ...] = tuple(round(0.05 * i, 2) for i in range(20))

#: Columns of ``pxp.csv``.
PXP_COLUMNS = ("criterion", "seed", "area", "n_rates", "variant")


@dataclass(frozen=True)
class PxpArea:
    """One criterion and seed's normalised area under the AUC-vs-rate curve."""

    criterion: str
    seed: int
    area: float
    n_rates: int
    variant: str = ""


def curve_area(rates: Sequence[float], values: Sequence[float]) -> float:
    """Trapezoid area under ``values`` over ``rates`` divided by the rate range (a mean value).

    Raises
    ------
    ValueError
        Fewer than two points, mismatched lengths or repeated rates.
    """
    r = np.asarray(rates, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    if r.shape != v.shape or r.size < 2:
        raise ValueError("need at least two (rate, value) points of equal count")
    order = np.argsort(r)
    r, v = r[order], v[order]
    if np.any(np.diff(r) <= 0):
        raise ValueError("rates must be distinct")
    return float(np.sum((r[1:] - r[:-1]) * (v[1:] + v[:-1]) / 2.0) / (r[-1] - r[0]))


def pxp_areas(
    rows: Sequence[Mapping[str, str]], rates: Sequence[float] = PXP_RATES, variant: str | None = None
) -> list[PxpArea]:
    """Areas of every (criterion, seed) with a no-fine-tuning row at each rate of ``rates``.

    The rate-0 point is the unpruned (``criterion == "none"``) row. Rows of another stability
    ``variant`` (when given) and incomplete curves are left out.
    """
    base = [float(r["auc"]) for r in rows if r["criterion"] == "none" and r.get("auc")]
    points: dict[tuple[str, int], dict[float, float]] = {}
    for r in rows:
        if r["criterion"] == "none" or float(r.get("finetune_epochs") or 0) != 0 or not r.get("auc"):
            continue
        if variant is not None and (r.get("variant") or "") != variant:
            continue
        points.setdefault((r["criterion"], int(r["seed"])), {})[round(float(r["ratio"]), 4)] = float(r["auc"])
    out = []
    for (crit, seed), curve in sorted(points.items()):
        if base:
            curve.setdefault(0.0, base[0])
        wanted = [round(float(q), 4) for q in rates]
        if not all(q in curve for q in wanted):
            continue
        out.append(
            PxpArea(crit, seed, curve_area(wanted, [curve[q] for q in wanted]), len(wanted), variant or "")
        )
    return out


def write_pxp_csv(path: Path, areas: Sequence[PxpArea]) -> Path:
    """Write ``pxp.csv`` (one row per criterion and seed) atomically."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(PXP_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for a in areas:
        writer.writerow(
            {
                "criterion": a.criterion,
                "seed": a.seed,
                "area": f"{a.area:.6g}",
                "n_rates": a.n_rates,
                "variant": a.variant,
            }
        )
    write_text_atomic(path, buf.getvalue())
    return path


def pxp_table(areas: Sequence[PxpArea]) -> list[tuple[str, float, float, int]]:
    """Per criterion: mean area, standard deviation over seeds (0 for one run) and the number of seeds."""
    out = []
    for crit in dict.fromkeys(a.criterion for a in areas):
        vals = np.array([a.area for a in areas if a.criterion == crit])
        out.append(
            (crit, float(vals.mean()), float(vals.std(ddof=1)) if vals.size > 1 else 0.0, int(vals.size))
        )
    return out
