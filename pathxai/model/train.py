"""The training loop: seeded, deterministic on CPU, checkpointed every epoch, resumable.

A checkpoint is three files in the checkpoint directory, written atomically with the JSON
last: ``ckpt_model.safetensors``, ``ckpt_optim.safetensors`` (AdamW moments) and
``ckpt_state.json`` (epoch, step, history, config, the two files' sha256). Nothing is pickled.
Shuffling and augmentation depend only on ``(seed, epoch, index)`` and the learning rate only on
the global step, so a resumed run reproduces an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import nn
from tqdm.auto import tqdm

from pathxai.atomic import write_bytes_atomic
from pathxai.errors import ModelError
from pathxai.jsonio import write_json
from pathxai.model.architectures import build_model
from pathxai.model.datasets import PatchDataset
from pathxai.model.io import sha256_bytes, state_dict_bytes

__all__ = ["TrainConfig", "TrainResult", "train_model", "train_step"]

CKPT_MODEL = "ckpt_model.safetensors"
CKPT_OPTIM = "ckpt_optim.safetensors"
CKPT_STATE = "ckpt_state.json"


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of one training run.

    Attributes
    ----------
    arch, arch_kwargs
        Architecture name and options.
    epochs, batch_size
        Passes over the training patches and patches per step.
    lr, weight_decay
        AdamW peak learning rate (cosine decay, linear warm-up over ``warmup_steps``) and decay.
    seed
        Seeds initialisation, shuffling and augmentation.
    num_threads
        ``torch.set_num_threads`` during training.
    balance_classes
        Weight the loss by inverse class frequency.
    balance_sites
        Draw each epoch's patches with replacement, weighted by the inverse size of their
        ``(site, class)`` stratum, so every site contributes both classes equally (the loss is then
        unweighted). Off: a plain permutation.
    max_steps_per_epoch
        Cap on steps per epoch (``None``: all); for quick tests.
    """

    arch: str = "compact_cnn"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 12
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 30
    seed: int = 0
    num_threads: int = 2
    balance_classes: bool = True
    max_steps_per_epoch: int | None = None
    balance_sites: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass
class TrainResult:
    """Outcome of :func:`train_model`."""

    model: nn.Module
    history: list[dict[str, float]]
    seconds: float
    resumed_from_epoch: int


def _steps_per_epoch(n: int, cfg: TrainConfig) -> int:
    steps = n // cfg.batch_size + (1 if n % cfg.batch_size >= 2 else 0)
    return min(steps, cfg.max_steps_per_epoch) if cfg.max_steps_per_epoch else steps


def train_step(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    items: Sequence[tuple[torch.Tensor, int]],
    lr: float,
    diverged: Callable[[float], Exception],
) -> tuple[float, int]:
    """One optimiser step on a batch of ``(image, label)`` items at learning rate ``lr``.

    Parameters
    ----------
    model, opt, loss_fn
        The network (in train mode), its optimiser and the loss.
    items
        The batch.
    lr
        Learning rate set on every parameter group for this step.
    diverged
        Makes the error raised, from the loss value, when the loss is not finite (nothing is updated).

    Returns
    -------
    tuple[float, int]
        The batch's mean loss and its number of correct predictions.
    """
    x = torch.stack([it[0] for it in items])
    y = torch.tensor([int(it[1]) for it in items], dtype=torch.long)
    for group in opt.param_groups:
        group["lr"] = lr
    opt.zero_grad(set_to_none=True)
    logits = model(x)
    loss = loss_fn(logits, y)
    if not torch.isfinite(loss):
        raise diverged(loss.item())
    loss.backward()
    opt.step()
    return loss.item(), int((logits.argmax(1) == y).sum())


def _diverged(epoch: int, loss: float) -> ModelError:
    return ModelError(f"training diverged (loss {loss}) at epoch {epoch}", hint="lower --lr")


def _lr_at(step: int, total: int, cfg: TrainConfig) -> float:
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    frac = (step - cfg.warmup_steps) / max(1, total - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac)))


