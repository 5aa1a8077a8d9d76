"""Generated tissue-like H&E images for audit tests that must run without ``../shared``.

Pink eosin stroma with texture, purple haematoxylin nuclei, and a glass margin: enough colour
structure for the background test, the stain features and the artifact detectors.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from pathxai.audit.cohort import AuditItem

#: Resolution the generated images pretend to have (as the GlaS subset of the real-data tests).
MPP = 2.48


def he_image(rng: np.random.Generator, h: int = 130, w: int = 194) -> np.ndarray:
    """One uint8 RGB tissue-like image: stroma, nuclei, and white glass along one border."""
    od_e = np.asarray([0.05, 0.45, 0.15])  # eosin: absorbs green most
    od_h = np.asarray([0.65, 0.75, 0.25])  # haematoxylin: absorbs red and green
    e = 0.8 + 0.4 * ndi.gaussian_filter(rng.normal(0, 1, (h, w)), 2)
    nuclei = ndi.gaussian_filter((rng.random((h, w)) < 0.02).astype(float), 1.5)
    hc = np.clip(nuclei / max(nuclei.max(), 1e-9) * 2.0, 0, 1.2)
    od = e[..., None] * od_e + hc[..., None] * od_h
    glass = np.zeros((h, w), bool)
    glass[:, : int(rng.integers(10, 30))] = True
    od[glass] = 0.02
    img = 256.0 * np.exp(-od) - 1.0 + rng.normal(0, 3, (h, w, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def items(images: list[np.ndarray], tumour: list[int], per_patient: int = 2) -> list[AuditItem]:
    """Audit items of generated images: ``per_patient`` images per patient, all in one train split."""
    return [
        AuditItem(
            f"syn_{i}",
            im,
            MPP,
            1.0,
            t,
            {"patient": f"p{i // per_patient}", "site": "lab", "scanner": "s", "split": "train"},
        )
        for i, (im, t) in enumerate(zip(images, tumour, strict=True))
    ]
