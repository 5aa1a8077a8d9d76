"""Re-estimate BatchNorm running statistics of a pruned network on unlabelled patches.

Removing channels changes what every later BatchNorm sees, but its running mean and variance still
describe the unpruned network; without fine-tuning this mismatch, not the ranking, is what breaks a
pruned network at high ratios. :func:`recalibrate_batchnorm` resets the statistics and averages the
batch statistics of a few forward passes (torch's cumulative average, ``momentum=None``): no labels,
no gradient, no weight changes. :class:`ShiftedBatchNorm` instead keeps the trained statistics and
moves them by the change pruning causes on the reference tiles.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = [
    "BN_MODES",
    "ShiftedBatchNorm",
    "batchnorm_layers",
    "recalibrate_batchnorm",
    "reference_statistics",
]

#: BatchNorm handling after a pruning step: keep the statistics, re-estimate them, or shift them.
BN_MODES = ("none", "full", "shift")


def batchnorm_layers(model: nn.Module) -> list[_BatchNorm]:
    """The BatchNorm layers of ``model`` that track running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: Iterable[torch.Tensor]) -> int:
    """Replace every BatchNorm's running mean/variance by the average over ``batches``.

    Only the BatchNorm layers run in training mode (dropout and the like stay in eval mode); each
    layer's statistics are reset and re-accumulated as a cumulative average over the batches. Weights,
    biases and the model's mode are unchanged.

    Parameters
    ----------
    model
        The network (modified in place: running statistics only).
    batches
        Preprocessed input batches ``(N, 3, H, W)``; labels are not needed.

    Returns
    -------
    int
        Number of samples the statistics were estimated on (0: nothing changed).

    Raises
    ------
    ValueError
        A batch of one sample (BatchNorm cannot estimate a variance from it).
    """
    layers = batchnorm_layers(model)
    inputs = [b for b in batches if int(b.shape[0]) > 0]
    if not layers or not inputs:
        return 0
    if any(int(b.shape[0]) < 2 for b in inputs):
        raise ValueError("BatchNorm re-estimation needs batches of at least two samples")
    was_training = model.training
    momenta = [m.momentum for m in layers]
    try:
        model.eval()
        for m in layers:
            m.reset_running_stats()
            m.momentum = None
            m.train()
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        for x in inputs:
            model(x.to(device))
    finally:
        for m, momentum in zip(layers, momenta, strict=True):
            m.momentum = momentum
        model.train(was_training)
    return sum(int(b.shape[0]) for b in inputs)


def _running(m: _BatchNorm) -> tuple[torch.Tensor, torch.Tensor]:
    """The running mean and variance buffers of a tracking BatchNorm."""
    mean, var = m.running_mean, m.running_var
    if mean is None or var is None:
        raise ValueError("the BatchNorm layer does not track running statistics")
    return mean, var


def _moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and unbiased variance of a BatchNorm input (channels on axis 1)."""
    dims = [d for d in range(x.ndim) if d != 1]
    return x.mean(dim=dims), x.var(dim=dims, unbiased=True)


@torch.no_grad()
def reference_statistics(
    model: nn.Module, batches: Iterable[torch.Tensor]
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Per BatchNorm layer (by name): the mean over ``batches`` of its input's batch mean and variance.

    The same estimator as :func:`recalibrate_batchnorm` (equal weight per batch, every BatchNorm
    normalising with its batch's statistics, so a layer's numbers do not depend on the stored
    statistics of the layers before it); the stored statistics are not changed.
    """
    names: dict[_BatchNorm, str] = {
        m: n for n, m in model.named_modules() if isinstance(m, _BatchNorm) and m.track_running_stats
    }
    sums: dict[str, list[torch.Tensor]] = {}
    count = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        mean, var = _moments(inputs[0].detach().double())
        name = names[cast(_BatchNorm, module)]
        if name in sums:
            sums[name][0] += mean
            sums[name][1] += var
        else:
            sums[name] = [mean, var]

    handles = [m.register_forward_pre_hook(hook) for m in names]
    was_training = model.training
    try:
        model.eval()
        for m in names:  # batch statistics in the forward pass, running statistics untouched
            m.train()
            m.track_running_stats = False
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        for x in batches:
            if int(x.shape[0]) < 2:
                raise ValueError("BatchNorm statistics need batches of at least two samples")
            model(x.to(device))
            count += 1
    finally:
        for h in handles:
            h.remove()
        for m in names:
            m.track_running_stats = True
        model.train(was_training)
    return {n: (s[0] / count, s[1] / count) for n, s in sums.items()}


class ShiftedBatchNorm:
    """Correct the unpruned network's BatchNorm statistics by the change pruning causes on reference tiles.

    Plain re-estimation (:func:`recalibrate_batchnorm`) replaces the running statistics, which the
    network learnt on all training patches, by those of a handful of reference tiles: even without
    pruning that costs accuracy when the tiles are not representative. This estimator keeps the
    trained statistics and moves them only by what pruning changed on the tiles:
    ``mean = running_mean + (pruned_mean - unpruned_mean)`` and
    ``var = running_var * pruned_var / unpruned_var``, per surviving channel (no labels, no gradient).
    At ratio 0 it leaves the network unchanged.

    Parameters
    ----------
    model
        The *unpruned* network (read, not changed).
    batches
        Unlabelled reference input batches (the same ones are used after pruning).

    Notes
    -----
    Call :meth:`observe` with every Torch-Pruning group before it is pruned (it follows which
    channels of each BatchNorm survive), then :meth:`apply` on the pruned network.
    """

    def __init__(self, model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
        self.batches = list(batches)
        self.reference = reference_statistics(model, self.batches)
        self.base = {
            n: tuple(t.detach().double().clone() for t in _running(m))
            for n, m in model.named_modules()
            if isinstance(m, _BatchNorm) and m.track_running_stats and n in self.reference
        }
        self.kept = {n: torch.arange(mean.numel()) for n, (mean, _) in self.base.items()}

    def observe(self, model: nn.Module, group: Any) -> None:
        """Record the BatchNorm channels a Torch-Pruning ``group`` is about to remove from ``model``."""
        names = {m: n for n, m in model.named_modules()}
        removed: dict[str, set[int]] = {}
        for dep, idxs in group:
            name = names.get(dep.target.module)
            if name is not None and name in self.kept and isinstance(dep.target.module, _BatchNorm):
                removed.setdefault(name, set()).update(int(i) for i in idxs)
        for name, gone in removed.items():
            kept = self.kept[name]
            self.kept[name] = kept[[i for i in range(kept.numel()) if i not in gone]]

    @torch.no_grad()
    def apply(self, model: nn.Module) -> int:
        """Set the pruned ``model``'s BatchNorm statistics; return the number of layers changed."""
        now = reference_statistics(model, self.batches)
        changed = 0
        for name, m in model.named_modules():
            if name not in self.base or name not in now or not isinstance(m, _BatchNorm):
                continue
            idx = self.kept[name]
            if idx.numel() != m.num_features:
                raise ValueError(
                    f"BatchNorm {name!r} has {m.num_features} channels but {idx.numel()} were tracked"
                )
            base_mean, base_var = self.base[name]
            ref_mean, ref_var = self.reference[name]
            new_mean, new_var = now[name]
            eps = float(m.eps)
            mean = base_mean[idx] + (new_mean - ref_mean[idx])
            var = base_var[idx] * (new_var + eps) / (ref_var[idx] + eps)
            running_mean, running_var = _running(m)
            running_mean.copy_(mean.to(running_mean.dtype))
            running_var.copy_(var.clamp_min(0).to(running_var.dtype))
            changed += 1
        return changed
