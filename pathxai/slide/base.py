"""The slide interface shared by the OpenSlide facade and the in-memory :class:`ArraySlide`."""

from __future__ import annotations

import abc
import math
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import numpy as np
from PIL import Image

from pathxai.errors import ResolutionError, SlideError
from pathxai.slide.resolution import Resolution

if TYPE_CHECKING:
    from pathxai.slide.nuclei_mpp import MppEstimate

#: Tolerance for treating a coordinate as a whole pixel.
_EPS = 1e-6


class BaseSlide(abc.ABC):
    """A multi-resolution slide: levels, resolution and region reads at a target mpp.

    Subclasses implement :meth:`_read_level`; everything else (choosing the level, resizing,
    reading at a target mpp, thumbnails) is shared.
    """

    #: Display name used in messages (the file path for files).
    name: str = "slide"

    def __init__(self, resolution: Resolution) -> None:
        self._resolution = resolution
        #: Regions :meth:`thumbnail` could not read (corrupt tiles), painted as background.
        self.unreadable_regions: list[str] = []

    # ---- metadata -------------------------------------------------------------------
    @property
    @abc.abstractmethod
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each level, level 0 first."""

    @property
    @abc.abstractmethod
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample factor of each level relative to level 0."""

    @property
    def properties(self) -> Mapping[str, str]:
        """Vendor metadata (empty for in-memory slides)."""
        return {}

    @property
    def vendor(self) -> str:
        """The format family (e.g. ``aperio``, ``generic-tiff``, ``array``)."""
        return "unknown"

    @property
    def associated_images(self) -> tuple[str, ...]:
        """Names of associated images (label, macro, thumbnail)."""
        return ()

    @property
    def level_count(self) -> int:
        """Number of pyramid levels."""
        return len(self.level_dimensions)

    @property
    def dimensions(self) -> tuple[int, int]:
        """Level-0 ``(width, height)``."""
        return self.level_dimensions[0]

    @property
    def resolution(self) -> Resolution:
        """The level-0 resolution and where it came from."""
        return self._resolution

    @property
    def mpp(self) -> float:
        """Level-0 µm per pixel.

        Raises
        ------
        ResolutionError
            If the resolution is unknown or implausible and no override was given.
        """
        if self._resolution.mpp is None:
            raise self.resolution_error()
        return self._resolution.mpp

    def mpp_suggestion(self) -> MppEstimate:
        """The µm/px the size of the slide's nuclei suggests (computed once; never used as the mpp).

        See :mod:`pathxai.slide.nuclei_mpp`. A failure to estimate is an estimate without ``mpp``.
        """
        from pathxai.slide.nuclei_mpp import MppEstimate, estimate_slide_mpp

        cached: MppEstimate | None = getattr(self, "_mpp_suggestion", None)
        if cached is None:
            try:
                cached = estimate_slide_mpp(self)
            except (SlideError, OSError, ValueError, MemoryError) as exc:
                cached = MppEstimate(None, math.nan, None, None, 0, f"estimate failed: {exc}")
            self._mpp_suggestion = cached
        return cached

    def resolution_error(self, path: str | Path | None = None) -> ResolutionError:
        """The "unknown resolution" error, with the nuclei-size suggestion in its hint when there is one."""
        est = self.mpp_suggestion()
        if est.mpp is None:
            hint = "pass the level-0 resolution explicitly, e.g. --slide-mpp 0.5 for a 20x scan"
        else:
            hint = (
                f"pass the level-0 resolution explicitly; the size of its nuclei suggests {est.describe()}: "
                f"check it against the scan's objective before using it, e.g. --slide-mpp {est.mpp:.2f}"
            )
        return ResolutionError(
            f"unknown resolution: {self._resolution.note}",
            path=path if path is not None else self.name,
            hint=hint,
        )

    # ---- reading --------------------------------------------------------------------
    @abc.abstractmethod
    def _read_level(self, level: int, l0_x: int, l0_y: int, l_w: int, l_h: int) -> np.ndarray:
        """Read ``l_w`` x ``l_h`` pixels of ``level`` whose top-left is level-0 ``(l0_x, l0_y)``.

        Returns an RGB uint8 ``(l_h, l_w, 3)`` array; areas outside the slide are white.
        """

    def best_level(self, downsample: float) -> int:
        """The level with the largest downsample not above ``downsample`` (1 % tolerance)."""
        best = 0
        for i, d in enumerate(self.level_downsamples):
            if d <= downsample * 1.01:  # real downsamples are a little off (2.0005)
                best = i if d >= self.level_downsamples[best] else best
        return best

    def _level_position(self, level: int, l0: int) -> float:
        """Where a read of ``level`` starting at integer level-0 coordinate ``l0`` begins, in level pixels.

        OpenSlide starts at ``l0 / downsample`` (and interpolates when that is fractional);
        subclasses that snap to whole pixels override this.
        """
        return l0 / self.level_downsamples[level]

    def read_l0_region(
        self, l0_x: float, l0_y: float, l0_w: float, l0_h: float, out_w: int, out_h: int
    ) -> np.ndarray:
        """Read a level-0 window (sub-pixel positions allowed) resampled to ``out_w`` x ``out_h`` pixels.

        The best pyramid level is read from a whole pixel of that level, and the exact window is
        cut out and resampled once (area averaging when shrinking, bilinear when enlarging).
        Reading at a fractional level position would make OpenSlide interpolate every pixel,
        which blurs by up to half a pixel and is about 4x slower (measured in
        ``benchmarks/heatmap.md``).

        Parameters
        ----------
        l0_x, l0_y, l0_w, l0_h
            The window in level-0 pixels.
        out_w, out_h
            Output size in pixels.

        Returns
        -------
        np.ndarray
            RGB uint8 ``(out_h, out_w, 3)``.
        """
        if l0_w <= 0 or l0_h <= 0 or out_w <= 0 or out_h <= 0:
            raise ValueError(f"region sizes must be positive, got {l0_w}x{l0_h} -> {out_w}x{out_h}")
        level = self.best_level(min(l0_w / out_w, l0_h / out_h))
        d = self.level_downsamples[level]
        fx, fy, fw, fh = l0_x / d, l0_y / d, l0_w / d, l0_h / d
        # integer level-0 origin at (or just before) the level pixel that holds the window's corner
        ox = math.floor(math.floor(fx + _EPS) * d + _EPS)
        oy = math.floor(math.floor(fy + _EPS) * d + _EPS)
        bx = max(0.0, fx - self._level_position(level, ox))
        by = max(0.0, fy - self._level_position(level, oy))
        l_w = max(1, math.ceil(bx + fw - _EPS))
        l_h = max(1, math.ceil(by + fh - _EPS))
        pixels = self._read_level(level, ox, oy, l_w, l_h)
        return resample(pixels, (bx, by, bx + fw, by + fh), out_w, out_h)

    def read_region(self, l0_xy: tuple[int, int], size: tuple[int, int], mpp: float) -> np.ndarray:
        """Read ``size`` pixels at ``mpp`` µm/px whose top-left is level-0 ``l0_xy``.

        Parameters
        ----------
        l0_xy
            Top-left corner in level-0 pixels.
        size
            ``(width, height)`` of the output in pixels at ``mpp``.
        mpp
            Target resolution in µm per pixel.

        Returns
        -------
        np.ndarray
            RGB uint8 ``(height, width, 3)``.
        """
        if mpp <= 0:
            raise ValueError(f"mpp must be positive, got {mpp}")
        scale = mpp / self.mpp
        w, h = size
        return self.read_l0_region(
            int(l0_xy[0]), int(l0_xy[1]), max(1, round(w * scale)), max(1, round(h * scale)), w, h
        )

    def thumbnail(self, mpp: float | None = None, max_side: int = 8192) -> tuple[np.ndarray, float]:
        """Read the whole slide at ``mpp`` µm/px (or so that its longer side is ``max_side``).

        The slide is read in blocks, so memory stays bounded by the thumbnail plus one block
        even for single-level gigapixel files. The longer side never exceeds ``max_side``.

        Parameters
        ----------
        mpp
            Desired thumbnail resolution; ``None`` to size by ``max_side`` only.
        max_side
            Upper bound for the longer side in pixels.

        Returns
        -------
        tuple[np.ndarray, float]
            The RGB uint8 image and its downsample (level-0 pixels per thumbnail pixel).
        """
        w0, h0 = self.dimensions
        downsample = max(w0, h0) / max_side
        if mpp is not None:
            downsample = max(downsample, mpp / self.mpp)
        downsample = max(downsample, 1.0)
        out_w, out_h = max(1, round(w0 / downsample)), max(1, round(h0 / downsample))
        out = np.empty((out_h, out_w, 3), dtype=np.uint8)
        block = 2048  # output pixels per block side
        for oy in range(0, out_h, block):
            for ox in range(0, out_w, block):
                bw, bh = min(block, out_w - ox), min(block, out_h - oy)
                x0, y0 = round(ox * w0 / out_w), round(oy * h0 / out_h)
                x1, y1 = round((ox + bw) * w0 / out_w), round((oy + bh) * h0 / out_h)
                out[oy : oy + bh, ox : ox + bw] = self._read_tolerant(x0, y0, x1, y1, bw, bh)
        return out, w0 / out_w

    def _read_tolerant(self, x0: int, y0: int, x1: int, y1: int, bw: int, bh: int) -> np.ndarray:
        """Read a thumbnail block; a corrupt part is narrowed down by quadrants and painted white.

        One corrupt tile must not make a whole (single-level) slide unreadable: the failing
        part, down to 64 output pixels, is recorded in :attr:`unreadable_regions` instead.
        """
        try:
            return self.read_l0_region(x0, y0, x1 - x0, y1 - y0, bw, bh)
        except SlideError as exc:
            if bw <= 64 and bh <= 64:
                self.unreadable_regions.append(
                    f"level-0 region ({x0}, {y0}) size {x1 - x0}x{y1 - y0} unreadable: {exc}"
                )
                return np.full((bh, bw, 3), 255, dtype=np.uint8)
        out = np.empty((bh, bw, 3), dtype=np.uint8)
        mx, my = bw // 2, bh // 2
        for ox0, ox1 in ((0, mx), (mx, bw)) if bw > 1 else ((0, bw),):
            for oy0, oy1 in ((0, my), (my, bh)) if bh > 1 else ((0, bh),):
                if ox1 <= ox0 or oy1 <= oy0:
                    continue
                sx0, sx1 = x0 + round(ox0 * (x1 - x0) / bw), x0 + round(ox1 * (x1 - x0) / bw)
                sy0, sy1 = y0 + round(oy0 * (y1 - y0) / bh), y0 + round(oy1 * (y1 - y0) / bh)
                if sx1 <= sx0 or sy1 <= sy0:
                    out[oy0:oy1, ox0:ox1] = 255
                    continue
                out[oy0:oy1, ox0:ox1] = self._read_tolerant(sx0, sy0, sx1, sy1, ox1 - ox0, oy1 - oy0)
        return out

    # ---- lifetime -------------------------------------------------------------------
    def close(self) -> None:  # noqa: B027 - optional hook for subclasses
        """Release resources (no-op by default)."""

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        w, h = self.dimensions
        return f"{type(self).__name__}({Path(self.name).name!r}, {w}x{h}, levels={self.level_count})"


