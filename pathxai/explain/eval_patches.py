"""Patches for ``pathxai explain-eval``, streamed from a labelled manifest.

Each image is read, resampled to the model's mpp and cut into non-overlapping patches (tissue >=
``min_tissue``), a few per image in a seeded order; :func:`eval_batch` turns a list of them into the
:class:`~pathxai.explain.evaluation.EvalBatch` the evaluator takes (with a stain-jittered and a one-pixel
shifted copy). Only the current batch is ever in memory.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pathxai.errors import ManifestError
from pathxai.explain.evaluation import EvalBatch
from pathxai.manifest import Manifest, ManifestRecord, resolve
from pathxai.model.augment import hed_jitter
from pathxai.model.card import ModelCard
from pathxai.model.datasets import read_mask, read_rgb, rescale_to_mpp
from pathxai.model.io import preprocess
from pathxai.pixels import tissue_fraction

__all__ = ["PatchSample", "eval_batch", "mask_meaning", "stream_patches"]


@dataclass(frozen=True)
class PatchSample:
    """One patch cut with a one-pixel margin: ``pixels`` is ``(S + 1, S + 1, 3)`` uint8."""

    pixels: np.ndarray
    mask: np.ndarray | None
    tumour: bool
    image_id: str


def mask_meaning(manifest: Manifest) -> str:
    """What the manifest's masks mean, for the report (GlaS and EBHI-Seg are known)."""
    name = manifest.path.name.lower()
    if "glas" in name:
        return (
            "GlaS gland outlines (every gland, benign and malignant alike): localisation here asks whether "
            "relevance sits on glandular epithelium rather than stroma or lumen, not on tumour vs normal"
        )
    if "ebhi" in name:
        return "EBHI-Seg lesion masks (the annotated lesion / gland region of each biopsy image)"
    return "the manifest's mask_path column (non-zero pixels = inside)"


def stream_patches(
    records: Sequence[ManifestRecord],
    root: Path,
    card: ModelCard,
    *,
    max_patches: int,
    per_image: int | None = None,
    min_tissue: float = 0.5,
    native_mpp: float | None = None,
    seed: int = 0,
) -> Iterator[PatchSample]:
    """Yield up to ``max_patches`` patches, at most ``per_image`` per image, images in a seeded order.

    ``per_image`` defaults to ``ceil(max_patches / len(records))`` so the patches spread over the images.
    """
    size = int(card.input_size)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(records))
    per_image = per_image or max(1, math.ceil(max_patches / max(len(records), 1)))
    count = 0
    for i in order:
        rec = records[int(i)]
        mpp = rec.mpp if rec.mpp is not None else native_mpp
        if mpp is None:
            raise ManifestError(f"line {rec.line}: no native resolution (mpp) for {rec.path!r}")
        img = rescale_to_mpp(read_rgb(resolve(rec, root)), mpp, card.mpp)
        h, w = img.shape[:2]
        mask = read_mask(rec, root, (h, w))
        spots = [
            (y, x)
            for y in range(0, h - size, size)
            for x in range(0, w - size, size)
            if tissue_fraction(img[y : y + size, x : x + size]) >= min_tissue
        ]
        for j in rng.permutation(len(spots))[:per_image]:
            y, x = spots[int(j)]
            yield PatchSample(
                pixels=img[y : y + size + 1, x : x + size + 1],
                mask=None if mask is None else mask[y : y + size, x : x + size],
                tumour=bool(rec.tumour),
                image_id=rec.id,
            )
            count += 1
            if count >= max_patches:
                return


def eval_batch(samples: list[PatchSample], card: ModelCard, rng: np.random.Generator) -> EvalBatch:
    """Stack ``samples`` into one evaluator batch: the patch, a HED-jittered copy, a one-pixel shift."""
    size = int(card.input_size)
    pix = np.stack([s.pixels for s in samples])
    base = pix[:, :size, :size]
    jitter = np.stack([hed_jitter(np.ascontiguousarray(p), rng) for p in base])
    non_tumour = next(i for i in range(len(card.classes)) if i != card.tumour_index)
    tumour = np.array([s.tumour for s in samples])
    has_mask = np.array([s.mask is not None for s in samples])
    masks = (
        np.stack([s.mask if s.mask is not None else np.zeros((size, size), bool) for s in samples])
        if has_mask.any()
        else None
    )
    return EvalBatch(
        x=preprocess(base, card),
        x_jitter=preprocess(jitter, card),
        x_shift=preprocess(np.ascontiguousarray(pix[:, 1:, 1:]), card),
        target=torch.as_tensor(np.where(tumour, card.tumour_index, non_tumour), dtype=torch.int64),
        tumour=tumour,
        mask=masks,
        has_mask=has_mask,
    )
