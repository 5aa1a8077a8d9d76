"""The proof: shortcut stress test, relevance on the artifact, and AUC on clean held-out images.

The stress test pastes the audit's artifact (or imposes the marked class's stain) onto held-out images
of the other class and measures how far the tumour probability moves towards the marked class. A
mitigation passes when that sensitivity falls to at most :data:`PASS_RATIO` of the original model's
(or below :data:`PASS_FLOOR`), in absolute value: a model that now moves *against* the artifact still
depends on it. A mitigation that changes nothing keeps the original sensitivity and fails, whatever
else it reports.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pathxai.mitigate.transplant import Donor, paste

__all__ = [
    "PASS_FLOOR",
    "PASS_RATIO",
    "StressResult",
    "artifact_stress",
    "clean_auc",
    "passes",
    "relevance_ratio",
    "stain_stress",
    "stressed_images",
]

Predictor = Callable[[Sequence[np.ndarray]], np.ndarray]

#: A mitigated model passes the stress test when its sensitivity is at most this share of the original's ...
PASS_RATIO = 0.5
#: ... or below this absolute shift of the tumour probability.
PASS_FLOOR = 0.05


@dataclass(frozen=True)
class StressResult:
    """How much the prediction follows the transplanted artifact.

    Attributes
    ----------
    sensitivity
        Mean shift of the tumour probability towards the marked class (positive: follows the artifact).
    flip_rate
        Share of recipients whose predicted class turns to the marked class.
    n
        Recipients tested.
    baseline, stressed
        Tumour probabilities without and with the artifact, per recipient.
    """

    sensitivity: float
    flip_rate: float
    n: int
    baseline: tuple[float, ...] = field(default=(), repr=False)
    stressed: tuple[float, ...] = field(default=(), repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "sensitivity": self.sensitivity,
            "flip_rate": self.flip_rate,
            "n": self.n,
            "baseline": list(self.baseline),
            "stressed": list(self.stressed),
        }


def _result(base: np.ndarray, stressed: np.ndarray, flagged_class: int) -> StressResult:
    sign = 1.0 if flagged_class == 1 else -1.0
    shift = sign * (stressed - base)
    flipped = ((stressed >= 0.5) == bool(flagged_class)) & ((base >= 0.5) != bool(flagged_class))
    return StressResult(
        float(shift.mean()) if shift.size else 0.0,
        float(flipped.mean()) if flipped.size else 0.0,
        int(base.size),
        tuple(float(x) for x in base),
        tuple(float(x) for x in stressed),
    )


def stressed_images(
    recipients: Sequence[np.ndarray], donors: Sequence[Donor]
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each recipient with the artifact of donor ``i mod len(donors)`` pasted on it, and the pasted mask."""
    if not donors:
        raise ValueError("no donor images show the artifact")
    return [paste(img, donors[i % len(donors)]) for i, img in enumerate(recipients)]


def artifact_stress(
    predict: Predictor,
    recipients: Sequence[np.ndarray],
    donors: Sequence[Donor],
    flagged_class: int = 1,
) -> StressResult:
    """Stress test of an artifact: the donors' artifact pixels pasted onto the recipients (other class)."""
    pairs = stressed_images(recipients, donors)
    base = np.asarray(predict(list(recipients)), np.float64)
    stressed = np.asarray(predict([p[0] for p in pairs]), np.float64)
    return _result(base, stressed, flagged_class)


def stain_stress(
    predict: Predictor,
    recipients: Sequence[np.ndarray],
    recolour: Callable[[np.ndarray], np.ndarray],
    flagged_class: int = 1,
) -> StressResult:
    """Stress test of a stain: the recipients (other class) recoloured to the marked class's stain."""
    base = np.asarray(predict(list(recipients)), np.float64)
    stressed = np.asarray(predict([recolour(im) for im in recipients]), np.float64)
    return _result(base, stressed, flagged_class)


def passes(before: StressResult, after: StressResult) -> bool:
    """Whether the mitigated model's sensitivity fell enough (see the module docs)."""
    return abs(after.sensitivity) <= max(PASS_FLOOR, PASS_RATIO * abs(before.sensitivity))


def relevance_ratio(relevance: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> float | None:
    """Share of positive relevance on the artifact pixels divided by their share of the area (mean over images).

    The audit's ``artifact.relevance`` ratio, on the stress images where the pasted mask is known exactly.
    ``None`` when no image has positive relevance.
    """
    shares, areas = [], []
    for r, m in zip(relevance, masks, strict=True):
        pos = np.maximum(np.asarray(r, np.float64), 0.0)
        total = float(pos.sum())
        if total <= 0 or not m.any():
            continue
        shares.append(float(pos[m].sum()) / total)
        areas.append(float(m.mean()))
    if not shares:
        return None
    return float(np.mean(shares)) / max(float(np.mean(areas)), 1e-9)


def clean_auc(predict: Predictor, images: Sequence[np.ndarray], labels: Sequence[int]) -> float | None:
    """Image-level ROC AUC on clean held-out images (``None`` with one class only)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(labels)
    if len(set(y.tolist())) < 2:
        return None
    return float(roc_auc_score(y, np.asarray(predict(list(images)), np.float64)))
