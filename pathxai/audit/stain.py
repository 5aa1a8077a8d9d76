"""Stain checks: per-item stain vectors and H/E statistics, outliers, a stain-shortcut probe, model sensitivity.

* **Stain features** of every item, from tissue pixels only: Macenko-style stain vectors (the two
  extreme angles of the optical densities in the plane of their two main eigenvectors: the
  haematoxylin and eosin directions, which depend on the staining protocol and scanner, not on the
  tissue) and colour-deconvolution concentrations (:func:`skimage.color.rgb2hed`: mean and 90th
  percentile of H and E), the mean optical density per channel and the background brightness.
* **Outliers**: items whose features sit far from the cohort (robust z-score, median/MAD).
* **Stain-shortcut probe**: a cross-validated logistic regression on these colour features only.
  Predicting the *label* (folds grouped by patient, so it must generalise to unseen patients) well
  above chance means colour alone separates the classes in this cohort: a model can learn the
  stain instead of the morphology. Predicting *site*/*scanner*/*patient* shows how strongly each
  acquisition batch is fingerprinted by its colour. Significance by a permutation test.
* **Model sensitivity**: change of the model's prediction under HED jitter and under stain
  normalisation (Macenko) to a reference H&E image.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from skimage.color import rgb2hed

from pathxai.audit.cohort import AuditItem, group_values, whole_region
from pathxai.audit.findings import BiasFinding, Thresholds
from pathxai.audit.grade import graded
from pathxai.audit.registry import CheckContext, register_check, run_checks
from pathxai.audit.stats import ProbeResult, cv_probe
from pathxai.pixels import background_mask, macenko_stain_vectors, optical_density

__all__ = [
    "FEATURE_NAMES",
    "StainStats",
    "check",
    "check_sensitivity",
    "estimate_stain_vectors",
    "stain_features",
    "stats_of",
]

#: Names of the per-item stain features, in column order.
FEATURE_NAMES = (
    "h_vec_r",
    "h_vec_g",
    "h_vec_b",
    "e_vec_r",
    "e_vec_g",
    "e_vec_b",
    "h_mean",
    "h_p90",
    "e_mean",
    "e_p90",
    "od_r",
    "od_g",
    "od_b",
    "background",
)

Predictor = Callable[[Sequence[np.ndarray]], np.ndarray]


#: Macenko H and E stain vectors from ``(N, 3)`` optical densities (the one implementation lives in
#: :func:`pathxai.pixels.macenko_stain_vectors`; kept here under the audit's name).
estimate_stain_vectors = macenko_stain_vectors


def stain_features(img: np.ndarray, max_pixels: int = 200_000, seed: int = 0) -> np.ndarray:
    """The :data:`FEATURE_NAMES` vector of one uint8 RGB image (NaN where not computable)."""
    bg = background_mask(img)
    tissue = ~bg
    out = np.full(len(FEATURE_NAMES), np.nan)
    out[13] = float(img[bg].mean()) / 255.0 if bg.any() else np.nan
    if tissue.sum() < 50:
        return out
    rgb = img[tissue]
    if len(rgb) > max_pixels:
        rgb = rgb[np.random.default_rng(seed).choice(len(rgb), max_pixels, replace=False)]
    od = optical_density(rgb[None])[0]
    try:
        out[0:6] = estimate_stain_vectors(od).reshape(-1)
    except ValueError:
        pass
    hed = rgb2hed(rgb[None])[0]
    out[6] = hed[:, 0].mean()
    out[7] = np.percentile(hed[:, 0], 90)
    out[8] = hed[:, 1].mean()
    out[9] = np.percentile(hed[:, 1], 90)
    out[10:13] = od.mean(axis=0)
    return out


@dataclass(frozen=True)
class StainStats:
    """Per-item stain features and the probes' results (for the report's tables and figures)."""

    ids: tuple[str, ...]
    features: np.ndarray
    robust_z: np.ndarray  # (n, len(OUTLIER_NAMES)) robust z-scores
    probes: dict[str, ProbeResult]

    def table(self) -> list[dict[str, object]]:
        """One JSON-ready row per item."""
        rows = []
        for i, item_id in enumerate(self.ids):
            row: dict[str, object] = {"id": item_id}
            row.update({n: float(v) for n, v in zip(FEATURE_NAMES, self.features[i], strict=True)})
            row.update({n: float(v) for n, v in zip(OUTLIER_NAMES, self.robust_z[i], strict=True)})
            rows.append(row)
        return rows


#: Features used for outliers, and the smallest spread (floor of the robust SD) each is given, so
#: a cohort with very uniform staining does not turn tiny differences into outliers.
OUTLIER_NAMES = ("h_vector_angle_deg", "e_vector_angle_deg", "log_h_mean", "log_e_mean", "background")
_OUTLIER_FLOORS = np.array([3.0, 3.0, 0.15, 0.15, 0.02])


def _angle_to_median(v: np.ndarray) -> np.ndarray:
    med = np.nanmedian(v, axis=0)
    med = med / max(float(np.linalg.norm(med)), 1e-9)
    cos = (v @ med) / np.maximum(np.linalg.norm(v, axis=1), 1e-9)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def outlier_features(feats: np.ndarray) -> np.ndarray:
    """Per-item :data:`OUTLIER_NAMES`: stain-vector angles to the cohort median, log concentrations, background."""
    return np.column_stack(
        [
            _angle_to_median(feats[:, 0:3]),
            _angle_to_median(feats[:, 3:6]),
            np.log(np.maximum(feats[:, 6], 1e-4)),
            np.log(np.maximum(feats[:, 8], 1e-4)),
            feats[:, 13],
        ]
    )


def _robust_z(x: np.ndarray) -> np.ndarray:
    med = np.nanmedian(x, axis=0)
    mad = np.nanmedian(np.abs(x - med), axis=0) * 1.4826
    scale = np.maximum(np.nan_to_num(mad), _OUTLIER_FLOORS)
    return (x - med) / scale


def _impute(x: np.ndarray) -> np.ndarray:
    med = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    return np.where(np.isfinite(x), x, med)


def compute(items: Sequence[AuditItem], thresholds: Thresholds) -> StainStats:
    """Features, robust z-scores and probes of a cohort."""
    feats = np.stack([stain_features(it.image) for it in items]) if items else np.zeros((0, 14))
    z = _robust_z(outlier_features(feats)) if len(items) else np.zeros((0, len(OUTLIER_NAMES)))
    probes: dict[str, ProbeResult] = {}
    x = _impute(feats)
    seed = int(thresholds.setting("seed"))
    perms = int(thresholds.setting("permutations"))
    patients: list[object] = [it.meta.get("patient") or it.id for it in items]
    targets: dict[str, tuple[list[object], list[object] | None]] = {
        "label": ([it.tumour if it.tumour is not None else "" for it in items], patients),
        "site": (list(group_values(items, "site")), patients),
        "scanner": (list(group_values(items, "scanner")), patients),
        "patient": (list(patients), None),
    }
    for name, (target, groups) in targets.items():
        if len({t for t in target if t not in (None, "")}) < 2:
            continue
        res = cv_probe(
            x,
            ["" if t is None else t for t in target],
            groups,
            name,
            permutations=perms,
            n_boot=int(thresholds.setting("bootstrap")),
            seed=seed,
        )
        if res is not None:
            probes[name] = res
    return StainStats(tuple(it.id for it in items), feats, z, probes)


def stats_of(ctx: CheckContext) -> StainStats:
    """:func:`compute` on ``ctx``'s items (once per context)."""
    return ctx.memo("stain.stats", lambda: compute(ctx.items, ctx.thresholds))


