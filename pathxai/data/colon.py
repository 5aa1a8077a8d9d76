"""The colon demo "slide" shipped with pathxai: a pyramidal TIFF mosaic of EBHI-Seg images and its truth.

The files live in ``pathxai/data/colon_demo/`` (package data, so a wheel install has them without a
network): ``ebhi_colon_mosaic.tif`` (the slide, level-0 µm/px in its resolution tags, attribution in its
ImageDescription), ``ebhi_colon_truth.png`` (one code per level-0 pixel, :data:`TRUTH_CODES`) and
``ebhi_colon_mosaic.json`` (the images, their cases and positions, the attribution). They are built by
``scripts/make_colon_demo.py`` from EBHI-Seg cases held out of the default model's training (CC BY 4.0).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from pathxai.errors import DataFetchError

__all__ = [
    "ADENOCARCINOMA_OTHER",
    "ATTRIBUTION",
    "COLON_DEMO_DIR",
    "GLASS",
    "LESION",
    "NORMAL",
    "TRUTH_CODES",
    "ColonDemo",
    "colon_demo",
]

#: Truth code of a pixel outside every image (white glass between and around the images).
GLASS = 0
#: Truth code of a pixel of a normal-mucosa image (non-tumour).
NORMAL = 1
#: Truth code of a pixel of an adenocarcinoma image outside the publishers' lesion mask.
ADENOCARCINOMA_OTHER = 2
#: Truth code of a pixel inside the lesion mask of an adenocarcinoma image (tumour).
LESION = 3
#: Every truth code and its meaning (also written in the mosaic's JSON).
TRUTH_CODES = {
    GLASS: "glass (no image)",
    NORMAL: "normal image (non-tumour)",
    ADENOCARCINOMA_OTHER: "adenocarcinoma image, outside the lesion mask (not used)",
    LESION: "adenocarcinoma image, inside the lesion mask (tumour)",
}

#: The attribution the licence (CC BY 4.0) asks for.
ATTRIBUTION = (
    "EBHI-Seg: Shi L, Li X, Hu W, et al. EBHI-Seg: A novel enteroscope biopsy histopathological "
    "hematoxylin and eosin image dataset for image segmentation tasks. Front. Med. 2023; "
    "doi:10.3389/fmed.2023.1114673; data doi:10.6084/m9.figshare.21540159; licence CC BY 4.0"
)

#: Where the package keeps the files.
COLON_DEMO_DIR = Path(str(resources.files("pathxai.data") / "colon_demo"))

_SLIDE = "ebhi_colon_mosaic.tif"
_TRUTH = "ebhi_colon_truth.png"
_META = "ebhi_colon_mosaic.json"


@dataclass(frozen=True)
class ColonDemo:
    """The colon demo files.

    Attributes
    ----------
    slide
        The pyramidal TIFF mosaic.
    truth
        The level-0 truth map (PNG, one :data:`TRUTH_CODES` value per pixel).
    metadata
        The JSON description (images, cases, cell positions, attribution, mpp).
    """

    slide: Path
    truth: Path
    metadata: Path

    def read_truth(self) -> np.ndarray:
        """The truth map as a ``(H, W)`` uint8 array of :data:`TRUTH_CODES` at level 0."""
        from PIL import Image

        with Image.open(self.truth) as im:
            return np.asarray(im, dtype=np.uint8)

    def read_metadata(self) -> dict[str, Any]:
        """The mosaic's JSON description."""
        meta: dict[str, Any] = json.loads(self.metadata.read_text(encoding="utf-8"))
        return meta


def colon_demo(folder: str | Path | None = None) -> ColonDemo:
    """The colon demo files in ``folder`` (default: the installed package's copy).

    Raises
    ------
    DataFetchError
        When a file is missing (an install without the package data).
    """
    base = Path(folder) if folder is not None else COLON_DEMO_DIR
    demo = ColonDemo(base / _SLIDE, base / _TRUTH, base / _META)
    for p in (demo.slide, demo.truth, demo.metadata):
        if not p.is_file():
            raise DataFetchError(
                "the colon demo file is missing",
                path=p,
                hint="reinstall pathxai (the file is package data) or rebuild it with scripts/make_colon_demo.py",
            )
    return demo
