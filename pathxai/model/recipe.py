"""One patch classifier trained from manifest rows: its patches, training, model card and evaluation.

:func:`train_one` is the unit :mod:`pathxai.model.crossval` runs once per split or fold (the job
``pathxai train`` is :func:`pathxai.pipeline.train.train_from_manifest`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pathxai import __version__
from pathxai.errors import ManifestError
from pathxai.jsonio import write_json
from pathxai.manifest import Manifest, ManifestRecord
from pathxai.model.augment import Augmenter
from pathxai.model.card import ModelCard
from pathxai.model.datasets import PatchDataset, channel_stats, load_images, patches_from_manifest
from pathxai.model.evaluate import card_metrics, evaluate_dataset
from pathxai.model.io import load_model_with_card, save_model
from pathxai.model.splits import assert_disjoint
from pathxai.model.train import TrainConfig, TrainResult, train_model

__all__ = ["CLASSES", "PatchSettings", "TrainRun", "patch_dataset", "train_one"]

CLASSES = ("non-tumour", "tumour")


@dataclass(frozen=True)
class PatchSettings:
    """How images become patches.

    Attributes
    ----------
    mpp
        Resolution the model works at (µm/px).
    size, stride
        Patch side and step in pixels at ``mpp``.
    native_mpp
        Resolution of images whose manifest row has no ``mpp``.
    min_tissue
        Drop patches with less tissue than this fraction.
    scale_jitter
        Relative scale jitter of training patches (``PatchDataset.scale_jitter``; 0: none).
    """

    mpp: float = 1.24
    size: int = 112
    stride: int = 56
    native_mpp: float | None = None
    min_tissue: float = 0.3
    scale_jitter: float = 0.0


@dataclass
class TrainRun:
    """What every model of one ``pathxai train`` call shares: the manifest, settings, and images once loaded.

    :meth:`images_for` loads (resampled to the patch mpp) only the images not loaded yet, so the folds
    of a cross-validation read each image once.
    """

    manifest: Manifest
    data_root: Path
    patches: PatchSettings
    config: TrainConfig
    augment: Augmenter
    licence: str
    command: str
    pretrained: str | None
    resume: bool
    progress: bool
    images: dict[str, np.ndarray] = field(default_factory=dict)

    def images_for(self, records: Sequence[ManifestRecord]) -> list[np.ndarray]:
        """The images of ``records``, in order, loaded on first use."""
        todo = [r for r in records if r.id not in self.images]
        if todo:
            loaded = load_images(
                todo, self.data_root, self.patches.mpp, self.patches.native_mpp, self.progress
            )
            self.images.update({r.id: im for r, im in zip(todo, loaded, strict=True)})
        return [self.images[r.id] for r in records]


def patch_dataset(
    run: TrainRun, records: list[ManifestRecord], mean: Sequence[float], std: Sequence[float], training: bool
) -> PatchDataset:
    """Patches of ``records`` (training ones augmented and seeded) normalised with ``mean``/``std``."""
    ps = run.patches
    extra: dict[str, Any] = (
        {"augment": run.augment, "seed": run.config.seed, "scale_jitter": ps.scale_jitter} if training else {}
    )
    return patches_from_manifest(
        records,
        run.data_root,
        ps.mpp,
        ps.size,
        ps.stride,
        min_tissue=ps.min_tissue,
        mean=mean,
        std=std,
        images=run.images_for(records),
        **extra,
    )


def _patch_settings(ps: PatchSettings) -> dict[str, Any]:
    """The card's record of how patches were cut (``scale_jitter`` only when it was used)."""
    out: dict[str, Any] = {"size": ps.size, "stride": ps.stride, "mpp": ps.mpp, "min_tissue": ps.min_tissue}
    if ps.scale_jitter > 0:
        out["scale_jitter"] = ps.scale_jitter
    return out


def _card(
    run: TrainRun,
    result: TrainResult,
    data: tuple[list[ManifestRecord], list[ManifestRecord], PatchDataset],
    stats: tuple[tuple[float, float, float], tuple[float, float, float]],
    split_info: dict[str, Any],
    metrics: dict[str, Any],
) -> ModelCard:
    """The trained model's card: preprocessing, patients, patches, settings, history and metrics."""
    (train, test, train_ds), (mean, std), ps = data, stats, run.patches
    return ModelCard(
        arch=run.config.arch,
        classes=CLASSES,
        tumour_index=1,
        input_size=ps.size,
        mpp=ps.mpp,
        mean=mean,
        std=std,
        arch_kwargs={**getattr(result.model, "config", {}), **run.config.arch_kwargs},
        training={
            "manifest": str(run.manifest.path),
            "manifest_sha256": run.manifest.sha256,
            "split": split_info,
            "train_patients": sorted({r.group for r in train}),
            "test_patients": sorted({r.group for r in test}),
            "n_train_images": len(train),
            "n_train_patches": len(train_ds),
            "n_test_images": len(test),
            "patches": _patch_settings(ps),
            "config": run.config.to_dict(),
            "augment": run.augment.to_dict(),
            "history": result.history,
            "seconds": round(result.seconds, 1),
            "pretrained": run.pretrained,
        },
        metrics=metrics,
        licence=run.licence,
        command=run.command,
        pathxai_version=__version__,
    )


def _finished(run: TrainRun, test: list[ManifestRecord], out: Path) -> dict[str, Any] | None:
    """With ``resume``, the evaluation of a model already trained in ``out`` on this manifest, else ``None``."""
    eval_path = out / "eval.json"
    if run.resume and (out / "model_card.json").is_file() and (test == [] or eval_path.is_file()):
        _, card = load_model_with_card(out)
        if card.training.get("manifest_sha256") == run.manifest.sha256:
            return json.loads(eval_path.read_text()) if test else {}
    return None


def train_one(
    run: TrainRun,
    train: list[ManifestRecord],
    test: list[ManifestRecord],
    out: Path,
    split_info: dict[str, Any],
) -> dict[str, Any]:
    """Train one model on ``train`` into ``out`` (weights + card) and evaluate it on ``test``.

    The patient groups of both must be disjoint. With ``run.resume``, a model already trained in
    ``out`` on this manifest is kept and its evaluation returned.

    Returns
    -------
    dict
        The held-out evaluation (also written to ``out/eval.json``); empty without ``test`` rows.
    """
    assert_disjoint(sorted({r.group for r in train}), sorted({r.group for r in test}))
    if len({r.tumour for r in train}) < 2:
        raise ManifestError(
            "the training rows hold only one class; cannot train a classifier", path=run.manifest.path
        )
    done = _finished(run, test, out)
    if done is not None:
        return done
    mean, std = channel_stats(run.images_for(train))
    train_ds = patch_dataset(run, train, mean, std, training=True)
    result = train_model(
        train_ds,
        run.config,
        checkpoint_dir=out / "checkpoint",
        resume=run.resume,
        pretrained=run.pretrained,
        progress=run.progress,
    )
    evaluation: dict[str, Any] = {}
    if test:
        test_ds = patch_dataset(run, test, mean, std, training=False)
        evaluation = evaluate_dataset(result.model, test_ds, tumour_index=1, progress=run.progress)
    metrics = card_metrics(evaluation) if test else {}
    card = _card(run, result, (train, test, train_ds), (mean, std), split_info, metrics)
    save_model(result.model, card, out)
    if test:
        evaluation = {
            "model": str(out),
            "manifest": str(run.manifest.path),
            "manifest_sha256": run.manifest.sha256,
            "split": split_info,
            **evaluation,
        }
        write_json(out / "eval.json", evaluation)
    return evaluation