def check(
    items: Sequence[AuditItem], thresholds: Thresholds | None = None, stats: StainStats | None = None
) -> list[BiasFinding]:
    """Stain outliers and stain-shortcut probes (``stats``: a precomputed :func:`compute` result)."""
    ctx = CheckContext(items, thresholds or Thresholds())
    if stats is not None:
        ctx.provide("stain.stats", stats)
    return run_checks(ctx, ["stain.outliers", "stain.probe"])


@register_check("stain.outliers", family="dataset")
def check_outliers(ctx: CheckContext) -> list[BiasFinding]:
    """Items with a stain feature beyond 4 robust SD of the cohort median."""
    from collections import Counter

    items, st = ctx.items, stats_of(ctx)
    zmax = np.nanmax(np.abs(np.where(np.isfinite(st.robust_z), st.robust_z, 0.0)), axis=1)
    cut = 4.0
    out_idx = [int(i) for i in np.argsort(-zmax) if zmax[i] > cut]
    worst_feat = {
        items[i].id: OUTLIER_NAMES[int(np.nanargmax(np.abs(np.nan_to_num(st.robust_z[i]))))] for i in out_idx
    }
    by_feature = Counter(worst_feat.values()).most_common(3)
    return [
        graded(
            ctx.thresholds,
            "dataset",
            "stain.outliers",
            f"fraction of items with a stain feature beyond {cut:g} robust SD",
            len(out_idx) / len(items),
            f"{len(out_idx)} of {len(items)} items have unusual staining "
            f"(stain-vector angle, H/E concentration or background more than {cut:g} robust SD "
            "from the cohort median); mostly "
            + ", ".join(f"{name.replace('_', ' ')} ({n})" for name, n in by_feature)
            + ". Many outliers on one feature usually mean several staining batches (see the stain scatter)."
            if out_idx
            else "No item's staining stands out from the cohort.",
            items=tuple(items[i].id for i in out_idx),
            regions=tuple(whole_region(items[i], "stain outlier", float(zmax[i])) for i in out_idx[:50]),
            details={"outlier_feature": worst_feat, "robust_z_cut": cut},
        )
    ]


