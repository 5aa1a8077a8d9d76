"""Suggest a slide's or image's µm/px from the size of its nuclei, when its metadata has none.

Nuclei of H&E tissue have a fairly constant size (a few µm across), so the median diameter of the
compact, isolated nuclei of an image, in pixels, gives its resolution against a reference measured at
a known resolution. The measurement is made *at the reference scale*: the image is resampled so that,
if the current guess were right, its pixels would be the reference's, the nuclei are measured with
the same fixed settings as the reference, and the guess is corrected by the ratio of the diameters;
two or three rounds converge. Segmenting at one scale removes the bias a fixed opening / size filter
would have at other scales.

This is a *suggestion*: :func:`pathxai.slide.open_slide` never uses it in place of metadata. It is
printed by ``pathxai info`` and put into the "unknown resolution" error (:class:`ResolutionError`).
Nuclear size varies with tissue and disease (lymphocytes are small, tumour nuclei large), hence the
uncertainty; the validation on images of known resolution is in ``benchmarks/mpp_estimate.py``
(numbers in ``BENCHMARKS.md``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pathxai.slide.base import BaseSlide, resize

__all__ = [
    "REF_DIAMETER_PX",
    "REF_LOG_SD",
    "REF_MPP",
    "MppEstimate",
    "estimate_image_mpp",
    "estimate_slide_mpp",
    "nucleus_diameters",
]

# ---- the reference, measured on GlaS ---------------------------------------------------------
#: Resolution of the reference images: GlaS (Warwick-QU), Zeiss MIRAX MIDI at 20x.
REF_MPP = 0.62005
#: Median equivalent diameter (px at :data:`REF_MPP`) of the nuclei :func:`nucleus_diameters` keeps,
#: pooled over the 124 images of the 12 GlaS training patients (``split == train`` in
#: ``data_manifests/glas.csv``; the 4 test patients are kept for validation). Measured with
#: ``python benchmarks/mpp_estimate.py --reference`` (the median of the per-image medians).
REF_DIAMETER_PX = 7.59
#: Between-image spread of that measurement: standard deviation of log(per-image median diameter)
#: over the same 124 images. It is the irreducible part of the uncertainty of one image's estimate.
REF_LOG_SD = 0.0626

#: Fewest nuclei an estimate is given from (a 150x150 px tile at 0.5 µm/px holds 0-25 compact,
#: isolated ones; the bootstrap term of the uncertainty grows as the count falls).
MIN_NUCLEI = 8
#: Settings of the segmentation, in pixels *at the reference scale* (never change one without
#: re-measuring the reference constants above).
_SMOOTH_SIGMA = 1.0
_OPEN_RADIUS = 2
_MIN_AREA = 20
_MIN_SOLIDITY = 0.9
_MAX_ECCENTRICITY = 0.9
_BACKGROUND = 220


@dataclass(frozen=True)
class MppEstimate:
    """A suggested level-0 resolution with its uncertainty.

    Attributes
    ----------
    mpp
        Suggested µm/px, or ``None`` when too few nuclei were found.
    rel_sd
        One standard deviation, relative (0.1 = ±10 %), combining the reference's between-image
        spread with the sampling error of this image's median.
    low, high
        A 95 % interval (``mpp * exp(∓1.96 * rel_sd)``).
    n_nuclei
        Nuclei measured.
    note
        How it was obtained, or why there is no estimate.
    """

    mpp: float | None
    rel_sd: float
    low: float | None
    high: float | None
    n_nuclei: int
    note: str

    def describe(self) -> str:
        """One line, e.g. ``≈0.50 µm/px (95 % interval 0.44-0.57, from 812 nuclei)``."""
        if self.mpp is None:
            return f"no estimate ({self.note})"
        return (
            f"≈{self.mpp:.2f} µm/px (±{100 * self.rel_sd:.0f} %, 95 % interval "
            f"{self.low:.2f}-{self.high:.2f}, from the size of {self.n_nuclei} nuclei)"
        )


def nucleus_diameters(rgb: np.ndarray) -> np.ndarray:
    """Equivalent diameters (px) of the compact, isolated nuclei of an RGB uint8 image.

    Haematoxylin from colour deconvolution, smoothed, thresholded (Otsu over tissue pixels), opened
    and hole-filled; components that are small, non-convex (touching nuclei) or elongated are dropped.
    The settings are fixed in pixels: measure at the reference scale (see :func:`estimate_image_mpp`).
    """
    from scipy import ndimage as ndi
    from skimage import color, filters, measure, morphology

    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < 16:
        return np.zeros(0)
    tissue = rgb.mean(axis=2) < _BACKGROUND
    if tissue.sum() < 256:
        return np.zeros(0)
    h = filters.gaussian(color.rgb2hed(rgb)[..., 0], _SMOOTH_SIGMA)
    vals = h[tissue]
    if float(vals.max() - vals.min()) <= 1e-9:
        return np.zeros(0)
    mask = (h > filters.threshold_otsu(vals)) & tissue
    mask = morphology.opening(mask, morphology.disk(_OPEN_RADIUS))
    mask = ndi.binary_fill_holes(mask)
    props = measure.regionprops_table(
        measure.label(mask), properties=("area", "solidity", "eccentricity", "equivalent_diameter_area")
    )
    keep = (
        (props["area"] >= _MIN_AREA)
        & (props["solidity"] >= _MIN_SOLIDITY)
        & (props["eccentricity"] <= _MAX_ECCENTRICITY)
    )
    return np.asarray(props["equivalent_diameter_area"][keep], dtype=np.float64)


def _diameters_at(regions: Sequence[np.ndarray], guess: float) -> np.ndarray:
    """Diameters of all regions resampled so that ``guess`` µm/px becomes :data:`REF_MPP`."""
    scale = guess / REF_MPP
    out = []
    for rgb in regions:
        h, w = rgb.shape[:2]
        nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
        img = rgb if (nw, nh) == (w, h) else resize(rgb, nw, nh)
        out.append(nucleus_diameters(img))
    return np.concatenate(out) if out else np.zeros(0)


def estimate_image_mpp(
    regions: np.ndarray | Sequence[np.ndarray], start: float = 0.5, rounds: int = 4, seed: int = 0
) -> MppEstimate:
    """Suggest the µm/px of one image, or of several regions of one slide read at the same scale.

    Parameters
    ----------
    regions
        An RGB uint8 image, or a list of them (all at the same, unknown, resolution).
    start
        First guess in µm/px. Each round resamples and re-measures, so the result hardly depends on
        it within the range it serves, scans of about 0.2-0.65 µm/px (20x and 40x): coarser images shrink their
        nuclei below the opening's size in the first round (no estimate), and starting from above
        converges slowly (enlarged nuclei measure nearly the same size).
    rounds
        Most correction rounds (stops earlier when a round changes the guess by under 1 %).
    seed
        For the bootstrap of the median's sampling error.

    Returns
    -------
    MppEstimate
        ``mpp`` is ``None`` when fewer than :data:`MIN_NUCLEI` nuclei are found.
    """
    imgs = [regions] if isinstance(regions, np.ndarray) else list(regions)
    guess = float(start)
    d = np.zeros(0)
    for _ in range(rounds):
        d = _diameters_at(imgs, guess)
        if len(d) < MIN_NUCLEI:
            return MppEstimate(
                None, math.nan, None, None, len(d), f"only {len(d)} nuclei found, {MIN_NUCLEI} needed"
            )
        new = guess * REF_DIAMETER_PX / float(np.median(d))
        new = min(max(new, 0.05), 20.0)
        done = abs(new / guess - 1) < 0.01
        guess = new
        if done:
            break
    rng = np.random.default_rng(seed)
    boot = np.median(rng.choice(d, size=(200, len(d)), replace=True), axis=1)
    sampling = float(np.std(np.log(boot)))
    rel = math.sqrt(REF_LOG_SD**2 + sampling**2)
    return MppEstimate(
        guess,
        rel,
        guess * math.exp(-1.96 * rel),
        guess * math.exp(1.96 * rel),
        len(d),
        f"median nucleus diameter against GlaS ({REF_DIAMETER_PX} px at {REF_MPP} µm/px)",
    )


def estimate_slide_mpp(
    slide: BaseSlide, n_regions: int = 4, region_px: int = 512, seed: int = 0
) -> MppEstimate:
    """Suggest a slide's level-0 µm/px from the nuclei of its most tissue-rich regions.

    Reads a small overview of the whole level 0 (no resolution needed), picks the ``n_regions``
    windows of ``region_px`` level-0 pixels with the most tissue, reads them at level 0 and passes
    them to :func:`estimate_image_mpp`. Small images are used whole.
    """
    w, h = slide.dimensions
    if w * h <= 4 * region_px * region_px:
        return estimate_image_mpp(slide.read_l0_region(0, 0, w, h, w, h), seed=seed)
    side = 256
    down = max(w, h) / side
    ow, oh = max(1, round(w / down)), max(1, round(h / down))
    overview = slide.read_l0_region(0, 0, w, h, ow, oh)
    tissue = overview.mean(axis=2) < _BACKGROUND
    cell = max(1, round(region_px / down))
    scores = []
    for y in range(0, max(1, oh - cell + 1), max(1, cell // 2)):
        for x in range(0, max(1, ow - cell + 1), max(1, cell // 2)):
            scores.append((float(tissue[y : y + cell, x : x + cell].mean()), x, y))
    scores.sort(reverse=True)
    picked: list[tuple[int, int]] = []
    for score, x, y in scores:
        if score < 0.3 or len(picked) >= n_regions:
            break
        if all(abs(x - px) >= cell or abs(y - py) >= cell for px, py in picked):
            picked.append((x, y))
    if not picked:
        return MppEstimate(None, math.nan, None, None, 0, "no tissue-rich region found")
    regions = []
    for x, y in picked:
        l0x, l0y = min(round(x * down), w - region_px), min(round(y * down), h - region_px)
        regions.append(
            slide.read_l0_region(max(0, l0x), max(0, l0y), region_px, region_px, region_px, region_px)
        )
    return estimate_image_mpp(regions, seed=seed)
