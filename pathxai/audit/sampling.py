"""Sampling checks: who is in the cohort, who is missing, who leaks, and where the model does worse.

* counts per class x site x scanner x patient (x split), class imbalance, classes missing from a
  site/scanner/split (missing cells);
* patient-label confounding (patients with a single class: the label is partly a patient identity);
* site-label confounding (the share of tumour differs by site or scanner, so the site predicts the label);
* patient leakage across splits;
* categories (grade, site, scanner ...) present outside the training split but never in it;
* per-group performance: AUC with a bootstrap CI per group when a group holds both classes, else
  accuracy with a Wilson interval; a group is flagged only when its whole interval lies below the
  overall estimate.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Collection, Sequence

import numpy as np

from pathxai.audit.cohort import AuditItem
from pathxai.audit.findings import BiasFinding, Thresholds
from pathxai.audit.grade import graded
from pathxai.audit.registry import CheckContext, register_check, run_checks
from pathxai.audit.stats import auc, auc_ci

__all__ = ["GROUP_COLUMNS", "check", "counts_table", "group_performance"]

#: Metadata columns examined for representation and per-group performance.
GROUP_COLUMNS = ("site", "scanner", "patient", "split", "grade")


def _label(it: AuditItem) -> str:
    return "unlabelled" if it.tumour is None else ("tumour" if it.tumour == 1 else "non-tumour")


def counts_table(items: Sequence[AuditItem]) -> list[dict[str, object]]:
    """Counts per label x site x scanner x patient x split (JSON-ready rows)."""
    c: Counter[tuple[str, ...]] = Counter()
    for it in items:
        c[
            (
                _label(it),
                it.meta.get("site") or "-",
                it.meta.get("scanner") or "-",
                it.meta.get("patient") or it.id,
                it.meta.get("split") or "-",
            )
        ] += 1
    return [
        {"label": k[0], "site": k[1], "scanner": k[2], "patient": k[3], "split": k[4], "n": n}
        for k, n in sorted(c.items())
    ]


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    den = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / den
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return centre - half, centre + half


def group_performance(
    items: Sequence[AuditItem], column: str, n_boot: int = 1000, seed: int = 0
) -> list[dict[str, object]]:
    """Per value of ``column``: n, AUC (with CI) or accuracy (with Wilson CI) of the item probabilities."""
    groups: dict[str, list[AuditItem]] = defaultdict(list)
    for it in items:
        if it.heat is None or it.tumour is None:
            continue
        groups[
            (it.meta.get(column) or "-") if column != "patient" else (it.meta.get("patient") or it.id)
        ].append(it)
    rows = []
    for g, its in sorted(groups.items()):
        y = np.asarray([it.tumour for it in its])
        p = np.asarray([it.heat.probability for it in its])  # type: ignore[union-attr]
        acc_k = int(((p >= 0.5).astype(int) == y).sum())
        lo, hi = _wilson(acc_k, len(y))
        row: dict[str, object] = {
            "group": g,
            "n": len(y),
            "n_tumour": int(y.sum()),
            "accuracy": acc_k / len(y),
            "accuracy_ci": [lo, hi],
        }
        if 0 < y.sum() < len(y):
            a, alo, ahi = auc_ci(y, p, n_boot=n_boot, seed=seed)
            row.update({"auc": a, "auc_ci": [alo, ahi]})
        rows.append(row)
    return rows


def check(
    items: Sequence[AuditItem],
    thresholds: Thresholds | None = None,
    seen_in_training: Collection[str] = (),
    train_split: str = "train",
) -> list[BiasFinding]:
    """Representation, leakage and per-group performance findings (every registered ``sampling.*`` check here).

    Parameters
    ----------
    items
        The cohort.
    thresholds
        Severity rules.
    seen_in_training
        Item ids the model was trained on: excluded from per-group performance.
    train_split
        Name of the training split in the ``split`` column.

    Returns
    -------
    list[BiasFinding]
    """
    ctx = CheckContext(items, thresholds or Thresholds(), seen_in_training, train_split)
    return run_checks(ctx, module=__name__)


def _class_counts(items: Sequence[AuditItem]) -> Counter[str]:
    return Counter(lab for lab in map(_label, items) if lab != "unlabelled")


def _imbalance_message(lc: Counter[str]) -> str:
    counts = ", ".join(f"{k} {v}" for k, v in sorted(lc.items()))
    if len(lc) == 1:
        return (
            f"Only one class in the cohort ({counts}): the ratio is unbounded, and no classifier "
            "performance or class-correlated bias can be assessed on it."
        )
    if not lc:
        return "No labelled item: class balance cannot be assessed."
    return f"Class counts: {counts}."


@register_check("sampling.imbalance", family="sampling")
def check_imbalance(ctx: CheckContext) -> list[BiasFinding]:
    """Majority / minority class count."""
    lc = _class_counts(ctx.items)
    if len(lc) >= 2:
        ratio = max(lc.values()) / max(1, min(lc.values()))
    else:
        ratio = float("inf") if lc else float("nan")
    finite = math.isfinite(ratio)
    return [
        graded(
            ctx.thresholds,
            "sampling",
            "sampling.imbalance",
            "majority / minority class count",
            ratio if finite else None,
            _imbalance_message(lc),
            grade=bool(lc),
            grade_value=ratio if finite else 1e9,
            details={"counts": dict(lc)},
        )
    ]


@register_check("sampling.missing_cells", family="sampling")
def check_missing_cells(ctx: CheckContext) -> list[BiasFinding]:
    """Site/scanner/split groups that lack a class."""
    items = ctx.items
    labels = [_label(it) for it in items]
    lc = _class_counts(items)
    missing = []
    for col in ("site", "scanner", "split"):
        vals = {str(it.meta.get(col)) for it in items if it.meta.get(col)}
        if len(vals) < 1 or (col != "split" and len(vals) < 2):
            continue
        for v in sorted(vals):
            have = Counter(lab for it, lab in zip(items, labels, strict=True) if it.meta.get(col) == v)
            for cls in lc:
                if have.get(cls, 0) == 0:
                    missing.append(
                        {"column": col, "value": v, "missing_class": cls, "n_in_group": sum(have.values())}
                    )
    several = any(len({it.meta.get(c) for it in items if it.meta.get(c)}) > 1 for c in ("site", "scanner"))
    message = (
        "; ".join(f"{m['column']}={m['value']} has no {m['missing_class']}" for m in missing[:8])
        if missing
        else "Every site, scanner and split holds every class."
    ) + (
        ""
        if several
        else " Only one site and one scanner: site/scanner bias cannot be assessed in this cohort."
    )
    return [
        graded(
            ctx.thresholds,
            "sampling",
            "sampling.missing_cells",
            "number of site/scanner/split groups lacking a class",
            float(len(missing)),
            message,
            details={"missing": missing},
        )
    ]


@register_check("sampling.patient_confounding", family="sampling")
def check_patient_confounding(ctx: CheckContext) -> list[BiasFinding]:
    """Patients (with >= 2 items) whose items all share one class."""
    items = ctx.items
    per_patient: dict[str, Counter[str]] = defaultdict(Counter)
    for it in items:
        lab = _label(it)
        if lab != "unlabelled":
            per_patient[it.meta.get("patient") or it.id][lab] += 1
    multi = {p: c for p, c in per_patient.items() if sum(c.values()) >= 2}
    if not multi or not any(it.meta.get("patient") for it in items):
        return []
    single = sorted(p for p, c in multi.items() if len(c) == 1)
    return [
        graded(
            ctx.thresholds,
            "sampling",
            "sampling.patient_confounding",
            "fraction of patients (with >= 2 items) whose items all share one class",
            len(single) / len(multi),
            f"{len(single)} of {len(multi)} patients contribute a single class: the label is partly "
            "a patient identity, so anything patient-specific (stain batch, tissue handling) can "
            "act as a label proxy. Split and evaluate by patient.",
            items=tuple(it.id for it in items if (it.meta.get("patient") or it.id) in set(single))[:50],
            details={"patients": {p: dict(c) for p, c in sorted(per_patient.items())}},
        )
    ]


def _association(table: np.ndarray) -> tuple[float, float]:
    """Cramér's V of a groups x classes count table and the p-value of its independence test.

    Fisher's exact test for a 2 x 2 table, the chi-square test otherwise.
    """
    from scipy.stats import chi2_contingency, fisher_exact

    n = float(table.sum())
    chi2, pval = chi2_contingency(table, correction=False)[:2]
    v = math.sqrt(float(chi2) / (n * (min(table.shape) - 1))) if n > 0 else 0.0
    return v, float(fisher_exact(table)[1] if table.shape == (2, 2) else pval)


@register_check("sampling.site_confounding", family="sampling")
def check_site_confounding(ctx: CheckContext) -> list[BiasFinding]:
    """Whether the share of tumour differs by site (or scanner): the site then predicts the label.

    One finding per column with at least two groups, graded on Cramér's V of the group x class table
    and only when the independence test is significant (``alpha``).
    """
    out = []
    for col in ("site", "scanner"):
        per: dict[str, Counter[str]] = defaultdict(Counter)
        for it in ctx.items:
            lab, grp = _label(it), it.meta.get(col)
            if grp and lab != "unlabelled":
                per[str(grp)][lab] += 1
        classes = sorted({c for cnt in per.values() for c in cnt})
        if len(per) < 2 or len(classes) < 2:
            continue
        groups = sorted(per)
        table = np.array([[per[g][c] for c in classes] for g in groups], dtype=float)
        v, pval = _association(table)
        shares = {g: per[g]["tumour"] / sum(per[g].values()) for g in groups}
        listed = "; ".join(
            f"{g}: {shares[g]:.0%} tumour ({per[g]['tumour']}/{sum(per[g].values())})" for g in groups[:6]
        )
        significant = pval <= ctx.thresholds.setting("alpha")
        out.append(
            graded(
                ctx.thresholds,
                "sampling",
                f"sampling.site_confounding:{col}",
                f"Cramér's V between {col} and label",
                v,
                f"The share of tumour differs by {col} ({listed}; Cramér's V {v:.2f}, p={pval:.2g}). "
                + (
                    f"The {col} predicts the label: anything {col}-specific (stain, scanner, "
                    "preparation) can act as a label proxy. Balance classes within each "
                    f"{col} (e.g. `pathxai train --balance-sites`) and report results per {col}."
                    if significant
                    else "Not significant."
                ),
                grade=significant,
                details={"column": col, "counts": {g: dict(per[g]) for g in groups}, "p_value": pval},
            )
        )
    return out


@register_check("sampling.leakage", family="sampling")
def check_leakage(ctx: CheckContext) -> list[BiasFinding]:
    """Patients present in more than one split."""
    splits_of: dict[str, set[str]] = defaultdict(set)
    for it in ctx.items:
        if it.meta.get("split") and it.meta.get("patient"):
            splits_of[it.meta["patient"]].add(it.meta["split"])
    if not splits_of:
        return []
    leaked = sorted(p for p, s in splits_of.items() if len(s) > 1)
    return [
        graded(
            ctx.thresholds,
            "sampling",
            "sampling.leakage",
            "number of patients present in more than one split",
            float(len(leaked)),
            "Patients in several splits: "
            + ", ".join(f"{p} ({'/'.join(sorted(splits_of[p]))})" for p in leaked[:10])
            + ". Test results are optimistic: the model has seen these patients."
            if leaked
            else "No patient appears in more than one split.",
            items=tuple(it.id for it in ctx.items if it.meta.get("patient") in set(leaked))[:100],
            details={"leaked_patients": {p: sorted(splits_of[p]) for p in leaked}},
        )
    ]


@register_check("sampling.unseen", family="sampling")
def check_unseen(ctx: CheckContext) -> list[BiasFinding]:
    """Sites, scanners and grades of the evaluation splits that never occur in the training split."""
    train_split = ctx.train_split
    train = [it for it in ctx.items if it.meta.get("split") == train_split]
    rest = [it for it in ctx.items if it.meta.get("split") and it.meta.get("split") != train_split]
    if not train or not rest:
        return []
    unseen: dict[str, list[str]] = {}
    cols = ("site", "scanner", "grade")
    for col in cols:
        seen = {it.meta.get(col) for it in train if it.meta.get(col)}
        other = Counter(it.meta.get(col) for it in rest if it.meta.get(col))
        miss = sorted(v for v in other if v not in seen)  # type: ignore[type-var]
        if miss:
            unseen[col] = miss  # type: ignore[assignment]
    affected = [it for it in rest if any(it.meta.get(c) in unseen.get(c, []) for c in cols)]
    return [
        graded(
            ctx.thresholds,
            "sampling",
            "sampling.unseen",
            f"fraction of non-{train_split} items whose site/scanner/grade never occurs in {train_split}",
            len(affected) / len(rest),
            "Never in training: "
            + "; ".join(f"{c} = {', '.join(v)}" for c, v in unseen.items())
            + f" ({len(affected)} evaluation items). The model was never shown these."
            if unseen
            else f"Every site, scanner and grade of the evaluation splits also occurs in {train_split}.",
            items=tuple(it.id for it in affected)[:100],
            details={"unseen": unseen},
        )
    ]


def _worse_groups(
    evaluable: Sequence[AuditItem], th: Thresholds, overall_acc: float, overall_auc: float
) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Groups whose whole AUC/accuracy interval lies below the overall value (worst first), and all tables."""
    worst: list[dict[str, object]] = []
    tables: dict[str, object] = {}
    for col in GROUP_COLUMNS:
        if col != "patient" and not any(it.meta.get(col) for it in evaluable):
            continue
        rows = group_performance(evaluable, col, int(th.setting("bootstrap")), int(th.setting("seed")))
        if len(rows) < 2:
            continue
        tables[col] = rows
        for r in rows:
            if "auc" in r and math.isfinite(overall_auc):
                hi = r["auc_ci"][1]  # type: ignore[index]
                if math.isfinite(hi) and hi < overall_auc:
                    gap_auc = overall_auc - float(r["auc"])  # type: ignore[arg-type]
                    worst.append({"column": col, **r, "gap": gap_auc, "metric": "auc"})
            hi_acc = r["accuracy_ci"][1]  # type: ignore[index]
            if hi_acc < overall_acc:
                gap_acc = overall_acc - float(r["accuracy"])  # type: ignore[arg-type]
                worst.append({"column": col, **r, "gap": gap_acc, "metric": "accuracy"})
    worst.sort(key=lambda r: -float(r["gap"]))  # type: ignore[arg-type]
    return worst, tables