def _optim_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    out = {}
    for pid, st in opt.state_dict()["state"].items():
        for key, val in st.items():
            t = val if isinstance(val, torch.Tensor) else torch.tensor(val)
            out[f"{pid}.{key}"] = t.detach().cpu().contiguous().clone()
    return out


def _load_optim(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for name, t in tensors.items():
        pid, key = name.split(".", 1)
        state.setdefault(int(pid), {})[key] = t
    sd = opt.state_dict()
    sd["state"] = state
    opt.load_state_dict(sd)


def _save_checkpoint(
    ckpt_dir: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    epoch: int,
    step: int,
    history: list,
    cfg: TrainConfig,
) -> None:
    mbytes = state_dict_bytes(model)
    obytes = st_save(_optim_tensors(opt))
    write_bytes_atomic(ckpt_dir / CKPT_MODEL, mbytes)
    write_bytes_atomic(ckpt_dir / CKPT_OPTIM, obytes)
    state = {
        "epoch": epoch,
        "step": step,
        "history": history,
        "config": cfg.to_dict(),
        "model_sha256": sha256_bytes(mbytes),
        "optim_sha256": sha256_bytes(obytes),
    }
    write_json(ckpt_dir / CKPT_STATE, state, sort_keys=True)


def _load_checkpoint(
    ckpt_dir: Path, model: nn.Module, opt: torch.optim.Optimizer, cfg: TrainConfig
) -> tuple[int, int, list]:
    spath = ckpt_dir / CKPT_STATE
    try:
        state = json.loads(spath.read_text())
        saved_cfg = state["config"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"cannot read checkpoint state ({exc})", path=spath, hint="delete the checkpoint to restart"
        ) from exc
    if json.dumps(saved_cfg, sort_keys=True) != json.dumps(cfg.to_dict(), sort_keys=True):
        raise ModelError(
            "checkpoint was written with different training settings",
            path=spath,
            hint="resume with the same options, or use a fresh --out directory",
        )
    blobs = {}
    for fname, key in ((CKPT_MODEL, "model_sha256"), (CKPT_OPTIM, "optim_sha256")):
        data = (ckpt_dir / fname).read_bytes()
        if sha256_bytes(data) != state.get(key):
            raise ModelError("checkpoint file does not match its state (torn write?)", path=ckpt_dir / fname)
        blobs[fname] = st_load(data)
    try:
        model.load_state_dict(blobs[CKPT_MODEL], strict=True)
        _load_optim(opt, blobs[CKPT_OPTIM])
    except (RuntimeError, ValueError, KeyError) as exc:
        raise ModelError(f"checkpoint does not fit the model ({exc})", path=ckpt_dir) from exc
    return int(state["epoch"]), int(state["step"]), list(state["history"])


def _loss_fn(dataset: PatchDataset, config: TrainConfig) -> nn.CrossEntropyLoss:
    """Cross-entropy, weighted by inverse class frequency when ``config.balance_classes``."""
    counts = np.bincount(dataset.patch_labels, minlength=2).astype(np.float64)
    if config.balance_classes and counts.min() > 0 and not config.balance_sites:
        weights = torch.tensor(counts.sum() / (2 * counts), dtype=torch.float32)
    else:
        weights = torch.ones(2)
    return nn.CrossEntropyLoss(weight=weights)


def _epoch_order(dataset: PatchDataset, config: TrainConfig, gen: torch.Generator) -> list[int]:
    """The patch indices of one epoch: a permutation, or a stratum-balanced draw (``balance_sites``)."""
    n = len(dataset)
    if not config.balance_sites:
        return torch.randperm(n, generator=gen).tolist()
    strata = dataset.patch_strata
    counts: dict[tuple[str, int], int] = {}
    for key in strata:
        counts[key] = counts.get(key, 0) + 1
    weights = torch.tensor([1.0 / counts[key] for key in strata], dtype=torch.float64)
    return torch.multinomial(weights, n, replacement=True, generator=gen).tolist()


def _run_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    loss_fn: nn.Module,
    dataset: PatchDataset,
    config: TrainConfig,
    epoch: int,
    step: int,
    total: int,
    progress: bool,
) -> tuple[dict[str, float], int]:
    """One seeded pass (``epoch`` counts from 0, ``step`` is the global step so far).

    Returns
    -------
    tuple[dict[str, float], int]
        The epoch's stats (1-based ``epoch``, mean ``loss``, ``accuracy``, ``steps``) and the new step.
    """
    n = len(dataset)
    model.train()
    dataset.set_epoch(epoch)
    gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
    perm = _epoch_order(dataset, config, gen)
    loss_sum, correct, seen = 0.0, 0, 0
    bar = tqdm(
        range(_steps_per_epoch(n, config)),
        desc=f"epoch {epoch + 1}/{config.epochs}",
        unit="step",
        disable=not progress,
        leave=False,
    )
    for b in bar:
        idx = perm[b * config.batch_size : (b + 1) * config.batch_size]
        loss, right = train_step(
            model,
            opt,
            loss_fn,
            [dataset[i] for i in idx],
            _lr_at(step, total, config),
            functools.partial(_diverged, epoch + 1),
        )
        step += 1
        loss_sum += loss * len(idx)
        correct += right
        seen += len(idx)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct / seen:.3f}")
    bar.close()
    stats = {
        "epoch": epoch + 1,
        "loss": loss_sum / max(seen, 1),
        "accuracy": correct / max(seen, 1),
        "steps": step,
    }
    return stats, step


