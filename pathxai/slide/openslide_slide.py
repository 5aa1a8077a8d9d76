"""The OpenSlide facade: the only module of pathxai that imports ``openslide``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import openslide

from pathxai.errors import SlideError
from pathxai.slide.base import BaseSlide, rgba_to_rgb
from pathxai.slide.resolution import resolve_mpp
from pathxai.slide.tiff_tiles import TiffTileReader

#: Pixel decoders: ``auto`` decodes plain tiled TIFF levels directly (:mod:`pathxai.slide.tiff_tiles`),
#: ``openslide`` leaves every read to OpenSlide. The default comes from ``$PATHXAI_DECODER``.
DECODERS = ("auto", "openslide")

#: Leading bytes of common non-slide files, to say what a misnamed file really is.
_MAGIC = {
    b"\x89PNG": "a PNG image",
    b"\xff\xd8\xff": "a JPEG image",
    b"GIF8": "a GIF image",
    b"BM": "a BMP image",
    b"PK\x03\x04": "a ZIP archive",
    b"%PDF": "a PDF document",
    b"\x89HDF": "an HDF5 file",
}

#: TIFF signatures (classic and BigTIFF, both byte orders): SVS, NDPI and generic TIFF slides.
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


def sniff(path: Path) -> str | None:
    """Describe a file's real type from its first bytes, or ``None`` when unrecognised."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    for magic, what in _MAGIC.items():
        if head.startswith(magic):
            return what
    return None


def openslide_format(path: str | Path) -> str | None:
    """OpenSlide's name for the file's format (``aperio``, ``generic-tiff``, ...), ``None`` if not a slide."""
    try:
        return openslide.OpenSlide.detect_format(str(path))
    except openslide.OpenSlideError:
        return None


def check_readable_file(path: Path) -> None:
    """Raise :class:`SlideError` unless ``path`` is an existing, non-empty, readable file."""
    if not path.exists():
        raise SlideError("no such file", path=path, hint="check the path")
    if path.is_dir():
        raise SlideError(
            "is a directory, not a slide file",
            path=path,
            hint="pass the slide file itself (for MIRAX, the .mrxs file beside the folder)",
        )
    if not os.access(path, os.R_OK):
        raise SlideError("permission denied", path=path, hint="make the file readable by this user")
    if path.stat().st_size == 0:
        raise SlideError("empty file (0 bytes)", path=path, hint="the copy or download is incomplete")