@register_check("sampling.group_performance", family="sampling")
def check_group_performance(ctx: CheckContext) -> list[BiasFinding]:
    """Largest drop of a group's AUC/accuracy below the overall value (items not used for training)."""
    seen_ids = set(ctx.seen_in_training)
    items = ctx.items
    evaluable = [
        it for it in items if it.heat is not None and it.tumour is not None and it.id not in seen_ids
    ]
    if len(evaluable) < 4:
        return []
    y = np.asarray([it.tumour for it in evaluable])
    p = np.asarray([it.heat.probability for it in evaluable])  # type: ignore[union-attr]
    overall_acc = float(((p >= 0.5).astype(int) == y).mean())
    overall_auc = auc(y, p)
    worst, tables = _worse_groups(evaluable, ctx.thresholds, overall_acc, overall_auc)
    message = (
        f"Overall on {len(evaluable)} items not used for training: AUC {overall_auc:.3f}, "
        + (
            f"accuracy {overall_acc:.3f}. "
            + (
                "Worse groups: "
                + "; ".join(
                    f"{w['column']}={w['group']} {w['metric']} {float(w[str(w['metric'])]):.2f} (n={w['n']})"  # type: ignore[arg-type]
                    for w in worst[:5]
                )
                + "."
                if worst
                else "No group is significantly worse."
            )
        )
    )
    return [
        graded(
            ctx.thresholds,
            "sampling",
            "sampling.group_performance",
            "largest drop of a group's AUC/accuracy below the overall value (group CI entirely below)",
            float(worst[0]["gap"]) if worst else 0.0,  # type: ignore[arg-type]
            message,
            items=tuple(
                it.id
                for it in evaluable
                if worst and (it.meta.get(str(worst[0]["column"])) or it.id) == worst[0]["group"]
            )[:50],
            details={
                "overall_auc": overall_auc,
                "overall_accuracy": overall_acc,
                "n": len(evaluable),
                "excluded_seen_in_training": len([it for it in items if it.id in seen_ids]),
                "worse_groups": worst[:20],
                "groups": tables,
            },
        )
    ]
