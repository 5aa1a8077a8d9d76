"""Fixtures for bring-your-own-model tests: randomly initialised torchvision/timm networks saved the usual ways."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision
from torch import nn


def tv_model(name: str, num_classes: int = 2, **kwargs: object) -> nn.Module:
    """A seeded torchvision model in eval mode with non-trivial batch-norm statistics."""
    torch.manual_seed(0)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kwargs).eval()
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return model


@pytest.fixture(scope="session")
def resnet18_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Path]:
    """A torchvision ResNet-18 (2 classes) and a folder holding its weights as .pt, .safetensors and a checkpoint."""
    from safetensors.torch import save_file

    model = tv_model("resnet18")
    folder = tmp_path_factory.mktemp("weights")
    state = model.state_dict()
    torch.save(state, folder / "plain.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "plain.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 7}, folder / "ckpt.pth")
    return model, folder
