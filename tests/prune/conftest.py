"""Small real networks for the pruning tests (Conv-BN-ReLU stacks and a residual net)."""

from __future__ import annotations

import pytest
import torch
from torch import nn


def conv_bn_net(widths: tuple[int, ...] = (8, 12, 16), num_classes: int = 2) -> nn.Sequential:
    """A VGG-style Conv-BN-ReLU-MaxPool stack with global average pooling and a linear head."""
    layers: list[nn.Module] = []
    c = 3
    for w in widths:
        layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
        c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c, num_classes)]
    return nn.Sequential(*layers)


def randomise_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial statistics and affine parameters (as after training)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(0.1 * torch.randn(n, generator=g))
    return model.eval()


@pytest.fixture
def small_net() -> nn.Module:
    torch.manual_seed(0)
    return randomise_bn(conv_bn_net())


@pytest.fixture
def reference() -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(4, 3, 32, 32, generator=g), torch.tensor([0, 1, 0, 1]))]
