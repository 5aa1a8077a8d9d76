"""Stain/colour augmentation and stain normalisation for H&E patches (uint8 RGB, HWC).

* HED jitter (Tellez et al. 2018): colour deconvolution with :func:`skimage.color.rgb2hed`,
  per-stain scale and shift, back with :func:`skimage.color.hed2rgb`; optionally re-rendered with
  a randomly perturbed stain matrix (each stain's RGB optical-density vector moved and renormalised),
  which imitates another lab's haematoxylin/eosin hues rather than only their amounts.
* Flips and 90° rotations (the dihedral group: histology has no canonical orientation).
* Stain normalisation: Reinhard (Lab mean/std matching) and Macenko (stain vectors from the
  optical-density plane, concentrations rescaled to a reference's).

All randomness comes from a caller's :class:`numpy.random.Generator`, so results are seeded.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from skimage.color import combine_stains, hed2rgb, hed_from_rgb, lab2rgb, rgb2hed, rgb2lab

from pathxai.pixels import IO, STAIN_ALPHA, STAIN_BETA, macenko_stain_vectors, od_to_rgb, optical_density

__all__ = [
    "Augmenter",
    "MacenkoNormalizer",
    "ReinhardNormalizer",
    "dihedral",
    "hed_jitter",
    "perturbed_stain_matrix",
]

#: skimage's stain matrix (rows: haematoxylin, eosin, DAB optical-density vectors in RGB).
_RGB_FROM_HED = np.linalg.inv(hed_from_rgb)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)


def _check_rgb(img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) RGB image, got {img.dtype} {img.shape}")


def perturbed_stain_matrix(rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Return skimage's HED stain matrix with each stain vector moved by ``N(0, sigma)`` per RGB component.

    Every row is renormalised to unit length and kept non-negative (an optical density never is).
    """
    m = _RGB_FROM_HED + rng.normal(0.0, sigma, size=(3, 3)) * (np.abs(_RGB_FROM_HED) > 0)
    m = np.maximum(m, 1e-3)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def hed_jitter(
    img: np.ndarray,
    rng: np.random.Generator,
    sigma: float = 0.05,
    bias: float = 0.05,
    matrix_sigma: float = 0.0,
) -> np.ndarray:
    """Randomly scale and shift each stain (haematoxylin, eosin, DAB) in HED space.

    Parameters
    ----------
    img
        uint8 RGB patch.
    rng
        Random generator.
    sigma
        Scale factors are drawn from ``U(1 - sigma, 1 + sigma)``.
    bias
        Shifts are drawn from ``U(-bias, bias)`` times the channel's maximum.
    matrix_sigma
        When positive, the stains are recombined with :func:`perturbed_stain_matrix` (drawn after
        the scales and shifts, so ``matrix_sigma=0`` reproduces the plain jitter exactly).

    Returns
    -------
    numpy.ndarray
        The jittered uint8 RGB patch.
    """
    _check_rgb(img)
    hed = rgb2hed(img)
    alpha = rng.uniform(1 - sigma, 1 + sigma, size=3)
    beta = rng.uniform(-bias, bias, size=3)
    scale = np.maximum(hed.reshape(-1, 3).max(axis=0), 1e-6)
    hed = hed * alpha + beta * scale
    if matrix_sigma > 0:
        return _to_uint8(combine_stains(hed, perturbed_stain_matrix(rng, matrix_sigma)))
    return _to_uint8(hed2rgb(hed))


def dihedral(img: np.ndarray, k: int) -> np.ndarray:
    """Apply one of the 8 dihedral transforms (``k`` in 0..7: ``k % 4`` rotations, flip if ``k >= 4``)."""
    out = np.rot90(img, k % 4, axes=(0, 1))
    if k >= 4:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


