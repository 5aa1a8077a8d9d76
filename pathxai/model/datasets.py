"""Patch datasets for training and evaluation.

* :class:`PatchDataset` cuts whole images (e.g. GlaS, 0.62 µm/px) resampled to the model's
  resolution into square patches of a given size and stride; every patch inherits its image's
  label, and background patches can be dropped by a simple tissue test.
  :func:`patches_from_manifest` builds one from manifest records.
* :class:`SlideTileDataset` wraps tiles read from slides (anything with a ``.pixels`` uint8 RGB
  array, e.g. ``pathxai.tiling.Tile``); the pipeline layer connects it to the tiler, this layer
  never imports slide code.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset
from tqdm.auto import tqdm

from pathxai.errors import ManifestError
from pathxai.manifest import MPP_COLUMNS, ManifestRecord, resolve, resolve_mask
from pathxai.pixels import tissue_fraction

__all__ = [
    "PatchDataset",
    "SlideTileDataset",
    "channel_stats",
    "patch_positions",
    "patches_from_manifest",
    "read_mask",
    "read_rgb",
    "refuse_too_small",
    "rescale_to_mpp",
    "tissue_fraction",
]

#: Refuse images larger than this many pixels (decompression-bomb guard).
MAX_IMAGE_PIXELS = 200_000_000


def read_mask(rec: ManifestRecord, root: Path, shape: tuple[int, int]) -> np.ndarray | None:
    """The row's ``mask_path`` image as a boolean ``shape`` mask (non-zero = inside), or None without one.

    Raises
    ------
    ManifestError
        If the row names a mask file that does not exist.
    """
    if not rec.mask_path:
        return None
    full = resolve_mask(rec, root)
    if not full.is_file():
        raise ManifestError(f"line {rec.line}: mask file not found: {full}")
    with Image.open(full) as im:
        m = im.convert("L").resize((shape[1], shape[0]), Image.Resampling.NEAREST)
        return np.asarray(m) > 0


def read_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as uint8 RGB ``(H, W, 3)``.

    Grayscale and palette images are converted to RGB, alpha is composited on white and 16-bit
    images are scaled to 8 bits.

    Raises
    ------
    ManifestError
        If the file is missing, not an image, truncated, or absurdly large.
    """
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ManifestError(
                        f"image is {w}x{h} px, above the {MAX_IMAGE_PIXELS} px limit", path=path
                    )
                im.load()
                mode = im.mode
                if mode in ("I;16", "I;16B", "I;16L", "I"):
                    arr = np.asarray(im).astype(np.float64)
                    top = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
                    gray = np.clip(np.rint(arr / top * 255.0), 0, 255).astype(np.uint8)
                    return np.repeat(gray[..., None], 3, axis=2)
                if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info):
                    rgba = im.convert("RGBA")
                    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                    im2 = Image.alpha_composite(bg, rgba).convert("RGB")
                    return np.asarray(im2, dtype=np.uint8).copy()
                return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except ManifestError:
        raise
    except FileNotFoundError as exc:
        raise ManifestError("image file not found", path=path) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ManifestError(f"image refused as a decompression bomb ({exc})", path=path) from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise ManifestError(
            f"cannot read image ({type(exc).__name__}: {exc})", path=path, hint="is the file a valid image?"
        ) from exc


def rescale_to_mpp(img: np.ndarray, native_mpp: float, target_mpp: float) -> np.ndarray:
    """Resample an image from ``native_mpp`` to ``target_mpp`` microns per pixel (Lanczos)."""
    if native_mpp <= 0 or target_mpp <= 0:
        raise ValueError(f"mpp must be positive, got native={native_mpp}, target={target_mpp}")
    factor = native_mpp / target_mpp
    if abs(factor - 1.0) < 1e-6:
        return img
    h, w = img.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)


