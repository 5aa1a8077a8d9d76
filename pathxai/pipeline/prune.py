"""Pruning a classifier against a labelled patch manifest (what ``pathxai prune``/``prune-sweep`` call).

Data, grouped by patient so nothing leaks:

* **held-out** patches: images of the model card's ``test_patients`` (else the manifest's ``test``
  split), cut without overlap; AUC/accuracy and the explanation drift are measured here;
* **reference** set for the data-driven criteria: ``reference_per_class`` patches per class drawn
  (seeded) from the other patients' images;
* **fine-tuning** patches: all patches of those other patients, with the training augmentation.

:func:`prune_from_manifest` writes a model directory (``model.safetensors`` + ``model_card.json``
whose ``channel_plan`` rebuilds the smaller network) and ``pruning.json`` beside it (plan, metrics
before/after, latency, drift). :func:`prune_sweep` writes ``sweep.csv`` (one row per criterion, ratio,
seed and fine-tuning setting; resumable) and ``sweep.png``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from pathxai import __version__
from pathxai.atomic import write_text_atomic
from pathxai.errors import ManifestError, PruneError
from pathxai.explain import Explainer
from pathxai.explain.metrics import region_perturbation
from pathxai.jsonio import write_json
from pathxai.manifest import ManifestRecord, read_manifest
from pathxai.model.augment import Augmenter
from pathxai.model.card import ModelCard
from pathxai.model.datasets import PatchDataset, load_images
from pathxai.model.evaluate import evaluate_dataset
from pathxai.model.io import load_model_with_card, save_model
from pathxai.prune import (
    CRITERIA,
    DATA_CRITERIA,
    DriftReport,
    PruningPlan,
    check_ratio,
    compose_plans,
    count_macs_params,
    cpu_latency_ms,
    explanation_drift,
    make_importance,
)
from pathxai.prune.criteria import DataImportance, ReferenceBatches
from pathxai.prune.finetune import finetune

__all__ = [
    "SWEEP_COLUMNS",
    "PruneData",
    "PruneSettings",
    "evaluate_model",
    "plot_sweep",
    "prune_from_manifest",
    "prune_sweep",
]

PLAN_FILENAME = "pruning.json"


@dataclass(frozen=True)
class PruneSettings:
    """Options of a pruning run.

    Attributes
    ----------
    reference_per_class
        Reference patches per class for the data-driven criteria.
    global_pruning, iterative_steps
        Ranking scope and schedule (see :func:`pathxai.prune.prune_model`).
    finetune_epochs, finetune_steps_per_epoch, finetune_lr, finetune_batch
        Fine-tuning after each pruning step (0 epochs: none).
    heldout_stride
        Stride of held-out patches (default: the patch size, i.e. no overlap).
    drift_patches
        Held-out patches explained for the drift numbers (0: skip).
    drift_all_seeds
        In a sweep, measure drift for every seed (default: the first seed only, to save time).
    latency, latency_batch, latency_threads, latency_repeats
        CPU latency measurement (median of repeats, fixed threads).
    ig_steps
        Integrated-gradients steps of the ``ig`` criterion.
    """

    reference_per_class: int = 10
    global_pruning: bool = False
    iterative_steps: int = 1
    finetune_epochs: float = 0.0
    finetune_steps_per_epoch: int | None = None
    finetune_lr: float = 5e-4
    finetune_batch: int = 32
    heldout_stride: int | None = None
    drift_patches: int = 32
    drift_all_seeds: bool = False
    latency: bool = True
    latency_batch: int = 16
    latency_threads: int = 1
    latency_repeats: int = 20
    ig_steps: int = 16

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


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
        augment, self.train.augment = self.train.augment, None
        try:
            items = [self.train[i] for i in chosen]
        finally:
            self.train.augment = augment
        x = torch.stack([it[0] for it in items])
        y = torch.tensor([it[1] for it in items], dtype=torch.long)
        batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(y), batch_size)]
        self._reference_cache[key] = batches
        return batches

    def drift_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` held-out patches spread evenly over the set (deterministic), with their labels."""
        m = len(self.heldout)
        idx = np.unique(np.linspace(0, m - 1, num=min(n, m)).round().astype(int))
        augment, self.heldout.augment = self.heldout.augment, None
        try:
            items = [self.heldout[int(i)] for i in idx]
        finally:
            self.heldout.augment = augment
        return torch.stack([it[0] for it in items]), torch.tensor([it[1] for it in items])


