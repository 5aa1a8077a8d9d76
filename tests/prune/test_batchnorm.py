"""BatchNorm re-estimation after pruning: statistics recomputed by hand on small networks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from pathxai.prune.batchnorm import batchnorm_layers, recalibrate_batchnorm
from tests.prune.conftest import conv_bn_net, randomise_bn


def _first_bn_input(model: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    return model[0](x)


def test_running_stats_are_the_average_of_the_batches_statistics() -> None:
    torch.manual_seed(0)
    model = randomise_bn(conv_bn_net())
    g = torch.Generator().manual_seed(3)
    batches = [torch.randn(4, 3, 16, 16, generator=g) + 0.5, torch.randn(6, 3, 16, 16, generator=g) - 0.2]
    with torch.no_grad():
        feats = [_first_bn_input(model, b) for b in batches]
    expected_mean = torch.stack([f.mean(dim=(0, 2, 3)) for f in feats]).mean(0)
    expected_var = torch.stack([f.transpose(0, 1).flatten(1).var(1, unbiased=True) for f in feats]).mean(0)
    weights = {k: v.clone() for k, v in model.named_parameters()}
    n = recalibrate_batchnorm(model, batches)
    bn = model[1]
    assert n == 10
    torch.testing.assert_close(bn.running_mean, expected_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(bn.running_var, expected_var, rtol=1e-5, atol=1e-6)
    assert not model.training and not bn.training  # mode restored
    assert all(m.momentum == 0.1 for m in batchnorm_layers(model))  # momentum restored
    for k, v in model.named_parameters():
        assert torch.equal(v, weights[k]), k  # no weight changes


def test_one_batch_normalises_that_batch() -> None:
    torch.manual_seed(1)
    model = randomise_bn(conv_bn_net())
    x = torch.randn(8, 3, 16, 16) * 2 + 1
    recalibrate_batchnorm(model, [x])
    bn = model[1]
    with torch.no_grad():
        z = (bn(model[0](x)) - bn.bias[None, :, None, None]) / bn.weight[None, :, None, None]
    torch.testing.assert_close(z.mean(dim=(0, 2, 3)), torch.zeros(bn.num_features), atol=1e-4, rtol=0)


def test_dropout_stays_off_and_training_mode_is_kept() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Dropout(0.9), nn.Flatten(1))
    seen: list[bool] = []
    model[2].register_forward_hook(lambda m, i, o: seen.append(m.training))
    model.train()
    recalibrate_batchnorm(model, [torch.randn(3, 3, 8, 8)])
    assert seen == [False] and model.training and model[1].training


def test_nothing_to_do_and_bad_batches() -> None:
    plain = nn.Sequential(nn.Conv2d(3, 4, 3))
    assert recalibrate_batchnorm(plain, [torch.randn(2, 3, 8, 8)]) == 0
    model = conv_bn_net()
    before = model[1].running_mean.clone()
    assert recalibrate_batchnorm(model, []) == 0
    assert torch.equal(model[1].running_mean, before)
    with pytest.raises(ValueError, match="two samples"):
        recalibrate_batchnorm(model, [torch.randn(1, 3, 8, 8)])
