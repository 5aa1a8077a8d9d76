"""Fine-tuning a pruned network recovers a learnable signal and leaves the model in eval mode."""

from __future__ import annotations

import copy

import pytest
import torch

from pathxai.errors import PruneError
from pathxai.prune import PruningPlan
from pathxai.prune.finetune import finetune

from .conftest import conv_bn_net


class _Bright(torch.utils.data.Dataset):
    """Label 1 when the red channel is brighter than the green one."""

    def __init__(self, n: int = 64) -> None:
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(n, 3, 16, 16, generator=g)
        self.y = (self.x[:, 0].mean((1, 2)) > self.x[:, 1].mean((1, 2))).long()
        self.patch_labels = self.y.numpy()

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], int(self.y[i])


def _loss(model: torch.nn.Module, data: _Bright) -> float:
    with torch.no_grad():
        return float(torch.nn.functional.cross_entropy(model.eval()(data.x), data.y))


def test_finetune_lowers_the_loss_of_a_pruned_net() -> None:
    torch.manual_seed(0)
    data = _Bright()
    _, pruned = PruningPlan.compute_and_prune(conv_bn_net(), "weight", 0.5, input_size=16)
    before = _loss(pruned, data)
    history = finetune(pruned, data, 8, lr=5e-3, batch_size=16, seed=0)
    assert len(history) == 8 and not pruned.training
    assert _loss(pruned, data) < before


def test_finetune_is_reproducible_and_zero_epochs_is_a_no_op() -> None:
    data = _Bright()
    torch.manual_seed(0)
    base = conv_bn_net()
    a, b = copy.deepcopy(base), copy.deepcopy(base)
    finetune(a, data, 1, batch_size=16, seed=3)
    finetune(b, data, 1, batch_size=16, seed=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)
    c = copy.deepcopy(base)
    assert finetune(c, data, 0) == []
    assert all(torch.equal(p, q) for p, q in zip(c.parameters(), base.parameters(), strict=True))


def test_finetune_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        finetune(conv_bn_net(), _Bright(), -1)
    with pytest.raises(PruneError, match="at least 2"):
        finetune(conv_bn_net(), _Bright(1), 1)
