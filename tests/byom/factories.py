"""A user's own model factory, for ``python:tests.byom.factories:resnet18`` specs."""

from __future__ import annotations

import torchvision
from torch import nn


def resnet18() -> nn.Module:
    """A two-class torchvision ResNet-18 built by "the user's code"."""
    return torchvision.models.resnet18(num_classes=2)
