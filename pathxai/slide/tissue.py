"""Tissue detection on a low-resolution thumbnail (Otsu on saturation, morphological clean-up)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from pathxai.pixels import is_background, saturation_value
from pathxai.slide.base import BaseSlide

# scikit-image is imported inside the functions: tile-reading worker processes import this
# package and should start fast.


@dataclass(frozen=True)
class TissueSettings:
    """Parameters of tissue detection.

    Attributes
    ----------
    mpp
        Resolution of the thumbnail the mask is computed on, µm per pixel.
    min_saturation
        Floor for the saturation threshold: Otsu's threshold is never below this, so a slide
        that is nearly all background does not turn its glass into "tissue".
    max_value
        Pixels brighter than this HSV value *and* below the threshold are background.
    min_dark
        Pixels darker than this value (0-1) count as tissue only if saturated (black pen,
        shadows and out-of-focus edges are not tissue).
    closing_um, opening_um
        Radii of the morphological closing (fills gaps between nuclei) and opening (removes
        specks), in µm.
    min_object_um2, min_hole_um2
        Tissue islands smaller than ``min_object_um2`` are removed; holes smaller than
        ``min_hole_um2`` are filled.
    """

    mpp: float = 8.0
    min_saturation: float = 0.07
    max_value: float = 0.92
    min_dark: float = 0.08
    closing_um: float = 24.0
    opening_um: float = 16.0
    min_object_um2: float = 40_000.0
    min_hole_um2: float = 20_000.0

    def to_dict(self) -> dict[str, float]:
        """Settings as a plain dict (for metadata)."""
        return asdict(self)


@dataclass(frozen=True)
class TissueMask:
    """A boolean tissue mask with its own resolution.

    Attributes
    ----------
    mask
        ``(H, W)`` bool, True on tissue.
    mpp
        µm per mask pixel.
    downsample
        Level-0 pixels per mask pixel.
    threshold
        The saturation threshold that was applied.
    settings
        The settings used.
    """

    mask: np.ndarray
    mpp: float
    downsample: float
    threshold: float
    settings: TissueSettings

    @property
    def fraction(self) -> float:
        """Fraction of the slide area that is tissue."""
        return float(self.mask.mean()) if self.mask.size else 0.0


def _disk(radius_px: float) -> list[tuple[np.ndarray, int]] | np.ndarray:
    from skimage import morphology

    # A decomposed disk keeps closing/opening fast for large radii.
    r = max(0, round(radius_px))
    return morphology.disk(r, decomposition="sequence") if r >= 3 else morphology.disk(r)


def tissue_from_rgb(rgb: np.ndarray, mpp: float, settings: TissueSettings) -> tuple[np.ndarray, float]:
    """Compute a tissue mask from an RGB thumbnail at ``mpp`` µm/px.

    Parameters
    ----------
    rgb
        RGB uint8 ``(H, W, 3)``.
    mpp
        Thumbnail resolution.
    settings
        Detection parameters.

    Returns
    -------
    tuple[np.ndarray, float]
        The boolean mask and the saturation threshold used.
    """
    from skimage import filters, morphology

    sat, val = saturation_value(rgb)
    valid = val > settings.min_dark
    sample = sat[valid]
    if sample.size and float(sample.max()) > float(sample.min()):
        threshold = max(float(filters.threshold_otsu(sample)), settings.min_saturation)
    else:
        threshold = settings.min_saturation
    mask = (sat >= threshold) & valid
    mask &= ~is_background(sat, val, settings.max_value, threshold)
    if settings.closing_um > 0:
        mask = morphology.closing(mask, _disk(settings.closing_um / mpp))
    if settings.opening_um > 0:
        mask = morphology.opening(mask, _disk(settings.opening_um / mpp))
    px_area = mpp * mpp
    # Size limits never exceed 2% of the image, so a small crop that is all tissue keeps it.
    cap = max(1, mask.size // 50)
    if settings.min_hole_um2 > 0:
        mask = morphology.remove_small_holes(
            mask, max_size=min(cap, max(1, int(settings.min_hole_um2 / px_area)))
        )
    if settings.min_object_um2 > 0:
        mask = morphology.remove_small_objects(
            mask, max_size=min(cap, max(1, int(settings.min_object_um2 / px_area)))
        )
    return mask.astype(bool), threshold


def detect_tissue(slide: BaseSlide, settings: TissueSettings | None = None) -> TissueMask:
    """Detect tissue on a thumbnail of ``slide``.

    Parameters
    ----------
    slide
        Any slide with a known resolution.
    settings
        Detection parameters (defaults: :class:`TissueSettings`).

    Returns
    -------
    TissueMask
        The mask, at ``settings.mpp``, finer for small slides (longer side about 1024 px) and
        coarser for huge ones (the thumbnail's longer side is capped); the mask records its
        real resolution.
    """
    settings = settings or TissueSettings()
    # Small slides get a finer mask (at least ~1024 px on the longer side), so that the
    # morphology and the minimum object size still make sense.
    extent_um = max(slide.dimensions) * slide.mpp
    mask_mpp = min(settings.mpp, max(slide.mpp, extent_um / 1024, 1.0))
    thumb, downsample = slide.thumbnail(mpp=mask_mpp)
    mpp = slide.mpp * downsample
    mask, threshold = tissue_from_rgb(thumb, mpp, settings)
    return TissueMask(mask=mask, mpp=mpp, downsample=downsample, threshold=threshold, settings=settings)
