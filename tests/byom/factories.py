"""A user's own model factory, for ``python:tests.byom.factories:resnet18`` specs."""

from __future__ import annotations

import torchvision
from torch import nn


def resnet18() -> nn.Module:
    """A two-class torchvision ResNet-18 built by "the user's code"."""
    return torchvision.models.resnet18(num_classes=2)


def layernorm_cnn() -> nn.Module:
    """A small two-class CNN with a ConvNeXt LayerNorm2d, a layer LRP has no rule for yet."""
    from torchvision.models.convnext import LayerNorm2d

    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        LayerNorm2d(8),
        nn.GELU(),
        nn.Conv2d(8, 16, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(16, 2),
    )
