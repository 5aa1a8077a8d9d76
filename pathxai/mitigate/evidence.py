"""The data a mitigation works on: training and clean held-out images, and the finding's evidence in them."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pathxai.mitigate.select import Target
from pathxai.mitigate.transplant import Donor, artifact_donors, paste, stain_transfer

__all__ = ["Cohort", "Evidence", "evidence_of", "paired_patches", "stain_donor_picks"]

#: Donor images used for a stain's statistics (a mosaic of this many images of the marked class).
STAIN_DONORS = 12


@dataclass(frozen=True)
class Cohort:
    """Training and clean held-out images at the model's µm/px, with labels and grouping columns."""

    mpp: float
    train: Sequence[np.ndarray]
    train_labels: Sequence[int]
    train_ids: Sequence[str]
    heldout: Sequence[np.ndarray]
    heldout_labels: Sequence[int]
    heldout_ids: Sequence[str]
    train_groups: dict[str, Sequence[str]] = field(default_factory=dict)

    def of_class(self, cls: int, heldout: bool = False) -> list[np.ndarray]:
        """Images of class ``cls`` (training or held-out)."""
        imgs, labs = (self.heldout, self.heldout_labels) if heldout else (self.train, self.train_labels)
        return [im for im, y in zip(imgs, labs, strict=True) if int(y) == cls]

    def ids_of_class(self, cls: int, heldout: bool = False) -> list[str]:
        """Ids of the images of class ``cls`` (in the order of :meth:`of_class`)."""
        ids, labs = (
            (self.heldout_ids, self.heldout_labels) if heldout else (self.train_ids, self.train_labels)
        )
        return [str(i) for i, y in zip(ids, labs, strict=True) if int(y) == cls]


@dataclass(frozen=True)
class Evidence:
    """What the finding points at, ready to transplant: artifact donors or a stain recolouring.

    ``source_ids`` are the ids of the training images the evidence comes from, in the order used
    (the artifact donors; the images of the stain's mosaic), so a reader can rebuild it.
    """

    target: Target
    donors: Sequence[Donor] = ()
    recolour: Callable[[np.ndarray], np.ndarray] | None = None
    source_ids: tuple[str, ...] = ()

    def apply(self, img: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``img`` with the evidence transplanted (donor ``i`` for artifacts), and the changed pixels' mask."""
        if self.donors:
            return paste(img, self.donors[i % len(self.donors)])
        if self.recolour is not None:
            return self.recolour(img), np.ones(img.shape[:2], bool)
        raise ValueError(f"{self.target.id}: no transplantable evidence")


def evidence_of(target: Target, cohort: Cohort) -> Evidence:
    """The evidence of an artifact or stain finding in the training images of the class it marks.

    Raises
    ------
    ValueError
        If no training image of that class shows the artifact.
    """
    marked = cohort.of_class(target.flagged_class)
    ids = cohort.ids_of_class(target.flagged_class)
    if target.kind == "artifact":
        donors = artifact_donors(marked, cohort.mpp, target.artifact, ids=ids)
        if not donors:
            raise ValueError(f"{target.id}: no training image of the marked class shows {target.artifact}")
        return Evidence(target, donors=donors, source_ids=tuple(d.id for d in donors))
    if target.kind == "stain":
        pick = [int(i) for i in stain_donor_picks(len(marked))]
        return Evidence(
            target,
            recolour=stain_transfer([marked[i] for i in pick]),
            source_ids=tuple(ids[i] for i in pick),
        )
    return Evidence(target)


def stain_donor_picks(n_marked: int) -> np.ndarray:
    """Indices (among the marked class's training images) of the stain's donor mosaic (seeded, fixed)."""
    rng = np.random.default_rng(0)
    return rng.choice(n_marked, min(STAIN_DONORS, n_marked), replace=False)


def paired_patches(
    images: Sequence[np.ndarray], evidence: Evidence, size: int, min_share: float = 0.03, limit: int = 256
) -> tuple[np.ndarray, np.ndarray]:
    """Patches of ``images`` with and without the evidence: ``(artifact, clean)``, each ``(N, size, size, 3)``.

    A pair is kept when the transplanted evidence covers at least ``min_share`` of the patch.
    """
    art, cln = [], []
    for i, img in enumerate(images):
        moved, mask = evidence.apply(img, i)
        h, w = img.shape[:2]
        for y in range(0, h - size + 1, size // 2):
            for x in range(0, w - size + 1, size // 2):
                if mask[y : y + size, x : x + size].mean() < min_share:
                    continue
                art.append(moved[y : y + size, x : x + size])
                cln.append(img[y : y + size, x : x + size])
    if not art:
        raise ValueError(
            f"{evidence.target.id}: the evidence covers no patch; nothing to learn a concept from"
        )
    idx = np.random.default_rng(0).permutation(len(art))[:limit]
    return np.stack([art[i] for i in idx]), np.stack([cln[i] for i in idx])
