"""Re-estimate BatchNorm running statistics of a pruned network on unlabelled patches.

Removing channels changes what every later BatchNorm sees, but its running mean and variance still
describe the unpruned network; without fine-tuning this mismatch, not the ranking, is what breaks a
pruned network at high ratios. :func:`recalibrate_batchnorm` resets the statistics and averages the
batch statistics of a few forward passes (torch's cumulative average, ``momentum=None``): no labels,
no gradient, no weight changes.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

__all__ = ["batchnorm_layers", "recalibrate_batchnorm"]


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