def _patch_settings(card: ModelCard) -> tuple[int, int, float]:
    patches = card.training.get("patches", {}) if isinstance(card.training, dict) else {}
    stride = (
        int(patches.get("stride", card.input_size // 2))
        if isinstance(patches, dict)
        else card.input_size // 2
    )
    min_tissue = float(patches.get("min_tissue", 0.3)) if isinstance(patches, dict) else 0.3
    return card.input_size, stride, min_tissue


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
    records = [r for r in manifest.records if r.tumor is not None]
    if not records:
        raise ManifestError("manifest has no rows with a tumour label", path=manifest.path)
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
            path=manifest.path,
            hint="use the manifest the model was trained with, or give it a 'test' split",
        )
    held_patients = sorted({r.group for r in held})
    train = [r for r in records if r.group not in set(held_patients)]
    for what, recs in (("held-out", held), ("training", train)):
        if len({r.tumor for r in recs}) < 2:
            raise ManifestError(f"the {what} images hold only one class", path=manifest.path)
    size, stride, min_tissue = _patch_settings(card)

    def dataset(recs: Sequence[ManifestRecord], step: int, augment: Augmenter | None) -> PatchDataset:
        images = load_images(recs, data_root, card.mpp, None, progress)
        return PatchDataset(
            images,
            [int(r.tumor or 0) for r in recs],
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


def evaluate_model(model: nn.Module, data: PruneData, progress: bool = False) -> dict[str, float]:
    """Patch- and image-level AUC and accuracy on the held-out patches."""
    ev = evaluate_dataset(model, data.heldout, tumour_index=data.card.tumour_index, progress=progress)
    out = {
        "auc": ev["auc"],
        "accuracy": ev["accuracy"],
        "balanced_accuracy": ev["balanced_accuracy"],
        "image_auc": ev["image_level"]["auc"],
        "image_accuracy": ev["image_level"]["accuracy"],
        "n_heldout": ev["n"],
    }
    return {k: float("nan") if v is None else float(v) for k, v in out.items()}


def _explain_fn(target_class: int) -> Callable[[nn.Module, torch.Tensor, torch.Tensor], np.ndarray]:
    def run(model: nn.Module, x: torch.Tensor, t: torch.Tensor) -> np.ndarray:
        with Explainer(model, "lrp", target_class=target_class) as explainer:
            return explainer(x, t).relevance

    return run


def _flip_fn() -> Callable[[nn.Module, torch.Tensor, np.ndarray, torch.Tensor], np.ndarray]:
    """Return the pixel-flipping AUC function used for drift (lower = more faithful heatmap).

    MoRF region perturbation of :mod:`pathxai.explain.metrics`: 8x8 regions, 16 steps, mean-colour
    baseline, tracking the explained class's *probability* so models with different logit scales compare.
    """

    def run(model: nn.Module, x: torch.Tensor, rel: np.ndarray, t: torch.Tensor) -> np.ndarray:
        curve = region_perturbation(
            model, x, rel, t, patch=8, steps=16, baseline="mean", order="morf", score="probability"
        )
        return np.asarray(curve.auc, dtype=np.float64)

    return run


def measure_drift(
    original: nn.Module,
    pruned: nn.Module,
    data: PruneData,
    n: int,
    cache: dict[str, np.ndarray] | None = None,
) -> DriftReport | None:
    """LRP heatmap drift between two models on ``n`` held-out patches (tumour class explained).

    ``cache`` (a dict kept by the caller) holds the original model's heatmaps across calls.
    """
    if n <= 0:
        return None
    x, _ = data.drift_batch(n)
    target = torch.full((x.shape[0],), data.card.tumour_index, dtype=torch.long)
    explain = _explain_fn(data.card.tumour_index)
    flip = _flip_fn()
    original_rel = original_flip = None
    if cache is not None:
        if "original" not in cache:
            cache["original"] = np.concatenate(
                [explain(original, x[i : i + 16], target[i : i + 16]) for i in range(0, len(x), 16)]
            )
            cache["original_flip"] = np.concatenate(
                [
                    flip(original, x[i : i + 16], cache["original"][i : i + 16], target[i : i + 16])
                    for i in range(0, len(x), 16)
                ]
            )
        original_rel, original_flip = cache["original"], cache["original_flip"]
    return explanation_drift(
        original,
        pruned,
        x,
        target,
        explain,
        flip_auc=flip,
        original_relevance=original_rel,
        original_flip_auc=original_flip,
    )


def _latency(model: nn.Module, size: int, settings: PruneSettings) -> float:
    return cpu_latency_ms(
        model,
        size,
        batch_size=settings.latency_batch,
        threads=settings.latency_threads,
        repeats=settings.latency_repeats,
    )


def _finetune_cb(
    data: PruneData, settings: PruneSettings, seed: int, progress: bool
) -> Callable[[nn.Module, int], None] | None:
    if settings.finetune_epochs <= 0:
        return None

    def run(model: nn.Module, step: int) -> None:
        finetune(
            model,
            data.train,
            settings.finetune_epochs,
            lr=settings.finetune_lr,
            batch_size=settings.finetune_batch,
            max_steps_per_epoch=settings.finetune_steps_per_epoch,
            seed=seed * 1000 + step,
            progress=progress,
        )

    return run


def _criterion_options(criterion: str, settings: PruneSettings) -> dict[str, Any]:
    return {"ig_steps": settings.ig_steps} if criterion == "ig" else {}


def prune_from_manifest(
    model_path: str | Path,
    manifest_path: str | Path,
    data_root: str | Path,
    criterion: str,
    ratio: float,
    out_dir: str | Path,
    settings: PruneSettings | None = None,
    *,
    seed: int = 0,
    command: str = "",
    progress: bool = True,
) -> dict[str, Any]:
    """Prune a saved model and write the smaller model plus ``pruning.json`` to ``out_dir``.

    Parameters
    ----------
    model_path
        ``"default"`` or a model directory (it may itself be pruned).
    manifest_path, data_root
        Labelled patch manifest and the folder its paths are relative to.
    criterion
        A key of :data:`pathxai.prune.CRITERIA`.
    ratio
        Fraction of channels removed, in ``[0, 1)``.
    out_dir
        Output model directory (loadable by :func:`pathxai.model.load_model`).
    settings
        Run options.
    seed
        Seed of the reference draw, the random criterion and fine-tuning.
    command
        The command line, recorded in the card.
    progress
        Show progress bars.

    Returns
    -------
    dict
        The content of ``pruning.json``.
    """
    settings = settings or PruneSettings()
    ratio = check_ratio(ratio)
    if criterion not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {criterion!r}; choose one of {sorted(CRITERIA)}")
    model, card = load_model_with_card(model_path)
    data = load_prune_data(
        card, manifest_path, data_root, heldout_stride=settings.heldout_stride, progress=progress
    )
    size = card.input_size
    t0 = time.perf_counter()
    reference = data.reference(settings.reference_per_class, seed) if criterion in DATA_CRITERIA else None
    plan, pruned = PruningPlan.compute_and_prune(
        model,
        criterion,
        ratio,
        reference,
        input_size=size,
        global_pruning=settings.global_pruning,
        iterative_steps=settings.iterative_steps,
        finetune=_finetune_cb(data, settings, seed, progress),
        seed=seed,
        criterion_options=_criterion_options(criterion, settings),
    )
    prune_seconds = time.perf_counter() - t0
    before = {**plan.metrics_before, **evaluate_model(model, data, progress)}
    after = {**plan.metrics_after, **evaluate_model(pruned, data, progress)}
    if settings.latency:
        before["latency_ms"] = _latency(model, size, settings)
        after["latency_ms"] = _latency(pruned, size, settings)
    drift = measure_drift(model, pruned, data, settings.drift_patches)
    plan = dataclasses.replace(plan, metrics_before=_finite(before), metrics_after=_finite(after))
    channel_plan = compose_plans(card.channel_plan, plan.channels)
    report: dict[str, Any] = {
        "plan": plan.to_dict(),
        "channel_plan_vs_base": channel_plan,
        "drift": drift.to_dict() if drift is not None else None,
        "settings": settings.to_dict(),
        "seed": seed,
        "source_model": str(model_path),
        "source_weights_sha256": card.weights_sha256,
        "manifest": str(manifest_path),
        "heldout_patients": data.heldout_patients,
        "reference_patients": data.train_patients,
        "prune_seconds": prune_seconds,
        "summary": _summary(before, after),
        "command": command,
        "pathxai_version": __version__,
    }
    training = dict(card.training)
    history = list(training.get("pruning_history", []))
    history.append({k: report[k] for k in ("summary", "seed", "source_weights_sha256", "command")})
    history[-1].update({"criterion": criterion, "ratio": ratio, "settings": settings.to_dict()})
    training["pruning_history"] = history
    new_card = dataclasses.replace(
        card,
        channel_plan=channel_plan or None,
        training=training,
        metrics={**card.metrics, "pruned_heldout": _finite(after)},
        command=command or card.command,
        pathxai_version=__version__,
        extra={**card.extra, "pruning": {"criterion": criterion, "ratio": ratio, "plan_file": PLAN_FILENAME}},
    )
    out = Path(out_dir)
    save_model(pruned, new_card, out)
    write_json(out / PLAN_FILENAME, report, sort_keys=True)
    return report


def _finite(metrics: dict[str, float]) -> dict[str, float]:
    return {k: float(v) for k, v in metrics.items() if isinstance(v, int | float) and math.isfinite(float(v))}


def _summary(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = {}
    if before.get("params"):
        out["params_removed_fraction"] = 1.0 - after["params"] / before["params"]
    if before.get("macs"):
        out["macs_removed_fraction"] = 1.0 - after["macs"] / before["macs"]
    if before.get("latency_ms") and after.get("latency_ms"):
        out["latency_speedup"] = before["latency_ms"] / after["latency_ms"]
    for key in ("auc", "accuracy", "image_auc"):
        if key in before and key in after:
            out[f"{key}_change_pp"] = 100.0 * (after[key] - before[key])
    return out


# ---------------------------------------------------------------------------------------------- sweep

SWEEP_COLUMNS = (
    "criterion",
    "ratio",
    "seed",
    "finetune_epochs",
    "n_reference",
    "params",
    "macs",
    "auc",
    "accuracy",
    "balanced_accuracy",
    "image_auc",
    "drift_pearson",
    "drift_spearman",
    "drift_topk_iou",
    "flip_auc",
    "seconds",
)


def _read_rows(path: Path) -> list[dict[str, str]]:
    if not path.is_file():
        return []
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _write_rows(path: Path, rows: list[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(SWEEP_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: row.get(k, "") for k in SWEEP_COLUMNS})
    write_text_atomic(path, buf.getvalue())


def _key(criterion: str, ratio: float, seed: int, epochs: float) -> tuple[str, str, str, str]:
    return (criterion, f"{float(ratio):.4f}", str(int(seed)), f"{float(epochs):g}")


def _fmt(v: Any) -> Any:
    if isinstance(v, float):
        return "" if not math.isfinite(v) else f"{v:.6g}"
    return v


def prune_sweep(
    model_path: str | Path,
    manifest_path: str | Path,
    data_root: str | Path,
    out_dir: str | Path,
    *,
    criteria: Sequence[str] = tuple(CRITERIA),
    ratios: Sequence[float] = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7),
    seeds: Sequence[int] = (0, 1, 2),
    finetune_epochs: float = 0.0,
    finetune_ratios: Sequence[float] | None = None,
    settings: PruneSettings | None = None,
    progress: bool = True,
) -> Path:
    """AUC/accuracy versus fraction of channels pruned for several criteria, seeds and fine-tuning.

    One-shot pruning from the same model for every (criterion, seed, ratio); with
    ``finetune_epochs > 0`` the ``finetune_ratios`` are repeated with fine-tuning. Rows already in
    ``out_dir/sweep.csv`` are skipped (the sweep resumes); the plot ``sweep.png`` is redrawn at the end.

    Returns
    -------
    Path
        The CSV file.
    """
    settings = settings or PruneSettings()
    for c in criteria:
        if c not in CRITERIA:
            raise ValueError(f"unknown pruning criterion {c!r}; choose from {sorted(CRITERIA)}")
    ratios = [check_ratio(r) for r in ratios]
    ft_ratios = [check_ratio(r) for r in (finetune_ratios if finetune_ratios is not None else ratios)]
    if not seeds:
        raise ValueError("need at least one seed")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / "sweep.csv"
    rows: list[dict[str, Any]] = list(_read_rows(csv_path))
    done = {
        _key(r["criterion"], float(r["ratio"]), int(r["seed"]), float(r["finetune_epochs"] or 0))
        for r in rows
    }
    model, card = load_model_with_card(model_path)
    data = load_prune_data(
        card, manifest_path, data_root, heldout_stride=settings.heldout_stride, progress=progress
    )
    size = card.input_size
    jobs: list[tuple[str, int, float, float]] = []
    for seed in seeds:
        for crit in criteria:
            if crit == "weight" and seed != seeds[0]:
                continue  # deterministic: the same ranking for every seed
            jobs += [(crit, seed, r, 0.0) for r in ratios]
            if finetune_epochs > 0:
                jobs += [(crit, seed, r, float(finetune_epochs)) for r in ft_ratios]
    drift_cache: dict[str, np.ndarray] = {}
    baseline_key = _key("none", 0.0, 0, 0.0)
    if baseline_key not in done:
        metrics = evaluate_model(model, data)
        macs, params = count_macs_params(model, size)
        own = measure_drift(model, model, data, settings.drift_patches, drift_cache)
        rows.append(
            {
                **{k: _fmt(v) for k, v in metrics.items()},
                "criterion": "none",
                "ratio": 0,
                "seed": 0,
                "finetune_epochs": 0,
                "n_reference": 0,
                "params": params,
                "macs": macs,
                "flip_auc": _fmt(own.flip_auc_original) if own else "",
                "seconds": 0,
            }
        )
        _write_rows(csv_path, rows)
    todo = [j for j in jobs if _key(j[0], j[2], j[1], j[3]) not in done]
    scores_cache: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
    bar = tqdm(todo, desc="prune sweep", unit="run", disable=not progress)
    for crit, seed, ratio, epochs in bar:
        bar.set_postfix(criterion=crit, ratio=ratio, seed=seed, ft=epochs)
        t0 = time.perf_counter()
        reference = data.reference(settings.reference_per_class, seed) if crit in DATA_CRITERIA else None
        pre = None
        if crit in DATA_CRITERIA and settings.iterative_steps == 1:
            if (crit, seed) not in scores_cache:
                imp = make_importance(crit, model, reference, **_criterion_options(crit, settings))
                assert isinstance(imp, DataImportance)
                imp.refresh()
                scores_cache[(crit, seed)] = imp.scores
            pre = scores_cache[(crit, seed)]
        run_settings = dataclasses.replace(settings, finetune_epochs=epochs)
        plan, pruned = PruningPlan.compute_and_prune(
            model,
            crit,
            ratio,
            reference,
            input_size=size,
            global_pruning=settings.global_pruning,
            iterative_steps=settings.iterative_steps,
            finetune=_finetune_cb(data, run_settings, seed, False),
            seed=seed,
            criterion_options=_criterion_options(crit, settings),
            precomputed_scores=pre,
        )
        metrics = evaluate_model(pruned, data)
        drift = None
        if seed == seeds[0] or settings.drift_all_seeds:
            drift = measure_drift(model, pruned, data, settings.drift_patches, drift_cache)
        row = {
            "criterion": crit,
            "ratio": f"{ratio:.4f}",
            "seed": seed,
            "finetune_epochs": f"{epochs:g}",
            "n_reference": plan.n_reference,
            "params": int(plan.metrics_after["params"]),
            "macs": int(plan.metrics_after["macs"]),
            **{k: _fmt(v) for k, v in metrics.items() if k in SWEEP_COLUMNS},
            "drift_pearson": _fmt(drift.pearson) if drift else "",
            "drift_spearman": _fmt(drift.spearman) if drift else "",
            "drift_topk_iou": _fmt(drift.topk_iou) if drift else "",
            "flip_auc": _fmt(drift.flip_auc_pruned) if drift else "",
            "seconds": f"{time.perf_counter() - t0:.1f}",
        }
        rows.append(row)
        _write_rows(csv_path, rows)
    bar.close()
    plot_sweep(csv_path, out / "sweep.png")
    return csv_path


def plot_sweep(csv_path: str | Path, png_path: str | Path, metric: str = "auc") -> Path:
    """Plot ``metric`` (mean ± sd over seeds) versus ratio per criterion; a panel per fine-tuning setting."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _read_rows(Path(csv_path))
    if not rows:
        raise PruneError("sweep CSV has no rows to plot", path=csv_path)
    base = [float(r[metric]) for r in rows if r["criterion"] == "none" and r.get(metric)]
    settings = sorted({float(r["finetune_epochs"] or 0) for r in rows if r["criterion"] != "none"})
    fig, axes = plt.subplots(
        1, max(1, len(settings)), figsize=(5.5 * max(1, len(settings)), 4), squeeze=False
    )
    for ax, ft in zip(axes[0], settings or [0.0], strict=False):
        for crit in [c for c in CRITERIA if any(r["criterion"] == c for r in rows)]:
            sel = [
                r
                for r in rows
                if r["criterion"] == crit and float(r["finetune_epochs"] or 0) == ft and r.get(metric)
            ]
            ratios = sorted({float(r["ratio"]) for r in sel})
            if not ratios:
                continue
            mean = [np.mean([float(r[metric]) for r in sel if float(r["ratio"]) == q]) for q in ratios]
            sd = [np.std([float(r[metric]) for r in sel if float(r["ratio"]) == q]) for q in ratios]
            xs = [0.0, *ratios] if base else ratios
            ys = [base[0], *mean] if base else mean
            es = [0.0, *sd] if base else sd
            ax.errorbar(xs, ys, yerr=es, marker="o", capsize=3, label=crit, lw=2 if crit == "lrp" else 1)
        if base:
            ax.axhline(base[0], color="grey", ls="--", lw=0.8, label="unpruned")
        ax.set_xlabel("fraction of channels pruned")
        ax.set_ylabel(f"held-out patch {metric.upper() if metric == 'auc' else metric}")
        ax.set_title("no fine-tuning" if ft == 0 else f"fine-tuned {ft:g} epoch(s)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    png = Path(png_path)
    png.parent.mkdir(parents=True, exist_ok=True)
    tmp = png.with_name(f".{png.stem}.part.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(png)
    return png
