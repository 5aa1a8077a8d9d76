"""Channel plans: recorded while pruning, rebuilt from a fresh model, refused when they do not fit."""

from __future__ import annotations

import copy

import pytest
import torch
import torchvision
from torch import nn

from pathxai.errors import PruneError
from pathxai.model import build_model
from pathxai.model.surgery import ChannelTracker, apply_channel_plan, build_dependency_graph
from pathxai.prune import make_importance, prune_model

from .conftest import conv_bn_net, randomise_bn


def _roundtrip(base: nn.Module, fresh: nn.Module, size: int, ratio: float = 0.4) -> dict[str, list[int]]:
    pruned = copy.deepcopy(base)
    plan = prune_model(pruned, make_importance("random", pruned, seed=3), ratio, input_size=size)
    apply_channel_plan(fresh, plan, size)
    fresh.load_state_dict(pruned.state_dict())
    fresh.eval()
    pruned.eval()
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(fresh(x), pruned(x))
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in base.parameters())
    return plan


def test_plan_rebuilds_conv_bn_net_exactly() -> None:
    torch.manual_seed(0)
    base = randomise_bn(conv_bn_net())
    plan = _roundtrip(base, conv_bn_net(), 32)
    assert set(plan) == {"0", "4", "8"}  # the head "14" is never pruned
    assert all(len(v) == len(set(v)) and v == sorted(v) for v in plan.values())


def test_plan_rebuilds_torchvision_resnet18_with_residual_coupling() -> None:
    torch.manual_seed(0)
    base = randomise_bn(torchvision.models.resnet18(num_classes=2))
    plan = _roundtrip(base, torchvision.models.resnet18(num_classes=2), 32)
    # the stem and the second convolution of every first-stage block are summed: same channels
    assert plan["conv1"] == plan["layer1.0.conv2"] == plan["layer1.1.conv2"]
    assert plan["layer2.0.downsample.0"] == plan["layer2.0.conv2"] == plan["layer2.1.conv2"]


def test_plan_rebuilds_pathxai_resnet18_with_sum_module() -> None:
    torch.manual_seed(0)
    base = randomise_bn(build_model("resnet18", width=8))
    plan = _roundtrip(base, build_model("resnet18", width=8), 32)
    assert plan["conv1"] == plan["layer1.0.conv2"] == plan["layer1.1.conv2"]
    assert plan["layer4.0.downsample.0"] == plan["layer4.1.conv2"]


def test_tracker_composes_with_an_earlier_plan() -> None:
    torch.manual_seed(0)
    base = randomise_bn(conv_bn_net())
    once = copy.deepcopy(base)
    first = prune_model(once, make_importance("weight", once), 0.25, input_size=32)
    twice = copy.deepcopy(once)
    second = prune_model(twice, make_importance("weight", twice), 0.25, input_size=32, base_plan=first)
    for name, kept in second.items():
        assert set(kept) <= set(first[name])
    fresh = apply_channel_plan(conv_bn_net(), second, 32)
    fresh.load_state_dict(twice.state_dict())


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ({"nope": [0]}, "does not have"),
        ({"1": [0]}, "BatchNorm2d"),
        ({"0": []}, "keeps no channel"),
        ({"0": [0, 99]}, "has only 8"),
        ({"0": [1, 1]}, "repeats"),
        ({"14": [0]}, "logits"),
        ({"0": ["a"]}, "not a list of integers"),
    ],
)
def test_bad_channel_plans_are_refused(plan: dict, message: str) -> None:
    with pytest.raises(PruneError, match=message):
        apply_channel_plan(conv_bn_net(), plan, 32)


def test_contradictory_residual_plan_is_refused() -> None:
    model = torchvision.models.resnet18(num_classes=2)
    with pytest.raises(PruneError, match="residual"):
        apply_channel_plan(model, {"conv1": [0, 1, 2], "layer1.0.conv2": [0, 1, 3]}, 32)


def test_bad_input_size_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="input_size"):
        apply_channel_plan(conv_bn_net(), {"0": [0]}, 0)


def test_tracker_rejects_plan_of_other_width() -> None:
    with pytest.raises(PruneError, match="do not belong together"):
        ChannelTracker(conv_bn_net(), base_indices={"0": [0, 1]})


def test_dependency_graph_keeps_training_mode() -> None:
    model = conv_bn_net().train()
    build_dependency_graph(model, 32)
    assert model.training
