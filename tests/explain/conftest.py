"""Small real networks for the explain tests: a compact-CNN-shaped stack, ResNets, zero-bias variants."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn


def vgg_net(
    widths: tuple[int, ...] = (8, 12, 16), convs: int = 1, bias: bool = False, eps: float = 1e-5
) -> nn.Module:
    """Conv-BN-ReLU (x convs) + MaxPool stages, global average pool, Flatten, Linear: the compact CNN's shape."""
    layers: list[nn.Module] = []
    c = 3
    for w in widths:
        for _ in range(convs):
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=bias), nn.BatchNorm2d(w, eps=eps), nn.ReLU()]
            c = w
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c, 2)]
    return nn.Sequential(*layers)


def randomise_bn(model: nn.Module, seed: int = 0, scale: float = 1.0, zero_shift: bool = False) -> nn.Module:
    """Give every batch norm non-trivial statistics (as after training); ``zero_shift`` keeps fused biases 0."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(0.0 if zero_shift else scale * torch.randn(n, generator=g))
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + torch.rand(n, generator=g))
            m.bias.data.copy_(torch.zeros(n) if zero_shift else scale * torch.randn(n, generator=g))
    return model.eval()


def zero_biases(model: nn.Module) -> nn.Module:
    """Zero every bias and batch-norm shift so LRP relevance must be conserved."""
    randomise_bn(model, zero_shift=True)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
    return model.eval()


def set_bn_eps(model: nn.Module, eps: float) -> nn.Module:
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = eps
    return model


def tv_resnet18() -> nn.Module:
    torch.manual_seed(0)
    return torchvision.models.resnet18(num_classes=2).eval()


@pytest.fixture
def vgg() -> nn.Module:
    torch.manual_seed(0)
    return randomise_bn(vgg_net(), scale=0.1)


@pytest.fixture
def images() -> torch.Tensor:
    return torch.randn(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
