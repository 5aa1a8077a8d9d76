"""Slides: the OpenSlide facade, an in-memory slide, resolution handling and tissue detection.

This layer never imports torch. ``open_slide`` picks the reader from the file.
"""

from __future__ import annotations

from pathlib import Path

from pathxai.slide.array_slide import ArraySlide
from pathxai.slide.base import BaseSlide
from pathxai.slide.openslide_slide import OpenSlideSlide, openslide_format
from pathxai.slide.plain_tiff import is_plain_tiff
from pathxai.slide.resolution import PLAUSIBLE_MPP, Resolution, resolve_mpp
from pathxai.slide.tissue import TissueMask, TissueSettings, detect_tissue

#: Plain image extensions read with PIL into an :class:`ArraySlide` (patches, GlaS images).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp"})

Slide = BaseSlide

__all__ = [
    "IMAGE_SUFFIXES",
    "PLAUSIBLE_MPP",
    "ArraySlide",
    "BaseSlide",
    "OpenSlideSlide",
    "Resolution",
    "Slide",
    "TissueMask",
    "TissueSettings",
    "detect_tissue",
    "is_plain_image",
    "open_slide",
    "resolve_mpp",
]


def open_slide(path: str | Path, mpp: float | None = None, decoder: str | None = None) -> BaseSlide:
    """Open a whole-slide image (via OpenSlide) or a plain image (via PIL, or tifffile for strip TIFFs).

    Parameters
    ----------
    path
        Slide or image file.
    mpp
        Level-0 µm/px override (required when the metadata lacks a plausible one).
    decoder
        For whole-slide images: ``"auto"`` or ``"openslide"``, see :class:`OpenSlideSlide`
        (default: ``$PATHXAI_DECODER``, else ``"auto"``).

    Returns
    -------
    BaseSlide
        A context manager; close it when done.

    Raises
    ------
    SlideError
        When the file cannot be opened, with the reason.
    """
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ArraySlide.from_image(path, mpp)
    if is_plain_image(path):
        return ArraySlide.from_tiff(path, mpp)
    return OpenSlideSlide(path, mpp=mpp, decoder=decoder)


def is_plain_image(path: str | Path) -> bool:
    """Whether ``path`` is a plain image rather than a whole-slide image.

    Plain images are the :data:`IMAGE_SUFFIXES` files and TIFFs that OpenSlide does not recognise
    whose first image is strip-organised (e.g. the Kather 2016 tiles: 150x150 RGB, PackBits strips).
    They are read whole into memory. Tiled TIFFs, and strip TIFFs OpenSlide reads (NDPI), are slides.
    """
    path = Path(path)
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return True
    return path.is_file() and is_plain_tiff(path) and openslide_format(path) is None