def resize(pixels: np.ndarray, out_w: int, out_h: int) -> np.ndarray:
    """Resize an RGB uint8 image with area averaging when shrinking, bilinear when enlarging."""
    return resample(pixels, (0.0, 0.0, float(pixels.shape[1]), float(pixels.shape[0])), out_w, out_h)


def resample(
    pixels: np.ndarray, box: tuple[float, float, float, float], out_w: int, out_h: int
) -> np.ndarray:
    """Resample the sub-pixel ``box`` ``(x0, y0, x1, y1)`` of an RGB uint8 image to ``out_w`` x ``out_h``.

    A box of whole pixels with the output's size is a plain crop; otherwise area averaging
    when shrinking and bilinear interpolation when enlarging.
    """
    h, w = pixels.shape[:2]
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(w), box[2]), min(float(h), box[3])
    ix, iy = round(x0), round(y0)
    if (
        abs(x0 - ix) < _EPS
        and abs(y0 - iy) < _EPS
        and abs(x1 - x0 - out_w) < _EPS
        and abs(y1 - y0 - out_h) < _EPS
    ):
        crop = pixels[iy : iy + out_h, ix : ix + out_w]
        return crop if crop.shape[:2] == (h, w) else np.ascontiguousarray(crop)
    shrinking = out_w < x1 - x0 or out_h < y1 - y0
    method = Image.Resampling.BOX if shrinking else Image.Resampling.BILINEAR
    img = Image.fromarray(pixels).resize((out_w, out_h), resample=method, box=(x0, y0, x1, y1))
    return np.asarray(img, dtype=np.uint8)


def rgba_to_rgb(rgba: np.ndarray, background: tuple[int, int, int] = (255, 255, 255)) -> np.ndarray:
    """Composite a non-premultiplied RGBA uint8 image over a background colour."""
    if rgba.shape[-1] == 3:
        return rgba
    alpha = rgba[..., 3:4].astype(np.uint16)
    if bool((alpha == 255).all()):
        return np.ascontiguousarray(rgba[..., :3])
    bg = np.asarray(background, dtype=np.uint16)
    rgb = (rgba[..., :3].astype(np.uint16) * alpha + bg * (255 - alpha) + 127) // 255
    return rgb.astype(np.uint8)