def patch_positions(height: int, width: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Top-left corners of ``size`` patches at ``stride``, with the last row/column flush to the edge."""
    if size < 1 or stride < 1:
        raise ValueError(f"size and stride must be positive, got {size}, {stride}")
    if height < size or width < size:
        return []

    def starts(n: int) -> list[int]:
        s = list(range(0, n - size + 1, stride))
        if s[-1] != n - size and (n - size) - s[-1] >= stride // 2:
            s.append(n - size)
        return s

    return [(y, x) for y in starts(height) for x in starts(width)]


def refuse_too_small(
    images: Sequence[np.ndarray], ids: Sequence[str], size: int, what: str | None = None
) -> None:
    """Refuse images whose shorter side is below half the model's input side (``size``).

    ``what`` names that side in the message (default: the model's input).

    Such an image is scored as one centred patch of its own size, and a network that downsamples
    ``size`` px patches many times either fails on it (a torch error) or judges a few cells as if they
    were a whole patch: an 8 x 8 px image must not pass as evidence.
    """
    small = [(i, img.shape[:2]) for i, img in zip(ids, images, strict=True) if 2 * min(img.shape[:2]) < size]
    if small:
        shown = ", ".join(f"{i!r} {h} x {w} px" for i, (h, w) in small[:3])
        side = what or f"the model's {size} px input"
        raise ManifestError(
            f"{len(small)} image(s) are smaller than half {side} at its resolution "
            f"(e.g. {shown}); the model cannot judge them",
            hint="check the manifest's mpp column and the model card's mpp, or leave such images out",
        )


@dataclass(frozen=True)
class PatchInfo:
    """Where a patch comes from."""

    image: int
    y: int
    x: int
    size: int


class PatchDataset(Dataset[tuple[torch.Tensor, int]]):
    """Square patches cut from in-memory images; every patch inherits its image's label.

    Parameters
    ----------
    images
        uint8 RGB images, already at the model's resolution.
    labels
        Per-image class index (1 = tumour).
    size, stride
        Patch side and step in pixels. An image smaller than ``size`` yields one centred patch
        of side ``min(H, W)`` (its own batch shape).
    image_ids, patients
        Per-image identifiers (for image-level and patient-level metrics).
    min_tissue
        Drop patches whose :func:`pathxai.pixels.tissue_fraction` is below this (0 keeps all).
    mean, std
        Normalisation applied to ``RGB / 255``.
    augment
        Optional callable ``(uint8 patch, rng) -> uint8 patch``
        (e.g. :class:`~pathxai.model.augment.Augmenter`).
    seed
        Seed of the augmentation; patch ``i`` in epoch ``e`` uses ``default_rng([seed, e, i])``.
    sites
        Per-image acquisition site (for site-by-class balanced sampling; ``None``: one site).
    scale_jitter
        Relative scale jitter ``j``: each training patch is cut from a window ``size / f`` px wide
        around its centre (clamped to the image), ``f ~ U(1 - j, 1 + j)``, and resized to ``size``. It
        stands for an uncertain native µm/px (e.g. an estimated one); 0 (default) cuts the patch as is.
    """

    def __init__(
        self,
        images: Sequence[np.ndarray],
        labels: Sequence[int],
        size: int,
        stride: int,
        image_ids: Sequence[str] | None = None,
        patients: Sequence[str] | None = None,
        min_tissue: float = 0.0,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        seed: int = 0,
        sites: Sequence[str] | None = None,
        scale_jitter: float = 0.0,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError("images and labels differ in length")
        self.images = list(images)
        self.labels = np.asarray(labels, dtype=np.int64)
        self.image_ids = list(image_ids) if image_ids is not None else [str(i) for i in range(len(images))]
        self.patients = list(patients) if patients is not None else list(self.image_ids)
        self.sites = list(sites) if sites is not None else [""] * len(self.images)
        if not 0.0 <= scale_jitter < 1.0:
            raise ValueError(f"scale_jitter must be in [0, 1), got {scale_jitter}")
        self.scale_jitter = float(scale_jitter)
        self.size, self.stride = int(size), int(stride)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.augment = augment
        self.seed = int(seed)
        self.epoch = 0
        refuse_too_small(self.images, self.image_ids, self.size)
        patches: list[PatchInfo] = []
        for i, img in enumerate(self.images):
            h, w = img.shape[:2]
            pos = patch_positions(h, w, self.size, self.stride)
            if not pos:
                side = min(h, w)
                patches.append(PatchInfo(i, (h - side) // 2, (w - side) // 2, side))
                continue
            for y, x in pos:
                if min_tissue > 0 and tissue_fraction(img[y : y + self.size, x : x + self.size]) < min_tissue:
                    continue
                patches.append(PatchInfo(i, y, x, self.size))
        self.patches = patches

    def __len__(self) -> int:
        return len(self.patches)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of an epoch (deterministic per epoch and patch)."""
        self.epoch = int(epoch)

    def patch_pixels(self, index: int) -> np.ndarray:
        """Return the raw uint8 RGB patch ``index`` (no augmentation)."""
        p = self.patches[index]
        return self.images[p.image][p.y : p.y + p.size, p.x : p.x + p.size]

    @property
    def patch_labels(self) -> np.ndarray:
        """Label of every patch."""
        return self.labels[[p.image for p in self.patches]] if self.patches else np.zeros(0, np.int64)

    @property
    def patch_strata(self) -> list[tuple[str, int]]:
        """``(site, label)`` of every patch (the strata of site-by-class balanced sampling)."""
        return [(self.sites[p.image], int(self.labels[p.image])) for p in self.patches]

    def _rescaled_pixels(self, index: int, rng: np.random.Generator) -> np.ndarray:
        """Patch ``index`` seen at a random scale ``f ~ U(1 - j, 1 + j)`` (see ``scale_jitter``)."""
        p = self.patches[index]
        img = self.images[p.image]
        h, w = img.shape[:2]
        f = rng.uniform(1.0 - self.scale_jitter, 1.0 + self.scale_jitter)
        side = min(h, w, max(2, round(p.size / f)))
        cy, cx = p.y + p.size / 2, p.x + p.size / 2
        y = int(min(max(round(cy - side / 2), 0), h - side))
        x = int(min(max(round(cx - side / 2), 0), w - side))
        window = img[y : y + side, x : x + side]
        if side == p.size:
            return window
        resized = Image.fromarray(window).resize((p.size, p.size), Image.Resampling.BILINEAR)
        return np.asarray(resized, dtype=np.uint8)

    @property
    def patch_images(self) -> np.ndarray:
        """Image index of every patch."""
        return np.asarray([p.image for p in self.patches], dtype=np.int64)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        pix = self.patch_pixels(index)
        if self.augment is not None or self.scale_jitter > 0:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            if self.scale_jitter > 0:
                pix = self._rescaled_pixels(index, rng)
            if self.augment is not None:
                pix = self.augment(pix, rng)
        x = (pix.astype(np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), int(
            self.labels[self.patches[index].image]
        )


def channel_stats(
    images: Sequence[np.ndarray],
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of ``RGB / 255`` over all pixels of ``images``."""
    total = np.zeros(3)
    total_sq = np.zeros(3)
    n = 0
    for img in images:
        flat = img.reshape(-1, 3).astype(np.float64) / 255.0
        total += flat.sum(axis=0)
        total_sq += (flat**2).sum(axis=0)
        n += len(flat)
    if n == 0:
        raise ValueError("no pixels")
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean**2, 1e-12))
    return (float(mean[0]), float(mean[1]), float(mean[2])), (float(std[0]), float(std[1]), float(std[2]))


def load_images(
    records: Sequence[ManifestRecord],
    data_root: str | Path,
    target_mpp: float,
    native_mpp: float | None = None,
    progress: bool = True,
) -> list[np.ndarray]:
    """Read and resample every record's image to ``target_mpp``.

    The native resolution is the record's ``mpp`` column, else ``native_mpp``.

    Raises
    ------
    ManifestError
        If a record has neither an ``mpp`` nor a ``native_mpp`` default, or an image is unreadable.
    """
    out = []
    for rec in tqdm(records, desc="reading images", unit="img", disable=not progress, leave=False):
        mpp = rec.mpp if rec.mpp is not None else native_mpp
        if mpp is None:
            raise ManifestError(
                f"line {rec.line}: no native resolution for {rec.path!r}",
                hint=f"add an 'mpp' column to the manifest (read under any of: {', '.join(MPP_COLUMNS)}) "
                "or pass --native-mpp",
            )
        out.append(rescale_to_mpp(read_rgb(resolve(rec, data_root)), mpp, target_mpp))
    return out


def patches_from_manifest(
    records: Sequence[ManifestRecord],
    data_root: str | Path,
    target_mpp: float,
    size: int,
    stride: int,
    native_mpp: float | None = None,
    min_tissue: float = 0.0,
    mean: Sequence[float] = (0.5, 0.5, 0.5),
    std: Sequence[float] = (0.25, 0.25, 0.25),
    augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
    seed: int = 0,
    progress: bool = True,
    images: Sequence[np.ndarray] | None = None,
    scale_jitter: float = 0.0,
) -> PatchDataset:
    """Build a :class:`PatchDataset` from manifest records.

    The tumour label is ``ManifestRecord.tumour`` (the manifest's ``tumor`` column).

    The records' ``site`` (empty when missing) becomes the dataset's ``sites``.

    Parameters
    ----------
    images
        Already loaded images for ``records`` (to share one read between several datasets).
    scale_jitter
        See :class:`PatchDataset`.

    Raises
    ------
    ManifestError
        If a record has no tumour label or an image cannot be read.
    """
    labels = []
    for rec in records:
        if rec.tumour is None:
            raise ManifestError(f"line {rec.line}: row {rec.id!r} has no tumour label (0/1)")
        labels.append(rec.tumour)
    imgs = (
        list(images)
        if images is not None
        else load_images(records, data_root, target_mpp, native_mpp, progress)
    )
    return PatchDataset(
        imgs,
        labels,
        size,
        stride,
        image_ids=[r.id for r in records],
        patients=[r.group for r in records],
        min_tissue=min_tissue,
        mean=mean,
        std=std,
        augment=augment,
        seed=seed,
        sites=[r.site or "" for r in records],
        scale_jitter=scale_jitter,
    )


class TileLike(Protocol):
    """Anything carrying uint8 RGB ``pixels`` (e.g. ``pathxai.tiling.Tile``)."""

    @property
    def pixels(self) -> np.ndarray:  # pragma: no cover - protocol
        """uint8 ``(H, W, 3)`` RGB pixels."""
        ...


class SlideTileDataset(IterableDataset[tuple[torch.Tensor, int]]):
    """Stream tiles read from a slide as ``(normalised CHW tensor, label)`` pairs.

    Parameters
    ----------
    tiles
        Iterable of tile-like objects with a ``.pixels`` uint8 RGB array (already at the model's mpp).
    label
        Label given to every tile (e.g. the slide's label).
    mean, std
        Normalisation applied to ``RGB / 255`` (use the model card's).
    augment
        Optional ``(uint8 patch, rng) -> uint8 patch`` callable.
    seed
        Augmentation seed.
    """

    def __init__(
        self,
        tiles: Iterable[Any],
        label: int,
        mean: Sequence[float] = (0.5, 0.5, 0.5),
        std: Sequence[float] = (0.25, 0.25, 0.25),
        augment: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
        seed: int = 0,
    ) -> None:
        self.tiles = tiles
        self.label = int(label)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)
        self.augment = augment
        self.seed = seed

    def __iter__(self) -> Iterator[tuple[torch.Tensor, int]]:
        rng = np.random.default_rng(self.seed)
        for tile in self.tiles:
            pix = np.asarray(tile.pixels)
            if pix.dtype != np.uint8 or pix.ndim != 3 or pix.shape[2] != 3:
                raise ValueError(f"tile pixels must be uint8 (H, W, 3), got {pix.dtype} {pix.shape}")
            if self.augment is not None:
                pix = self.augment(pix, rng)
            x = (pix.astype(np.float32) / 255.0 - self.mean) / self.std
            yield torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))), self.label