class OpenSlideSlide(BaseSlide):
    """A whole-slide image opened with OpenSlide.

    Parameters
    ----------
    path
        The slide file (any format OpenSlide reads: Aperio SVS, generic TIFF, NDPI, MRXS, ...).
    mpp
        Level-0 µm/px override; required when the metadata has no plausible resolution.
    decoder
        ``"auto"`` (default, or ``$PATHXAI_DECODER``): levels of generic TIFF and Aperio slides that
        are plain tiled pages are decoded with tifffile: the same pixels, tile reads ~2.3x faster; everything
        else is read by OpenSlide. ``"openslide"``: OpenSlide reads everything.

    Raises
    ------
    SlideError
        Naming the file and the reason: missing, directory, empty, unreadable, not a slide,
        truncated or unsupported.
    """

    def __init__(self, path: str | Path, mpp: float | None = None, decoder: str | None = None) -> None:
        decoder = decoder or os.environ.get("PATHXAI_DECODER", "auto")
        if decoder not in DECODERS:
            raise SlideError(
                f"unknown pixel decoder {decoder!r}",
                path=path,
                hint=f"pass, or set $PATHXAI_DECODER to, one of: {', '.join(DECODERS)}",
            )
        self.path = Path(path)
        self.name = str(self.path)
        self.mpp_override = mpp
        check_readable_file(self.path)
        fmt = openslide.OpenSlide.detect_format(str(self.path))
        if fmt is None:
            with open(self.path, "rb") as fh:
                is_tiff = fh.read(4) in _TIFF_MAGIC
            if is_tiff:
                raise SlideError(
                    f"TIFF file that OpenSlide cannot parse ({self.path.stat().st_size} bytes): "
                    "it is probably truncated or corrupt",
                    path=self.path,
                    hint="re-copy the file and compare its checksum with the source",
                )
            what = sniff(self.path)
            raise SlideError(
                f"not a whole-slide image{f' (it is {what})' if what else ''}; OpenSlide does not recognise the format",
                path=self.path,
                hint="plain images (PNG/JPEG) must carry their real extension; slides must be SVS, TIFF, NDPI, MRXS, ...",
            )
        try:
            self._osr = openslide.OpenSlide(str(self.path))
        except openslide.OpenSlideUnsupportedFormatError as exc:
            raise SlideError(f"unsupported slide format ({fmt}): {exc}", path=self.path) from exc
        except openslide.OpenSlideError as exc:
            raise SlideError(
                f"cannot open ({fmt}): {exc}; the file may be truncated or corrupt",
                path=self.path,
                hint="re-copy the file and compare its checksum",
            ) from exc
        self._format = fmt
        # fixed for the life of the handle; OpenSlide's properties query the library on every access
        self._dims = tuple((int(w), int(h)) for w, h in self._osr.level_dimensions)
        self._downsamples = tuple(float(d) for d in self._osr.level_downsamples)
        props = dict(self._osr.properties)
        super().__init__(resolve_mpp(props, mpp))
        self._props = props
        # Reading one pixel of the smallest level catches files whose header is fine but
        # whose pixel data is missing (truncated downloads) at open time.
        try:
            last = self._osr.level_count - 1
            self._osr.read_region((0, 0), last, (1, 1))
        except openslide.OpenSlideError as exc:
            self._osr.close()
            if "can not handle" in str(exc) or "cannot handle" in str(exc):
                raise SlideError(
                    f"unsupported pixel format: {exc}",
                    path=self.path,
                    hint="convert the image to 8-bit RGB (e.g. with vips or tifffile)",
                ) from exc
            raise SlideError(
                f"pixel data unreadable: {exc}; the file is probably truncated",
                path=self.path,
                hint="re-copy the file and compare its checksum",
            ) from exc
        self._tiles = (
            TiffTileReader.for_levels(self.path, self.vendor, self._dims) if decoder == "auto" else None
        )
        tiles = self._tiles
        self._decoded = tuple(i for i in range(len(self._dims)) if tiles is not None and tiles.has_level(i))

    @property
    def decoded_levels(self) -> tuple[int, ...]:
        """Levels whose pixels are decoded directly from TIFF tiles rather than painted by OpenSlide."""
        return self._decoded

    @property
    def level_dimensions(self) -> tuple[tuple[int, int], ...]:
        """``(width, height)`` of each level, level 0 first."""
        return self._dims

    @property
    def level_downsamples(self) -> tuple[float, ...]:
        """Downsample factor of each level relative to level 0."""
        return self._downsamples

    @property
    def properties(self) -> Mapping[str, str]:
        """OpenSlide properties (vendor metadata)."""
        return self._props

    @property
    def vendor(self) -> str:
        """OpenSlide's vendor string (e.g. ``aperio``, ``generic-tiff``)."""
        return self._props.get("openslide.vendor", self._format)

    @property
    def associated_images(self) -> tuple[str, ...]:
        """Names of associated images (label, macro, thumbnail)."""
        return tuple(self._osr.associated_images)

    def associated_image(self, name: str) -> np.ndarray:
        """Return an associated image (e.g. ``"label"``) as RGB uint8."""
        if name not in self._osr.associated_images:
            raise KeyError(f"{self.path}: no associated image {name!r} (has {self.associated_images})")
        return rgba_to_rgb(np.asarray(self._osr.associated_images[name].convert("RGBA")))

    def _level_position(self, level: int, l0: int) -> float:
        """Directly decoded levels are read from the nearest whole level pixel; OpenSlide interpolates."""
        if level in self._decoded:
            return float(round(l0 / self._downsamples[level]))
        return l0 / self._downsamples[level]

    def _read_level(self, level: int, l0_x: int, l0_y: int, l_w: int, l_h: int) -> np.ndarray:
        if self._tiles is not None and level in self._decoded:
            d = self._downsamples[level]
            return self._tiles.read(level, round(l0_x / d), round(l0_y / d), l_w, l_h)
        try:
            region = self._osr.read_region((l0_x, l0_y), level, (l_w, l_h))
        except openslide.OpenSlideError as exc:
            # OpenSlide handles are unusable after an error: reopen so later reads can go on.
            self._osr.close()
            self._osr = openslide.OpenSlide(str(self.path))
            raise SlideError(
                f"cannot read region at level-0 ({l0_x}, {l0_y}) size {l_w}x{l_h} of level {level}: {exc}",
                path=self.path,
                hint="the file may be corrupt or truncated",
            ) from exc
        if region.getchannel("A").getextrema() == (
            255,
            255,
        ):  # fully opaque (the usual case): a plain channel drop
            return np.asarray(region.convert("RGB"))
        return rgba_to_rgb(np.asarray(region))

    def close(self) -> None:
        """Close the OpenSlide handle."""
        osr = getattr(self, "_osr", None)
        if osr is not None:
            osr.close()
        tiles = getattr(self, "_tiles", None)
        if tiles is not None:
            tiles.close()
            self._tiles = None
            self._decoded = ()
