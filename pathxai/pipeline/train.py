"""Training and evaluating patch classifiers from manifests (what ``pathxai train``/``evaluate`` call).

Three ways to choose the training data, all grouped by patient:

* split mode (default): train on rows whose ``split`` is ``train_split``; if rows with
  ``test_split`` exist, evaluate on them (the manifest's split must be patient-disjoint:
  checked);
* ``folds=K, fold=k``: patient-grouped, label-stratified K folds over all rows; train on the
  others, test on fold ``k``;
* ``cv=K``: all K folds in turn, written to ``out/fold_<k>/``, with mean ± sd in ``out/cv.json``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from pathxai import __version__
from pathxai.errors import ManifestError
from pathxai.jsonio import write_json
from pathxai.manifest import Manifest, ManifestRecord, read_manifest
from pathxai.model.augment import Augmenter
from pathxai.model.card import ModelCard
from pathxai.model.datasets import PatchDataset, channel_stats, load_images, patches_from_manifest
from pathxai.model.evaluate import card_metrics, evaluate_dataset, summarize_folds
from pathxai.model.io import load_model_with_card, save_model
from pathxai.model.splits import assert_disjoint, grouped_folds
from pathxai.model.train import TrainConfig, TrainResult, train_model
from pathxai.pipeline.evaluate import labelled_records

__all__ = [
    "DEFAULT_LICENCE",
    "PatchSettings",
    "TrainJobResult",
    "train_from_manifest",
]

DEFAULT_LICENCE = "GlaS-derived weights: research use only, non-commercial"
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
class _Run:
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
        todo = [r for r in records if r.id not in self.images]
        if todo:
            loaded = load_images(
                todo, self.data_root, self.patches.mpp, self.patches.native_mpp, self.progress
            )
            self.images.update({r.id: im for r, im in zip(todo, loaded, strict=True)})
        return [self.images[r.id] for r in records]


def _dataset(
    run: _Run, records: list[ManifestRecord], mean: Sequence[float], std: Sequence[float], training: bool
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
    run: _Run,
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


def _finished(run: _Run, test: list[ManifestRecord], out: Path) -> dict[str, Any] | None:
    """With ``resume``, the evaluation of a model already trained in ``out`` on this manifest, else ``None``."""
    eval_path = out / "eval.json"
    if run.resume and (out / "model_card.json").is_file() and (test == [] or eval_path.is_file()):
        _, card = load_model_with_card(out)
        if card.training.get("manifest_sha256") == run.manifest.sha256:
            return json.loads(eval_path.read_text()) if test else {}
    return None


def _train_one(
    run: _Run, train: list[ManifestRecord], test: list[ManifestRecord], out: Path, split_info: dict[str, Any]
) -> dict[str, Any]:
    assert_disjoint(sorted({r.group for r in train}), sorted({r.group for r in test}))
    if len({r.tumour for r in train}) < 2:
        raise ManifestError(
            "the training rows hold only one class; cannot train a classifier", path=run.manifest.path
        )
    done = _finished(run, test, out)
    if done is not None:
        return done
    mean, std = channel_stats(run.images_for(train))
    train_ds = _dataset(run, train, mean, std, training=True)
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
        test_ds = _dataset(run, test, mean, std, training=False)
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


def _grouped_folds(
    m: Manifest, labels: list[int], groups: list[str], k: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`grouped_folds`, with a cohort too small for ``k`` folds reported as a manifest problem."""
    try:
        return grouped_folds(labels, groups, k, seed)
    except ValueError as exc:
        raise ManifestError(
            f"cannot make {k} patient-grouped folds: {exc}",
            path=m.path,
            hint="use fewer folds, or a manifest with more patients and images of each class",
        ) from exc


@dataclass(frozen=True)
class TrainJobResult:
    """Outcome of :func:`train_from_manifest`.

    Attributes
    ----------
    mode
        ``"split"``, ``"fold"`` or ``"cv"``.
    out
        The model directory (for ``cv``: the folder of ``fold_<k>/`` and ``cv.json``).
    evaluation
        The held-out evaluation (``eval.json``; empty without held-out rows or for ``cv``).
    cv
        The cross-validation summary (``cv.json``) for ``cv``, else ``None``.
    """

    mode: str
    out: Path
    evaluation: dict[str, Any] = field(default_factory=dict)
    cv: dict[str, Any] | None = None


def _cross_validate(run: _Run, recs: list[ManifestRecord], out: Path, k: int) -> TrainJobResult:
    m, seed = run.manifest, run.config.seed
    splits = _grouped_folds(m, [int(r.tumour or 0) for r in recs], [r.group for r in recs], k, seed)
    evals = []
    for i, (tr, te) in enumerate(
        tqdm(splits, desc="cross-validation", unit="fold", disable=not run.progress)
    ):
        info = {"mode": "cv", "folds": k, "fold": i, "seed": seed}
        evals.append(_train_one(run, [recs[j] for j in tr], [recs[j] for j in te], out / f"fold_{i}", info))
    per_fold = [
        {
            "fold": i,
            "test_patients": sorted({recs[j].group for j in te}),
            "patch": {key: e[key] for key in ("n", "auc", "accuracy", "balanced_accuracy")},
            "image": {key: e["image_level"][key] for key in ("n", "auc", "accuracy", "balanced_accuracy")},
        }
        for i, ((_, te), e) in enumerate(zip(splits, evals, strict=True))
    ]
    summary = {
        "mode": "cv",
        "folds": k,
        "manifest": str(m.path),
        "manifest_sha256": m.sha256,
        "command": run.command,
        "summary": summarize_folds(evals),
        "per_fold": per_fold,
    }
    write_json(out / "cv.json", summary)
    return TrainJobResult(mode="cv", out=out, cv=summary)