def _probe_message(name: str, res: ProbeResult, significant: bool) -> str:
    if name == "label":
        lo = res.ci[0] if res.ci else float("nan")
        return (
            f"Colour/stain features alone predict the label of unseen patients with AUC "
            f"{res.value:.2f} (95% CI lower bound {lo:.2f}, permutation p={res.p_value:.3f}). "
            + (
                "A model can reach part of its accuracy from staining instead of morphology; "
                "check the stain-sensitivity finding and consider stain normalisation/augmentation."
                if significant
                else "Not better than chance at the chosen significance level."
            )
        )
    return (
        f"Colour/stain features identify the {name} with normalised balanced accuracy "
        f"{res.value:.2f} (0 = chance, 1 = perfect; permutation p={res.p_value:.3f}). "
        + (
            f"Each {name} has its own stain fingerprint; if {name} and label are related, "
            "colour becomes a shortcut."
            if significant
            else "No clear stain fingerprint."
        )
    )


@register_check("stain.probe")
def check_probes(ctx: CheckContext) -> list[BiasFinding]:
    """Per target (``stain.probe.<label|site|scanner|patient>``): a stain-only classifier's cross-validated score."""
    out = []
    for name, res in stats_of(ctx).probes.items():
        significant = res.p_value <= ctx.thresholds.setting("alpha")
        order = np.argsort(-np.abs(res.scores - 0.5)) if res.scores.size else np.zeros(0, int)
        kept_ids = [it.id for it, k in zip(ctx.items, res.kept, strict=True) if k]
        out.append(
            graded(
                ctx.thresholds,
                "class-correlated" if name == "label" else "dataset",
                f"stain.probe.{name}",
                f"cross-validated {res.metric} of a stain-only logistic regression predicting {name}",
                res.value,
                _probe_message(name, res, significant),
                grade=significant,
                items=tuple(kept_ids[int(i)] for i in order[:20]),
                details=res.to_dict(),
            )
        )
    return out


