"""Plain (strip-organised, single-image) TIFF files: patches such as the Kather 2016 tiles.

OpenSlide reads only *tiled* TIFFs, so a 150x150 strip TIFF with PackBits compression, or a 16-bit
RGB strip TIFF, is not a slide to it (``detect_format`` returns ``None``). These files are plain
images: :func:`is_plain_tiff` recognises them and :func:`read_plain_tiff` decodes them with tifffile
into RGB uint8, which :func:`pathxai.slide.open_slide` wraps in an :class:`ArraySlide`.

16-bit samples are scaled to 8 bits over the range the file declares (``MaxSampleValue``, else
``2**BitsPerSample - 1``), with rounding: the same scale for every image, never stretched to the
image's own maximum, so a dim image stays dim.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pathxai.errors import SlideError
from pathxai.slide.base import rgba_to_rgb
from pathxai.slide.resolution import Resolution, is_plausible

__all__ = ["is_plain_tiff", "read_plain_tiff", "to_rgb8"]

#: TIFF signatures (classic and BigTIFF, both byte orders).
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
#: µm per resolution unit (TIFF ResolutionUnit 2 = inch, 3 = centimetre).
_UM_PER_UNIT = {2: 25_400.0, 3: 10_000.0}


def is_plain_tiff(path: str | Path) -> bool:
    """Whether ``path`` is a TIFF whose first image is strip-organised (not tiled).

    Files that are not TIFF, or whose header tifffile cannot parse (truncated before the first
    directory), return ``False``: the slide reader then reports them.
    """
    try:
        with open(path, "rb") as fh:
            if fh.read(4) not in _TIFF_MAGIC:
                return False
    except OSError:
        return False
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            return not tif.pages.first.is_tiled
    except Exception:  # any parse failure: not a readable plain TIFF
        return False


def read_plain_tiff(path: str | Path, max_pixels: int) -> tuple[np.ndarray, Resolution]:
    """Decode the first image of a plain TIFF as RGB uint8, with the resolution its tags state.

    Parameters
    ----------
    path
        The TIFF file.
    max_pixels
        Refuse images with more pixels than this (a decompression-bomb guard).

    Returns
    -------
    tuple[numpy.ndarray, Resolution]
        ``(H, W, 3)`` uint8 pixels and the resolution: from ``XResolution``/``YResolution`` when the
        unit is inch or centimetre and the value is a plausible scan resolution (72 dpi, the usual
        default, is 353 µm/px and is not), else unknown.

    Raises
    ------
    SlideError
        When the file is truncated, too large, or its pixel format is not one pathxai converts.
    """
    import tifffile

    path = Path(path)
    try:
        with tifffile.TiffFile(path) as tif:
            page = tif.pages.first
            h, w = int(page.imagelength), int(page.imagewidth)
            if w * h > max_pixels:
                raise SlideError(
                    f"image of {w}x{h} pixels exceeds the {max_pixels} pixel limit",
                    path=path,
                    hint="convert it to a tiled pyramidal TIFF and open it as a slide",
                )
            size = path.stat().st_size
            ends = [int(o) + int(n) for o, n in zip(page.dataoffsets, page.databytecounts, strict=False)]
            if not ends or max(ends) > size:
                raise SlideError(
                    f"pixel data ends at byte {max(ends, default=0)} but the file has {size} bytes: "
                    "it is truncated",
                    path=path,
                    hint="re-copy the file and compare its checksum with the source",
                )
            arr = page.asarray()
            tags = {t.name: t.value for t in page.tags.values()}
            photometric = int(page.photometric)
            bits = int(page.bitspersample)
            extrasamples = tuple(int(v) for v in np.atleast_1d(page.extrasamples))
            colormap = page.colormap
    except SlideError:
        raise
    except Exception as exc:  # tifffile/imagecodecs raise many types
        raise SlideError(
            f"cannot decode the TIFF's pixels ({type(exc).__name__}: {exc}); it may be truncated or corrupt",
            path=path,
            hint="re-copy the file and compare its checksum with the source",
        ) from exc
    rgb = to_rgb8(arr, photometric, bits, tags.get("MaxSampleValue"), extrasamples, colormap, path)
    return rgb, _tag_resolution(tags)


def to_rgb8(
    arr: np.ndarray,
    photometric: int,
    bits: int,
    max_sample: object = None,
    extrasamples: tuple[int, ...] = (),
    colormap: np.ndarray | None = None,
    path: str | Path | None = None,
) -> np.ndarray:
    """Convert decoded TIFF samples to RGB uint8.

    Parameters
    ----------
    arr
        ``(H, W)`` or ``(H, W, S)`` samples as tifffile decodes them.
    photometric
        TIFF PhotometricInterpretation (0 min-is-white, 1 min-is-black, 2 RGB, 3 palette).
    bits
        BitsPerSample.
    max_sample
        The ``MaxSampleValue`` tag, if any (a 12-bit camera stored in 16-bit samples declares 4095).
    extrasamples
        The ``ExtraSamples`` tag: 1 or 2 mark the first extra sample as alpha.
    colormap
        The palette of a palette image, ``(3, 2**bits)`` 16-bit values.
    path
        For error messages.

    Raises
    ------
    SlideError
        For floating-point, signed or otherwise unsupported samples (the message names the format).
    """
    if photometric == 3 and colormap is not None:
        # the palette holds 16-bit values: writers store v*257 or v*256, the high byte is v for both
        cmap = np.asarray(colormap, np.uint32).T
        lut = (cmap >> 8 if cmap.max() > 255 else cmap).astype(np.uint8)
        return lut[np.asarray(arr, dtype=np.intp)]
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16:
        top = float(2**bits - 1) if 0 < bits <= 16 else 65535.0
        declared = np.atleast_1d(np.asarray(max_sample, dtype=np.float64)) if max_sample is not None else None
        if declared is not None and declared.size and 0 < float(declared.max()) < top:
            top = float(declared.max())
        arr = np.clip(np.rint(arr.astype(np.float64) * (255.0 / top)), 0, 255).astype(np.uint8)
    elif arr.dtype != np.uint8:
        raise SlideError(
            f"unsupported pixel format: {arr.dtype} samples",
            path=path,
            hint="convert the image to 8-bit RGB (e.g. with vips or tifffile)",
        )
    if arr.ndim == 2:
        arr = arr[..., None]
    if photometric == 0:
        arr = 255 - arr
    samples = arr.shape[2]
    alpha = bool(extrasamples) and extrasamples[0] in (1, 2)
    if photometric in (0, 1) and samples in (1, 2):
        gray = np.repeat(arr[..., :1], 3, axis=2)
        if samples == 2 and alpha:
            return rgba_to_rgb(np.concatenate([gray, arr[..., 1:2]], axis=2))
        return np.ascontiguousarray(gray)
    if photometric == 2 and samples >= 3:
        if samples >= 4 and alpha:
            return rgba_to_rgb(np.ascontiguousarray(arr[..., :4]))
        return np.ascontiguousarray(arr[..., :3])
    raise SlideError(
        f"unsupported pixel format: photometric {photometric} with {samples} samples per pixel",
        path=path,
        hint="convert the image to 8-bit RGB (e.g. with vips or tifffile)",
    )


def _tag_resolution(tags: dict[str, object]) -> Resolution:
    try:
        um = _UM_PER_UNIT.get(int(tags.get("ResolutionUnit", 0)))  # type: ignore[call-overload]
    except (TypeError, ValueError):
        um = None
    values = []
    for name in ("XResolution", "YResolution"):
        v = tags.get(name)
        if isinstance(v, tuple) and len(v) == 2 and v[1]:
            values.append(float(v[0]) / float(v[1]))
    if um is None or not values or min(values) <= 0:
        return Resolution(None, "unknown", "plain TIFF without a physical resolution tag")
    mpp = um / (sum(values) / len(values))
    if not is_plausible(mpp):
        return Resolution(
            None,
            "unknown",
            f"TIFF resolution tags say {mpp:.4g} µm/px, implausible for a scan (a default dpi)",
        )
    return Resolution(mpp, "metadata", "TIFF XResolution/YResolution")
