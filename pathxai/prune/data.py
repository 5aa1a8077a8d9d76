"""The patches a pruning study works on, grouped by patient so nothing leaks.

* **held-out** patches: images of the model card's ``test_patients`` (else the manifest's ``test``
  split), cut without overlap; AUC/accuracy and the explanation drift are measured here;
* **reference** set for the data-driven criteria: ``reference_per_class`` patches per class drawn
  (seeded) from the other patients' images;
* **fine-tuning** patches: all patches of those other patients, with the training augmentation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from pathxai.errors import ManifestError
from pathxai.manifest import ManifestRecord, read_manifest
from pathxai.model.augment import Augmenter
from pathxai.model.card import ModelCard
from pathxai.model.datasets import PatchDataset, load_images
from pathxai.prune.criteria import ReferenceBatches

__all__ = ["PruneData", "load_prune_data"]


@dataclass
class PruneData:
    """Held-out, reference and fine-tuning patches for one model card and manifest."""

    card: ModelCard
    heldout: PatchDataset
    train: PatchDataset
    heldout_patients: list[str]
    train_patients: list[str]
    _reference_cache: dict[tuple[int, int], list[tuple[torch.Tensor, torch.Tensor]]] = field(
        default_factory=dict
    )
    _tiles_cache: dict[tuple[int, int, int, int], list[torch.Tensor]] = field(default_factory=dict)

    def reference(self, per_class: int, seed: int, batch_size: int = 32) -> ReferenceBatches:
        """Draw ``per_class`` training patches of each class (seeded), as preprocessed batches.

        Patches come from ``per_class`` *distinct* images of each class when there are that many
        (one random tissue patch per image: the scarce-data setting of "10 images per class").
        """
        key = (per_class, seed)
        if key in self._reference_cache:
            return self._reference_cache[key]
        if per_class < 1:
            raise ValueError(f"reference_per_class must be >= 1, got {per_class}")
        x, y = _unaugmented(self.train, self._reference_indices(per_class, seed))
        batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
        self._reference_cache[key] = batches
        return batches

    def reference_tiles(
        self, per_class: int, seed: int, per_image: int = 1, batch_size: int = 32
    ) -> list[torch.Tensor]:
        """Unlabelled input batches from the reference images of ``(per_class, seed)``.

        The images are those of :meth:`reference`; ``per_image`` of each one's tissue patches (its
        reference patch first, then a seeded draw of the others; 0 = all of them). Used to
        re-estimate BatchNorm statistics after pruning: labels are not returned.
        """
        if per_image < 0:
            raise ValueError(f"per_image must be >= 0, got {per_image}")
        key = (per_class, seed, per_image, batch_size)
        if key in self._tiles_cache:
            return self._tiles_cache[key]
        x, _ = self.reference_tile_set(per_class, seed, per_image)
        n_batches = max(1, -(-len(x) // batch_size))
        tiles = list(torch.tensor_split(x, n_batches))  # near-equal sizes: each batch weighs the same
        self._tiles_cache[key] = tiles
        return tiles

    def reference_tile_set(
        self, per_class: int, seed: int, per_image: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The patches of :meth:`reference_tiles` stacked, with their labels (for searches on the reference set)."""
        if per_image < 0:
            raise ValueError(f"per_image must be >= 0, got {per_image}")
        chosen = self._reference_indices(per_class, seed)
        images = self.train.patch_images
        rng = np.random.default_rng(10_000 + seed)
        indices: list[int] = []
        for idx in chosen:
            others = np.setdiff1d(np.flatnonzero(images == images[idx]), [idx])
            rng.shuffle(others)
            extra = others if per_image == 0 else others[: max(0, per_image - 1)]
            indices += [int(idx), *(int(i) for i in extra)]
        return _unaugmented(self.train, indices)

    def _reference_indices(self, per_class: int, seed: int) -> list[int]:
        labels = self.train.patch_labels
        images = self.train.patch_images
        rng = np.random.default_rng(seed)
        chosen: list[int] = []
        for cls in (0, 1):
            pool = np.flatnonzero(labels == cls)
            if pool.size < per_class:
                raise ManifestError(
                    f"only {pool.size} training patches of class {cls}; the reference set needs {per_class}"
                )
            by_image = [pool[images[pool] == i] for i in np.unique(images[pool])]
            if len(by_image) >= per_class:
                picked = rng.choice(len(by_image), size=per_class, replace=False)
                chosen += [int(rng.choice(by_image[i])) for i in picked]
            else:
                chosen += rng.choice(pool, size=per_class, replace=False).tolist()
        return chosen

    def drift_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` held-out patches spread evenly over the set (deterministic), with their labels."""
        m = len(self.heldout)
        idx = np.unique(np.linspace(0, m - 1, num=min(n, m)).round().astype(int))
        return _unaugmented(self.heldout, [int(i) for i in idx])


def _unaugmented(dataset: PatchDataset, indices: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The patches ``indices`` of ``dataset`` without augmentation, stacked, and their labels."""
    augment, dataset.augment = dataset.augment, None
    try:
        items = [dataset[i] for i in indices]
    finally:
        dataset.augment = augment
    return torch.stack([it[0] for it in items]), torch.tensor([it[1] for it in items], dtype=torch.long)


def _patch_settings(card: ModelCard) -> tuple[int, int, float]:
    patches = card.training.get("patches", {}) if isinstance(card.training, dict) else {}
    stride = (
        int(patches.get("stride", card.input_size // 2))
        if isinstance(patches, dict)
        else card.input_size // 2
    )
    min_tissue = float(patches.get("min_tissue", 0.3)) if isinstance(patches, dict) else 0.3
    return card.input_size, stride, min_tissue


def _split(card: ModelCard, records: list[ManifestRecord], path: Path) -> tuple[list, list, list[str]]:
    """Held-out records (the card's test patients, else the ``test`` split), the others, held-out patients."""
    test_patients = card.training.get("test_patients") if isinstance(card.training, dict) else None
    if test_patients:
        held = [r for r in records if r.group in set(test_patients)]
        source = "the model card's test_patients"
    else:
        held = [r for r in records if r.split == "test"]
        source = "the manifest's 'test' split"
    if not held:
        raise ManifestError(
            f"no held-out images: none of the manifest's rows matches {source}",
            path=path,
            hint="use the manifest the model was trained with, or give it a 'test' split",
        )
    held_patients = sorted({r.group for r in held})
    train = [r for r in records if r.group not in set(held_patients)]
    for what, recs in (("held-out", held), ("training", train)):
        if len({r.tumour for r in recs}) < 2:
            raise ManifestError(f"the {what} images hold only one class", path=path)
    return held, train, held_patients


def load_prune_data(
    card: ModelCard,
    manifest_path: str | Path,
    data_root: str | Path,
    *,
    heldout_stride: int | None = None,
    progress: bool = True,
) -> PruneData:
    """Read the manifest's images at the model's resolution and cut held-out and training patches.

    Raises
    ------
    ManifestError
        No labelled rows, no held-out patients, or one class missing.
    """
    manifest = read_manifest(manifest_path)
    records = [r for r in manifest.records if r.tumour is not None]
    if not records:
        raise ManifestError("manifest has no rows with a tumour label", path=manifest.path)
    held, train, held_patients = _split(card, records, manifest.path)
    size, stride, min_tissue = _patch_settings(card)

    def dataset(recs: Sequence[ManifestRecord], step: int, augment: Augmenter | None) -> PatchDataset:
        images = load_images(recs, data_root, card.mpp, None, progress)
        return PatchDataset(
            images,
            [int(r.tumour or 0) for r in recs],
            size,
            step,
            image_ids=[r.id for r in recs],
            patients=[r.group for r in recs],
            min_tissue=min_tissue,
            mean=card.mean,
            std=card.std,
            augment=augment,
        )

    heldout = dataset(held, heldout_stride or size, None)
    training = dataset(train, stride, Augmenter())
    if len(heldout) == 0 or len(training) == 0:
        raise ManifestError("no tissue patches in the held-out or training images", path=manifest.path)
    return PruneData(
        card=card,
        heldout=heldout,
        train=training,
        heldout_patients=held_patients,
        train_patients=sorted({r.group for r in train}),
    )
