"""One model measured against one finding: stress test, relevance on the artifact, clean AUC, re-audit.

The same function measures the original and the mitigated model, so ``before`` and ``after`` in
``mitigation.json`` come from identical images, transplants and settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from pathxai.audit.cohort import AuditItem
from pathxai.audit.findings import Thresholds
from pathxai.audit.heat import heat_of_image, image_predictor
from pathxai.audit.registry import CheckContext, run_checks
from pathxai.mitigate.evidence import Cohort, Evidence
from pathxai.mitigate.stress import artifact_stress, clean_auc, relevance_ratio, stain_stress, stressed_images
from pathxai.model.card import ModelCard

__all__ = ["REAUDIT_CHECKS", "measure", "reaudit_items"]

#: The checks re-run per kind of finding (those whose result depends on the model, then the data ones).
REAUDIT_CHECKS = {
    "artifact": ("artifact.relevance", "artifact.label_association"),
    "stain": ("stain.sensitivity",),
    "sampling": (),
    "labels": (),
}


def _explainer(model: nn.Module, card: ModelCard) -> Any:
    from pathxai.explain import Explainer

    return Explainer(model, "lrp", target_class=card.tumour_index, batch_size=64)


def reaudit_items(cohort: Cohort, limit: int = 24) -> list[AuditItem]:
    """Up to ``limit`` training images per class as audit items (the re-audit's cohort, fixed for before/after)."""
    out: list[AuditItem] = []
    for cls in (0, 1):
        idx = [i for i, y in enumerate(cohort.train_labels) if int(y) == cls][:limit]
        out += [
            AuditItem(
                cohort.train_ids[i], np.asarray(cohort.train[i]), cohort.mpp, 1.0, cls, {"split": "train"}
            )
            for i in idx
        ]
    return out


def _reaudit(
    model: nn.Module,
    card: ModelCard,
    items: Sequence[AuditItem],
    checks: Sequence[str],
    thresholds: Thresholds,
) -> list[dict[str, Any]]:
    if not checks:
        return []
    if "artifact.relevance" in checks:
        with _explainer(model, card) as ex:
            items = [
                AuditItem(
                    it.id,
                    it.image,
                    it.mpp,
                    it.l0_per_px,
                    it.tumour,
                    it.meta,
                    heat=heat_of_image(it.image, ex, card),
                )
                for it in items
            ]
    ctx = CheckContext(items, thresholds, predict=image_predictor(model, card))
    keep = ("id", "check", "severity", "value", "threshold", "message")
    return [{k: f.to_dict().get(k) for k in keep} for f in run_checks(ctx, list(checks))]


def measure(
    model: nn.Module,
    card: ModelCard,
    cohort: Cohort,
    evidence: Evidence,
    reaudit: Sequence[AuditItem] = (),
    thresholds: Thresholds | None = None,
    relevance_images: int = 16,
) -> dict[str, Any]:
    """``stress``, ``relevance_on_artifact``, ``clean_auc`` and ``reaudit`` of ``model`` for one finding.

    Parameters
    ----------
    model, card
        The model measured.
    cohort
        Training (re-audit) and clean held-out (stress test, AUC) images.
    evidence
        The finding's transplantable evidence.
    reaudit
        Items the finding's checks are re-run on (empty: no re-audit).
    thresholds
        Audit severity rules (defaults when ``None``).
    relevance_images
        Stress images whose LRP relevance on the pasted artifact is measured.
    """
    target = evidence.target
    predict = image_predictor(model, card)
    other = 1 - target.flagged_class
    recipients = cohort.of_class(other, heldout=True)
    out: dict[str, Any] = {"clean_auc": clean_auc(predict, cohort.heldout, cohort.heldout_labels)}
    if target.kind == "artifact":
        stress = artifact_stress(predict, recipients, evidence.donors, target.flagged_class)
        pairs = stressed_images(recipients[:relevance_images], evidence.donors)
        with _explainer(model, card) as ex:
            rel = [heat_of_image(img, ex, card).relevance for img, _ in pairs]
        out["relevance_on_artifact"] = relevance_ratio(rel, [m for _, m in pairs])
        out["stress"] = stress.to_dict()
    elif target.kind == "stain" and evidence.recolour is not None:
        out["stress"] = stain_stress(predict, recipients, evidence.recolour, target.flagged_class).to_dict()
        out["relevance_on_artifact"] = None  # a stain covers the whole image: no region to measure
    out["reaudit"] = _reaudit(
        model, card, reaudit, REAUDIT_CHECKS.get(target.kind, ()), thresholds or Thresholds()
    )
    return out
