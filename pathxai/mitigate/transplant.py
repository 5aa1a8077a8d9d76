"""The audit's evidence moved onto images of the other class: pen masks and stain statistics.

A shortcut stress test asks how much the prediction follows the artifact alone. The artifact comes
from the cohort itself: the detector's masks of the artifact on the images of the class it marks
(:func:`artifact_donors`), pasted with their own pixels onto images of the *other* class
(:func:`paste`), or the stain of the marked class fitted on its images and imposed on the others
(:func:`stain_transfer`). The same functions make the fine-tuning data of the concept methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from pathxai.audit.artifacts import detect
from pathxai.model.augment import macenko_to

__all__ = ["Donor", "artifact_donors", "fill_masked", "paste", "stain_transfer"]

#: Smallest share of an image the artifact must cover for the image to donate it.
MIN_DONOR_AREA = 0.01


@dataclass(frozen=True)
class Donor:
    """An artifact as found on one image: the image, the artifact's mask, and the image's id (if known)."""

    image: np.ndarray
    mask: np.ndarray
    id: str = ""

    @property
    def area(self) -> float:
        """Share of the image the artifact covers."""
        return float(self.mask.mean())


def artifact_donors(
    images: Sequence[np.ndarray],
    mpp: float,
    kind: str,
    limit: int = 32,
    ids: Sequence[str] | None = None,
) -> list[Donor]:
    """Images showing artifact ``kind`` (a :data:`pathxai.audit.artifacts.ARTIFACT_KINDS` entry) with its mask.

    Parameters
    ----------
    images
        uint8 RGB images at ``mpp`` (the class the artifact marks).
    mpp
        Their resolution.
    kind
        Artifact kind, e.g. ``pen:blue``.
    limit
        At most this many donors (largest artifact area first).
    ids
        The images' ids, kept on the donors (default: none).
    """
    donors = []
    for i, img in enumerate(images):
        mask = detect(img, mpp)[kind]
        if mask.mean() >= MIN_DONOR_AREA:
            donors.append(Donor(img, mask, ids[i] if ids is not None else ""))
    donors.sort(key=lambda d: -d.area)
    return donors[:limit]


def paste(recipient: np.ndarray, donor: Donor) -> tuple[np.ndarray, np.ndarray]:
    """``recipient`` with the donor's artifact pixels pasted over it (top-left aligned); and the pasted mask."""
    h = min(recipient.shape[0], donor.image.shape[0])
    w = min(recipient.shape[1], donor.image.shape[1])
    mask = np.zeros(recipient.shape[:2], bool)
    mask[:h, :w] = donor.mask[:h, :w]
    out = recipient.copy()
    out[:h, :w][mask[:h, :w]] = donor.image[:h, :w][mask[:h, :w]]
    return out, mask


def fill_masked(img: np.ndarray, mask: np.ndarray, sigma: float = 6.0) -> np.ndarray:
    """``img`` with ``mask`` filled from its surroundings (normalised convolution: a smooth in-painting)."""
    if not mask.any():
        return img
    keep = (~mask).astype(np.float64)
    out = img.copy()
    weight = ndi.gaussian_filter(keep, sigma)
    for c in range(3):
        num = ndi.gaussian_filter(img[..., c].astype(np.float64) * keep, sigma)
        fill = num / np.maximum(weight, 1e-6)
        # where the mask is wider than the kernel, fall back to the image's mean tissue colour
        fill = np.where(weight > 1e-3, fill, float(img[..., c][~mask].mean()) if (~mask).any() else 255.0)
        out[..., c][mask] = np.clip(fill[mask], 0, 255).astype(np.uint8)
    return out


def _mosaic(images: Sequence[np.ndarray]) -> np.ndarray:
    w = min(im.shape[1] for im in images)
    return np.concatenate([im[:, :w] for im in images], axis=0)


def stain_transfer(donors: Sequence[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Recolour images to the stain of ``donors`` (Macenko vectors and concentration scale of their mosaic).

    Returns
    -------
    Callable
        ``uint8 RGB -> uint8 RGB``; an image whose stain cannot be estimated is returned unchanged.
    """
    if not donors:
        raise ValueError("stain_transfer needs at least one donor image")
    return macenko_to(_mosaic(donors))