@dataclass(frozen=True)
class Augmenter:
    """Seeded training augmentation: HED jitter then a random dihedral transform.

    Attributes
    ----------
    hed_sigma, hed_bias
        HED jitter strength (0 disables).
    stain_matrix_sigma
        Random stain-matrix perturbation (:func:`perturbed_stain_matrix`; 0 disables).
    flips_rotations
        Apply a random flip/90° rotation.
    """

    hed_sigma: float = 0.05
    hed_bias: float = 0.05
    flips_rotations: bool = True
    stain_matrix_sigma: float = 0.0

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment one uint8 RGB patch."""
        out = img
        if self.hed_sigma > 0 or self.hed_bias > 0 or self.stain_matrix_sigma > 0:
            out = hed_jitter(out, rng, self.hed_sigma, self.hed_bias, self.stain_matrix_sigma)
        if self.flips_rotations:
            out = dihedral(out, int(rng.integers(0, 8)))
        return out

    def to_dict(self) -> dict[str, float | bool]:
        """Describe the settings (for the model card; the stain-matrix entry only when it is on)."""
        out: dict[str, float | bool] = {
            "hed_sigma": self.hed_sigma,
            "hed_bias": self.hed_bias,
            "flips_rotations": self.flips_rotations,
        }
        if self.stain_matrix_sigma > 0:
            out["stain_matrix_sigma"] = self.stain_matrix_sigma
        return out


class ReinhardNormalizer:
    """Reinhard et al. (2001) colour transfer in CIE Lab: match per-channel mean and std to a reference."""

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.std: np.ndarray | None = None

    def fit(self, reference: np.ndarray) -> ReinhardNormalizer:
        """Learn the reference image's Lab statistics."""
        _check_rgb(reference)
        lab = rgb2lab(reference).reshape(-1, 3)
        self.mean, self.std = lab.mean(axis=0), np.maximum(lab.std(axis=0), 1e-6)
        return self

    def transform(self, img: np.ndarray) -> np.ndarray:
        """Map ``img``'s Lab statistics onto the reference's."""
        if self.mean is None or self.std is None:
            raise ValueError("call fit(reference) before transform")
        _check_rgb(img)
        lab = rgb2lab(img)
        flat = lab.reshape(-1, 3)
        m, s = flat.mean(axis=0), np.maximum(flat.std(axis=0), 1e-6)
        out = (lab - m) / s * self.std + self.mean
        return _to_uint8(lab2rgb(out))


class MacenkoNormalizer:
    """Macenko et al. (2009) stain normalisation.

    Stain vectors are the extreme angles of the optical densities projected on the plane of
    their two main eigenvectors; concentrations are rescaled so their 99th percentile matches
    the reference's.

    Parameters
    ----------
    io
        Transmitted light intensity (background white level; :func:`pathxai.pixels.optical_density`).
    beta
        Optical-density threshold below which pixels are treated as background.
    alpha
        Percentile for the robust extreme angles.
    """

    def __init__(self, io: float = IO, beta: float = STAIN_BETA, alpha: float = STAIN_ALPHA) -> None:
        self.io, self.beta, self.alpha = io, beta, alpha
        self.stains: np.ndarray | None = None
        self.max_conc: np.ndarray | None = None

    def _od(self, img: np.ndarray) -> np.ndarray:
        return optical_density(img.reshape(-1, 3), self.io)

    def _stains(self, od: np.ndarray) -> np.ndarray:
        return macenko_stain_vectors(od, self.beta, self.alpha)

    def _conc(self, od: np.ndarray, stains: np.ndarray) -> np.ndarray:
        conc, *_ = np.linalg.lstsq(stains.T, od.T, rcond=None)
        return conc

    def fit(self, reference: np.ndarray) -> MacenkoNormalizer:
        """Learn the reference's stain vectors and concentration scale."""
        _check_rgb(reference)
        od = self._od(reference)
        self.stains = self._stains(od)
        self.max_conc = np.percentile(self._conc(od, self.stains), 99, axis=1)
        return self

    def transform(self, img: np.ndarray) -> np.ndarray:
        """Re-render ``img`` with the reference's stain vectors and concentration scale."""
        if self.stains is None or self.max_conc is None:
            raise ValueError("call fit(reference) before transform")
        _check_rgb(img)
        od = self._od(img)
        stains = self._stains(od)
        conc = self._conc(od, stains)
        scale = self.max_conc / np.maximum(np.percentile(conc, 99, axis=1), 1e-6)
        conc = conc * scale[:, None]
        return od_to_rgb((self.stains.T @ conc).T.reshape(img.shape), self.io)


def macenko_to(reference: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
    """A function recolouring uint8 RGB images to ``reference``'s stain (Macenko).

    An image whose stain cannot be estimated (too little tissue) is returned unchanged.
    """
    norm = MacenkoNormalizer().fit(reference)

    def run(img: np.ndarray) -> np.ndarray:
        try:
            return norm.transform(img)
        except ValueError:
            return img

    return run