def _one_fold(run: _Run, recs: list[ManifestRecord], out: Path, folds: int, fold: int) -> TrainJobResult:
    if not 0 <= fold < folds:
        raise ValueError(f"--fold must be in 0..{folds - 1}, got {fold}")
    seed = run.config.seed
    labels, groups = [int(r.tumour or 0) for r in recs], [r.group for r in recs]
    tr, te = _grouped_folds(run.manifest, labels, groups, folds, seed)[fold]
    info = {"mode": "fold", "folds": folds, "fold": fold, "seed": seed}
    ev = _train_one(run, [recs[i] for i in tr], [recs[i] for i in te], out, info)
    return TrainJobResult(mode="fold", out=out, evaluation=ev)


def _by_split(
    run: _Run, recs: list[ManifestRecord], out: Path, train_split: str, test_split: str
) -> TrainJobResult:
    m = run.manifest
    has_split = any(r.split for r in recs)
    train = [r for r in recs if r.split == train_split] if has_split else recs
    test = [r for r in recs if r.split == test_split] if has_split else []
    if not train:
        raise ManifestError(f"no rows with split {train_split!r}", path=m.path, hint="check --train-split")
    try:
        assert_disjoint([r.group for r in train], [r.group for r in test])
    except AssertionError as exc:
        raise ManifestError(f"the manifest's split is not patient-disjoint: {exc}", path=m.path) from exc
    info = {"mode": "split", "train_split": train_split, "test_split": test_split if test else None}
    return TrainJobResult(mode="split", out=out, evaluation=_train_one(run, train, test, out, info))


def train_from_manifest(
    manifest: str | Path,
    out: str | Path,
    data_root: str | Path | None = None,
    arch: str = "compact_cnn",
    arch_kwargs: dict[str, Any] | None = None,
    patches: PatchSettings | None = None,
    epochs: int = 12,
    batch_size: int = 64,
    lr: float = 2e-3,
    weight_decay: float = 1e-4,
    seed: int = 0,
    num_threads: int = 2,
    hed_sigma: float = 0.05,
    hed_bias: float = 0.05,
    stain_matrix_sigma: float = 0.0,
    balance_sites: bool = False,
    folds: int | None = None,
    fold: int | None = None,
    cv: int | None = None,
    train_split: str = "train",
    test_split: str = "test",
    resume: bool = False,
    pretrained: str | Path | None = None,
    licence: str = DEFAULT_LICENCE,
    command: str = "",
    max_steps_per_epoch: int | None = None,
    progress: bool = True,
) -> TrainJobResult:
    """Train (and evaluate) a patch classifier from a manifest; see the module docstring for modes.

    ``stain_matrix_sigma`` adds a random stain-matrix perturbation to the HED jitter
    (:class:`~pathxai.model.augment.Augmenter`); ``balance_sites`` samples patches balanced over
    ``(site, class)`` (:class:`~pathxai.model.train.TrainConfig`); ``patches.scale_jitter`` jitters
    the scale of training patches.

    Returns
    -------
    TrainJobResult
        The mode, the output folder, the held-out evaluation of one model, or the CV summary
        (also written to ``out/cv.json``) for ``cv``.
    """
    m = read_manifest(manifest)
    root = Path(data_root) if data_root is not None else m.path.parent
    if not root.is_dir():
        raise ManifestError("data root is not a directory", path=root, hint="pass --data-root DIR")
    recs = labelled_records(m)
    cfg = TrainConfig(
        arch=arch,
        arch_kwargs=dict(arch_kwargs or {}),
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        seed=seed,
        num_threads=num_threads,
        max_steps_per_epoch=max_steps_per_epoch,
        balance_sites=balance_sites,
    )
    run = _Run(
        manifest=m,
        data_root=root,
        patches=patches or PatchSettings(),
        config=cfg,
        augment=Augmenter(hed_sigma=hed_sigma, hed_bias=hed_bias, stain_matrix_sigma=stain_matrix_sigma),
        licence=licence,
        command=command,
        pretrained=None if pretrained is None else str(pretrained),
        resume=resume,
        progress=progress,
    )
    out = Path(out)
    if cv is not None:
        return _cross_validate(run, recs, out, cv)
    if folds is not None or fold is not None:
        if folds is None or fold is None:
            raise ValueError("--folds and --fold go together")
        return _one_fold(run, recs, out, folds, fold)
    return _by_split(run, recs, out, train_split, test_split)
