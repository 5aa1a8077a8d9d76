"""Per-centre metrics with case-level bootstrap confidence intervals, from ``pathxai evaluate`` JSONs.

Reads the ``images`` rows of one or more ``eval.json`` files (image id, patient, label, mean patch
probability and, for multi-site manifests, site) and prints, per centre: image-level AUC and
balanced accuracy at the threshold the evaluation used, sensitivity and specificity, each with a 95 %
percentile bootstrap interval that resamples whole cases (patients) within the centre, and the
image-level expected calibration error. Patch-level point estimates come from the JSON's ``per_site``.

With ``--folds`` the files are the folds of one cross-validation (``fold_*/eval.json``): after the
per-fold lines it prints, per centre, the mean ± sd over folds and the out-of-fold line (every image
scored once, by the fold model that did not train on its case; AUC over folds' uncalibrated scores).

Usage::

    python benchmarks/centre_eval.py EVAL.json [EVAL.json ...] [--boot 2000] [--centre NAME] [--folds]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from pathxai.model.calibration import expected_calibration_error


def _stats(y: np.ndarray, p: np.ndarray, t: float) -> dict[str, float]:
    pred = p >= t
    out = {"sens": float(pred[y == 1].mean()) if (y == 1).any() else np.nan}
    out["spec"] = float((~pred[y == 0]).mean()) if (y == 0).any() else np.nan
    out["bal_acc"] = (out["sens"] + out["spec"]) / 2
    out["auc"] = float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else np.nan
    return out


def bootstrap(rows: list[dict[str, Any]], threshold: float, n_boot: int, seed: int = 0) -> dict[str, Any]:
    """Point estimates and case-level bootstrap 95 % intervals of :func:`_stats` over ``rows``."""
    cases = sorted({r["patient"] for r in rows})
    by_case = {c: [r for r in rows if r["patient"] == c] for c in cases}
    y = np.array([r["tumor"] for r in rows])
    p = np.array([r["prob"] for r in rows])
    point = _stats(y, p, threshold)
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {k: [] for k in point}
    for _ in range(n_boot):
        pick = rng.choice(len(cases), len(cases), replace=True)
        sample = [r for i in pick for r in by_case[cases[i]]]
        s = _stats(np.array([r["tumor"] for r in sample]), np.array([r["prob"] for r in sample]), threshold)
        for k, v in s.items():
            if np.isfinite(v):
                draws[k].append(v)
    ci = {
        k: (float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))) if v else None
        for k, v in draws.items()
    }
    return {
        "n_images": len(rows),
        "n_cases": len(cases),
        "n_tumour": int(y.sum()),
        "point": point,
        "ci95": ci,
        "ece": expected_calibration_error(y, p),
    }


def _fmt(res: dict[str, Any], key: str) -> str:
    v, ci = res["point"][key], res["ci95"][key]
    if not np.isfinite(v):
        return "n/a"
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{v:.3f}"


def _site_of(r: dict[str, Any], default: str) -> str:
    return str(r.get("site", default))


def fold_summary(evals: list[dict[str, Any]], default: str, n_boot: int) -> list[str]:
    """Per centre: mean ± sd over folds of image AUC, patch AUC and image balanced accuracy; then out-of-fold."""
    lines = []
    sites = sorted({_site_of(r, default) for ev in evals for r in ev["images"]})
    for site in sites:
        img_auc, bal, patch_auc = [], [], []
        for ev in evals:
            sub = [r for r in ev["images"] if _site_of(r, default) == site]
            if not sub:
                continue
            st = _stats(
                np.array([r["tumor"] for r in sub]),
                np.array([r["prob"] for r in sub]),
                float(ev["image_level"]["threshold"]),
            )
            img_auc.append(st["auc"])
            bal.append(st["bal_acc"])
            patch = (ev.get("per_site") or {}).get(site, {}).get("patch") or (ev if len(sites) == 1 else {})
            if patch.get("auc") is not None:
                patch_auc.append(float(patch["auc"]))

        def ms(v: list[float]) -> str:
            v = [x for x in v if np.isfinite(x)]
            return (
                f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f} (n={len(v)})"
                if v
                else "n/a"
            )

        rows = [r for ev in evals for r in ev["images"] if _site_of(r, default) == site]
        res = bootstrap(rows, float(evals[0]["image_level"]["threshold"]), n_boot)
        lines.append(
            f"folds | {site} | image AUC {ms(img_auc)} | patch AUC {ms(patch_auc)} | image bal.acc {ms(bal)}"
            f" | out-of-fold: images {res['n_images']} ({res['n_tumour']} tumour), cases {res['n_cases']},"
            f" image AUC {_fmt(res, 'auc')}, bal.acc {_fmt(res, 'bal_acc')}"
        )
    return lines


def main() -> None:
    """Print one line per (file, centre)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("evals", nargs="+", type=Path)
    ap.add_argument("--boot", type=int, default=2000)
    ap.add_argument("--centre", default=None, help="name the centre of files without a site column")
    ap.add_argument("--folds", action="store_true", help="the files are the folds of one cross-validation")
    args = ap.parse_args()
    evals = []
    for path in args.evals:
        ev = json.loads(path.read_text())
        evals.append(ev)
        t = float(ev["image_level"]["threshold"])
        rows = ev["images"]
        sites = sorted({r.get("site", args.centre or "all") for r in rows})
        for site in sites:
            sub = [r for r in rows if r.get("site", args.centre or "all") == site]
            res = bootstrap(sub, t, args.boot)
            patch = (ev.get("per_site") or {}).get(site, {}).get("patch") or (ev if len(sites) == 1 else {})
            print(
                f"{path.parent.name}/{path.name} | {site} | images {res['n_images']} ({res['n_tumour']} tumour), cases {res['n_cases']}"
                f" | t={t:.3f} | image AUC {_fmt(res, 'auc')} | bal.acc {_fmt(res, 'bal_acc')}"
                f" | sens {_fmt(res, 'sens')} | spec {_fmt(res, 'spec')} | image ECE {res['ece']:.3f}"
                f" | patch AUC {patch.get('auc')} patch bal.acc {patch.get('balanced_accuracy')}"
                f" sens {patch.get('sensitivity')} spec {patch.get('specificity')}"
            )
    if args.folds:
        print("\n".join(fold_summary(evals, args.centre or "all", args.boot)))


if __name__ == "__main__":
    main()