def _normaliser(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    from pathxai.model.augment import macenko_to

    return macenko_to(reference)


def _stain_variants(
    imgs: Sequence[np.ndarray],
    predict: Predictor,
    reference: np.ndarray | None,
    seed: int,
    n_jitter: int,
    sigma: float,
    bias: float,
) -> dict[str, np.ndarray]:
    """Predictions under ``n_jitter`` seeded HED jitters and, with a reference, Macenko normalisation."""
    from pathxai.model.augment import hed_jitter

    variants: dict[str, np.ndarray] = {}
    for k in range(n_jitter):
        r = np.random.default_rng([seed, k])
        variants[f"hed_jitter_{k}"] = np.asarray(predict([hed_jitter(im, r, sigma, bias) for im in imgs]))
    if reference is not None:
        norm = _normaliser(reference)
        variants["macenko_to_reference"] = np.asarray(predict([norm(im) for im in imgs]))
    return variants


def check_sensitivity(
    items: Sequence[AuditItem],
    predict: Predictor,
    reference: np.ndarray | None = None,
    thresholds: Thresholds | None = None,
    n_jitter: int = 2,
    sigma: float = 0.1,
    bias: float = 0.05,
) -> tuple[list[BiasFinding], dict[str, object]]:
    """How much the model's predictions move when only the stain changes.

    Parameters
    ----------
    items
        The cohort (a seeded, label-stratified subset of at most ``sensitivity_images`` is used).
    predict
        ``images -> tumour probabilities`` (one per image).
    reference
        Reference H&E image for Macenko normalisation (skipped when ``None``).
    thresholds
        Severity rules.
    n_jitter, sigma, bias
        HED jitter draws and strength (:func:`pathxai.model.augment.hed_jitter`).

    Returns
    -------
    tuple[list[BiasFinding], dict]
        The finding and a JSON-ready table (per item: baseline and perturbed probabilities).
    """
    th = thresholds or Thresholds()
    if not items:
        return [], {}
    seed = int(th.setting("seed"))
    idx = np.arange(len(items))
    if len(idx) > int(th.setting("sensitivity_images")):
        idx = np.sort(
            np.random.default_rng(seed).choice(idx, int(th.setting("sensitivity_images")), replace=False)
        )
    imgs = [items[int(i)].image for i in idx]
    base = np.asarray(predict(imgs), dtype=np.float64)
    variants = _stain_variants(imgs, predict, reference, seed, n_jitter, sigma, bias)
    flips = np.zeros(len(idx), bool)
    max_delta = np.zeros(len(idx))
    for v in variants.values():
        # a flip counts only when the probability really moves (not 0.49 -> 0.51)
        flips |= ((v >= 0.5) != (base >= 0.5)) & (np.abs(v - base) >= 0.1)
        max_delta = np.maximum(max_delta, np.abs(v - base))
    order = np.argsort(-max_delta)
    table = {
        "ids": [items[int(i)].id for i in idx],
        "baseline": base.tolist(),
        **{k: v.tolist() for k, v in variants.items()},
        "settings": {"n_jitter": n_jitter, "sigma": sigma, "bias": bias, "reference": reference is not None},
    }
    finding = graded(
        th,
        "dataset",
        "stain.sensitivity",
        "fraction of items whose predicted class flips (|Δp| >= 0.1) under stain jitter or normalisation",
        float(flips.mean()),
        f"{int(flips.sum())} of {len(idx)} items change predicted class when only the stain changes "
        f"(HED jitter sigma={sigma:g}, bias={bias:g}"
        + (
            ", Macenko normalisation to the reference image"
            if reference is not None
            else "; no --reference image, so stain normalisation was not tested"
        )
        + f"); median |Δp| {float(np.median(max_delta)):.3f}, max {float(max_delta.max()):.3f}.",
        items=tuple(items[idx[i]].id for i in order[:20] if max_delta[i] > 0.05),
        regions=tuple(
            whole_region(items[idx[i]], "stain-sensitive", float(max_delta[i])) for i in order[:10]
        ),
        details={
            "mean_abs_delta": {k: float(np.mean(np.abs(v - base))) for k, v in variants.items()},
            "n": len(idx),
        },
    )
    return [finding], table


@register_check("stain.sensitivity", family="dataset")
def check_sensitivity_registered(ctx: CheckContext) -> list[BiasFinding]:
    """:func:`check_sensitivity` when the context has a predictor; its table goes to ``ctx.tables``."""
    if ctx.predict is None:
        return []
    findings, table = check_sensitivity(ctx.items, ctx.predict, ctx.reference, ctx.thresholds)
    ctx.tables["stain_sensitivity"] = table
    return findings
