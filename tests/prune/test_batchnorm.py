"""BatchNorm re-estimation after pruning: statistics recomputed by hand on small networks."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from pathxai.prune import WeightNormImportance, prune_model
from pathxai.prune.batchnorm import (
    ShiftedBatchNorm,
    batchnorm_layers,
    recalibrate_batchnorm,
    reference_statistics,
)
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


def _tiles(seed: int = 4) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(5, 3, 32, 32, generator=g) * 1.5 + 0.3, torch.randn(5, 3, 32, 32, generator=g)]


def test_reference_statistics_match_the_recalibrated_running_statistics() -> None:
    torch.manual_seed(2)
    model = randomise_bn(conv_bn_net())
    stored = [m.running_mean.clone() for m in batchnorm_layers(model)]
    stats = reference_statistics(model, _tiles())
    assert all(torch.equal(a, m.running_mean) for a, m in zip(stored, batchnorm_layers(model), strict=True))
    assert all(m.track_running_stats and not m.training for m in batchnorm_layers(model))
    recalibrate_batchnorm(model, _tiles())
    for name in ("1", "5", "9"):
        bn = dict(model.named_modules())[name]
        torch.testing.assert_close(stats[name][0].float(), bn.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(stats[name][1].float(), bn.running_var, rtol=1e-5, atol=1e-6)


def test_shift_keeps_an_unpruned_network_and_shifts_a_pruned_one_by_the_change() -> None:
    torch.manual_seed(3)
    model = randomise_bn(conv_bn_net())
    tiles = _tiles()
    shift = ShiftedBatchNorm(model, tiles)
    same = copy.deepcopy(model)
    assert shift.apply(same) == 3  # nothing pruned: statistics unchanged
    for a, b in zip(batchnorm_layers(model), batchnorm_layers(same), strict=True):
        torch.testing.assert_close(a.running_mean, b.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-5, atol=1e-5)

    pruned = copy.deepcopy(model)
    plan = prune_model(pruned, WeightNormImportance(), 0.5, input_size=32, on_group=shift.observe)
    assert shift.kept["1"].tolist() == plan["0"] and shift.kept["5"].tolist() == plan["4"]
    reference, now = reference_statistics(model, tiles), reference_statistics(pruned, tiles)
    shift.apply(pruned)
    first, second = dict(pruned.named_modules())["1"], dict(pruned.named_modules())["5"]
    keep0, keep1 = plan["0"], plan["4"]
    # the first BatchNorm's input channels are the unpruned ones: its statistics stay the trained ones
    torch.testing.assert_close(first.running_mean, model[1].running_mean[keep0], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(first.running_var, model[1].running_var[keep0], rtol=1e-4, atol=1e-6)
    # the second one's input changed: trained statistics moved by the change on the tiles
    expected_mean = model[5].running_mean.double()[keep1] + now["5"][0] - reference["5"][0][keep1]
    ratio = (now["5"][1] + model[5].eps) / (reference["5"][1][keep1] + model[5].eps)
    expected_var = model[5].running_var.double()[keep1] * ratio
    torch.testing.assert_close(second.running_mean.double(), expected_mean, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(second.running_var.double(), expected_var, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(second.running_mean, model[5].running_mean[keep1])
