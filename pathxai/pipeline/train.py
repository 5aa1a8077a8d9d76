"""Training and evaluating patch classifiers from manifests (what ``pathxai train``/``evaluate`` call).

Three ways to choose the training data, all grouped by patient:

* split mode (default): train on rows whose ``split`` is ``train_split``; if rows with
  ``test_split`` exist, evaluate on them (the manifest's split must be patient-disjoint:
  checked);
* ``folds=K, fold=k``: patient-grouped, label-stratified K folds over all rows; train on the
  others, test on fold ``k``;
* ``cv=K``: all K folds in turn, written to ``out/fold_<k>/``, with mean ± sd in ``out/cv.json``.

The rows become models in :mod:`pathxai.model.crossval` (which split, fold or folds) and
:mod:`pathxai.model.recipe` (one model: patches, training, card, evaluation).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathxai.errors import ManifestError
from pathxai.manifest import labelled_records, read_manifest
from pathxai.model.augment import Augmenter
from pathxai.model.crossval import by_split, cross_validate, one_fold
from pathxai.model.recipe import PatchSettings, TrainRun
from pathxai.model.train import TrainConfig

__all__ = [
    "DEFAULT_LICENCE",
    "PatchSettings",
    "TrainJobResult",
    "train_from_manifest",
]

DEFAULT_LICENCE = "GlaS-derived weights: research use only, non-commercial"


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
    run = TrainRun(
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
        return TrainJobResult(mode="cv", out=out, cv=cross_validate(run, recs, out, cv))
    if folds is not None or fold is not None:
        if folds is None or fold is None:
            raise ValueError("--folds and --fold go together")
        return TrainJobResult(mode="fold", out=out, evaluation=one_fold(run, recs, out, folds, fold))
    return TrainJobResult(mode="split", out=out, evaluation=by_split(run, recs, out, train_split, test_split))
