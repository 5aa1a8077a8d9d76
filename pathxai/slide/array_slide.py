"""An in-memory slide over a numpy array, with the same interface as the OpenSlide facade.

Used for tests, for plain image files (PNG/JPEG/TIFF patches such as GlaS), and for mosaics.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pathxai.errors import SlideError
from pathxai.slide.base import BaseSlide, resize, rgba_to_rgb
from pathxai.slide.resolution import Resolution

#: Largest plain image accepted, in pixels (PIL's decompression-bomb guard is set to this).
MAX_IMAGE_PIXELS = 40_000 * 40_000


class ArraySlide(BaseSlide):
    """A slide held in memory as an RGB uint8 array, with a 2x pyramid built on demand.

    Parameters
    ----------
    pixels
        RGB uint8 ``(H, W, 3)`` level-0 image.
    mpp
        Level-0 µm per pixel (``None`` for unknown).
    name
        Display name used in messages.
    n_levels
        Number of pyramid levels (each half the size of the previous).
    resolution
        Where ``mpp`` came from, when the caller knows better than "given with the array".
    """

    def __init__(
        self,
        pixels: np.ndarray,
        mpp: float | None,
        name: str = "array",
        n_levels: int = 1,
        resolution: Resolution | None = None,
    ) -> None:
        if pixels.ndim != 3 or pixels.shape[2] != 3 or pixels.dtype != np.uint8:
            raise ValueError(
                f"ArraySlide needs an RGB uint8 (H, W, 3) array, got {pixels.dtype} {pixels.shape}"
            )
        if n_levels < 1:
            raise ValueError(f"n_levels must be >= 1, got {n_levels}")
        source = "metadata" if mpp is not None else "unknown"
        if resolution is None or resolution.mpp != mpp:
            resolution = Resolution(mpp, source, "given with the array" if mpp else "no mpp given")
        super().__init__(resolution)
        self.name = name
        levels = [np.ascontiguousarray(pixels)]
        for _ in range(1, n_levels):
            prev = levels[-1]
            if min(prev.shape[:2]) < 2:
                break
            levels.append(resize(prev, prev.shape[1] // 2, prev.shape[0] // 2))
        self._levels = levels

    @classmethod
    def from_image(cls, path: str | Path, mpp: float | None, n_levels: int = 1) -> ArraySlide:
        """Load a plain image file (PNG, JPEG, TIFF patch) as a slide.

        Grayscale and RGBA images are converted to RGB (RGBA composited on white); 16-bit
        images are scaled to 8 bits.

        Raises
        ------
        SlideError
            If the file is missing, unreadable, not an image, or larger than
            :data:`MAX_IMAGE_PIXELS` (a decompression bomb guard).
        """
        path = Path(path)
        from pathxai.slide.openslide_slide import check_readable_file

        check_readable_file(path)
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        try:
            with Image.open(path) as img:
                w, h = img.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise SlideError(
                        f"image of {w}x{h} pixels exceeds the {MAX_IMAGE_PIXELS} pixel limit",
                        path=path,
                        hint="convert it to a pyramidal TIFF and open it as a slide",
                    )
                pixels = image_to_rgb(img)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise SlideError(f"refused as a decompression bomb: {exc}", path=path) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise SlideError(f"not a readable image: {exc}", path=path) from exc
        return cls(pixels, mpp, name=str(path), n_levels=n_levels)

    @classmethod
    def from_tiff(cls, path: str | Path, mpp: float | None, n_levels: int = 1) -> ArraySlide:
        """Load a plain strip TIFF (e.g. a Kather 2016 tile), which OpenSlide does not read, as a slide.

        ``mpp`` overrides the file's resolution tags; without it a plausible tag resolution is used,
        else the resolution is unknown. 16-bit samples are scaled to 8 bits over the declared range
        (see :mod:`pathxai.slide.plain_tiff`).

        Raises
        ------
        SlideError
            If the file is truncated, larger than :data:`MAX_IMAGE_PIXELS`, or in a pixel format
            that is not converted (floating point, CMYK, ...).
        """
        from pathxai.slide.openslide_slide import check_readable_file
        from pathxai.slide.plain_tiff import read_plain_tiff
        from pathxai.slide.resolution import resolve_mpp

        path = Path(path)
        check_readable_file(path)
        pixels, res = read_plain_tiff(path, MAX_IMAGE_PIXELS)
        if mpp is not None:
            res = resolve_mpp({}, mpp)
        return cls(pixels, res.mpp, name=str(path), n_levels=n_levels, resolution=res)

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each level, level 0 first."""
        return tuple((a.shape[1], a.shape[0]) for a in self._levels)

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample factor of each level relative to level 0."""
        w0 = self._levels[0].shape[1]
        return tuple(w0 / a.shape[1] for a in self._levels)

    @property
    def vendor(self) -> str:
        """Always ``array``."""
        return "array"

    def _level_position(self, level: int, l0: int) -> float:
        """Reads start at the nearest whole level pixel (no interpolation)."""
        return float(round(l0 / self.level_downsamples[level]))

    def _read_level(self, level: int, l0_x: int, l0_y: int, l_w: int, l_h: int) -> np.ndarray:
        arr = self._levels[level]
        d = self.level_downsamples[level]
        x0, y0 = round(l0_x / d), round(l0_y / d)
        out = np.full((l_h, l_w, 3), 255, dtype=np.uint8)
        sx0, sy0 = max(x0, 0), max(y0, 0)
        sx1, sy1 = min(x0 + l_w, arr.shape[1]), min(y0 + l_h, arr.shape[0])
        if sx1 > sx0 and sy1 > sy0:
            out[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0] = arr[sy0:sy1, sx0:sx1]
        return out


def image_to_rgb(img: Image.Image) -> np.ndarray:
    """Convert a PIL image of any common mode to an RGB uint8 array."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # scaled over the format's range (as pathxai.model.datasets.read_rgb does), not stretched
        # to the image's own maximum: a dim image stays dim
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        gray = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        return rgba_to_rgb(np.asarray(img.convert("RGBA")))
    return np.asarray(img.convert("RGB"), dtype=np.uint8)