def train_model(
    dataset: PatchDataset,
    config: TrainConfig,
    checkpoint_dir: str | Path | None = None,
    resume: bool = False,
    pretrained: str | Path | None = None,
    progress: bool = True,
    on_epoch: Callable[[int, dict[str, float]], None] | None = None,
) -> TrainResult:
    """Train a classifier on ``dataset``.

    Parameters
    ----------
    dataset
        Training patches (with augmentation set on the dataset, if any).
    config
        Hyper-parameters.
    checkpoint_dir
        Where to checkpoint after every epoch (``None``: no checkpoints).
    resume
        Continue from the checkpoint in ``checkpoint_dir`` if one exists.
    pretrained
        Optional initial weights file for :func:`~pathxai.model.architectures.build_model`.
    progress
        Show tqdm progress bars.
    on_epoch
        Called with ``(epoch, stats)`` after each epoch.

    Returns
    -------
    TrainResult
        The trained model (eval mode), per-epoch history, wall time and the resume epoch.
    """
    if len(dataset) < 2:
        raise ValueError(f"need at least 2 training patches, got {len(dataset)}")
    if config.epochs < 1 or config.batch_size < 2:
        raise ValueError("epochs must be >= 1 and batch_size >= 2")
    old_threads = torch.get_num_threads()
    torch.set_num_threads(config.num_threads)
    try:
        torch.manual_seed(config.seed)
        model = build_model(config.arch, num_classes=2, pretrained=pretrained, **config.arch_kwargs)
        opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        loss_fn = _loss_fn(dataset, config)
        n = len(dataset)
        spe = _steps_per_epoch(n, config)
        total = spe * config.epochs
        start_epoch, step = 0, 0
        history: list[dict[str, float]] = []
        ckpt = Path(checkpoint_dir) if checkpoint_dir is not None else None
        if ckpt is not None and resume and (ckpt / CKPT_STATE).is_file():
            start_epoch, step, history = _load_checkpoint(ckpt, model, opt, config)
        resumed = start_epoch
        t0 = time.perf_counter()
        for epoch in range(start_epoch, config.epochs):
            stats, step = _run_epoch(model, opt, loss_fn, dataset, config, epoch, step, total, progress)
            history.append(stats)
            if ckpt is not None:
                _save_checkpoint(ckpt, model, opt, epoch + 1, step, history, config)
            if on_epoch is not None:
                on_epoch(epoch + 1, stats)
        model.eval()
        return TrainResult(
            model=model, history=history, seconds=time.perf_counter() - t0, resumed_from_epoch=resumed
        )
    finally:
        torch.set_num_threads(old_threads)
