"""Pruning criteria: one score per channel, dead channels ranked lowest and removable losslessly."""

from __future__ import annotations

import copy

import pytest
import torch
import torch_pruning as tp
from torch import nn

from pathxai.explain.filters import FILTER_METHODS, filter_scores
from pathxai.model import build_model
from pathxai.model.surgery import build_dependency_graph
from pathxai.prune import CRITERIA, DataImportance, PruningPlan, make_importance, prune_model

from .conftest import conv_bn_net, randomise_bn

DEAD = (1, 5)  # dead output channels of the first convolution ("0")


def _groups(model: nn.Module, size: int) -> list[tp.Group]:
    graph = build_dependency_graph(model, size)
    return list(graph.get_all_groups(root_module_types=[nn.Conv2d]))


@pytest.mark.parametrize("name", sorted(CRITERIA))
def test_every_criterion_scores_every_channel_of_every_group(name: str, small_net, reference) -> None:
    opts = {"ig_steps": 4} if name == "ig" else {}
    imp = make_importance(name, small_net, reference, **opts)
    for group in _groups(small_net, 32):
        scores = imp(group)
        assert scores.shape == (len(group[0].idxs),)
        assert torch.isfinite(scores).all()
        assert (scores >= 0).all()


@pytest.mark.parametrize("name", ["lrp", "ig", "gradient", "taylor", "weight"])
def test_residual_groups_get_one_score_per_shared_channel(name: str) -> None:
    torch.manual_seed(0)
    model = randomise_bn(build_model("resnet18", width=4))
    ref = [(torch.randn(2, 3, 32, 32), torch.tensor([0, 1]))]
    imp = make_importance(name, model, ref, ig_steps=2) if name == "ig" else make_importance(name, model, ref)
    groups = _groups(model, 32)
    stem = next(g for g in groups if g[0].dep.target.module is model.conv1)
    coupled = {d.target.module for d, _ in stem if isinstance(d.target.module, nn.Conv2d)}
    assert model.layer1[0].conv2 in coupled
    assert imp(stem).shape == (4,)
    if isinstance(imp, DataImportance):  # coupled layers' scores are summed
        expected = sum(imp.scores[m] for m in ("conv1", "layer1.0.conv2", "layer1.1.conv2"))
        torch.testing.assert_close(imp(stem).double(), expected, rtol=1e-5, atol=1e-8)


def test_random_criterion_is_seeded(small_net) -> None:
    group = _groups(small_net, 32)[0]
    a = make_importance("random", small_net, seed=7)(group)
    b = make_importance("random", small_net, seed=7)(group)
    assert torch.equal(a, b)


def test_unknown_criterion_and_missing_reference_are_value_errors(small_net) -> None:
    with pytest.raises(ValueError, match="unknown pruning criterion"):
        make_importance("magic", small_net)
    with pytest.raises(ValueError, match="reference"):
        make_importance("lrp", small_net, None)


def _dead_channel_net() -> nn.Module:
    torch.manual_seed(0)
    model = randomise_bn(conv_bn_net())
    conv, bn = model[0], model[1]
    with torch.no_grad():
        for c in DEAD:
            conv.weight[c] = 0.0  # the filter sees nothing ...
            bn.running_mean[c] = 0.0
            bn.bias[c] = 0.0  # ... and its BatchNorm adds nothing: output exactly 0
    return model


def test_lrp_gives_dead_channels_zero_relevance_and_ranks_them_lowest(reference) -> None:
    model = _dead_channel_net()
    rel = filter_scores(model, *reference[0], method="lrp", layers=["0"])["0"]
    assert torch.all(rel[:, list(DEAD)] == 0)
    alive = [c for c in range(8) if c not in DEAD]
    assert torch.all(rel[:, alive].abs().sum(0) > 0)
    imp = make_importance("lrp", model, reference)
    group = next(g for g in _groups(model, 32) if g[0].dep.target.module is model[0])
    scores = imp(group)
    assert set(torch.argsort(scores)[: len(DEAD)].tolist()) == set(DEAD)


@pytest.mark.parametrize("steps", [1, 2])
def test_pruning_zero_relevance_channels_keeps_logits_and_drops_params(reference, steps: int) -> None:
    model = _dead_channel_net()
    pruned = copy.deepcopy(model)
    imp = make_importance("lrp", pruned, reference)
    plan = prune_model(pruned, imp, 0.0, input_size=32, layer_ratios={"0": 0.25}, iterative_steps=steps)
    assert plan == {"0": [c for c in range(8) if c not in DEAD]}
    assert pruned[0].out_channels == 6 and pruned[1].num_features == 6 and pruned[4].in_channels == 6
    n_before = sum(p.numel() for p in model.parameters())
    n_after = sum(p.numel() for p in pruned.parameters())
    assert n_after == n_before - len(DEAD) * (3 * 9 + 2 + 12 * 9)
    x = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(pruned.eval()(x), model(x), rtol=0, atol=1e-6)


def test_filter_scores_cover_methods_and_shapes(small_net, reference) -> None:
    x, y = reference[0]
    for method in FILTER_METHODS:
        out = filter_scores(small_net, x, y, method=method, ig_steps=4)
        assert set(out) == {"0", "4", "8", "14"}
        assert out["4"].shape == (4, 12) and out["14"].shape == (4, 2)


def test_ig_conductance_is_complete(small_net, reference) -> None:
    """Layer conductance of the logit layer sums to f(x) - f(baseline) (exact for the last layer)."""
    x, y = reference[0]
    cond = filter_scores(small_net, x, y, method="ig", layers=["14"], ig_steps=8)["14"]
    with torch.no_grad():
        at_x = small_net(x).gather(1, y[:, None])[:, 0]
        diff = at_x - small_net(torch.zeros_like(x)).gather(1, y[:, None])[:, 0]
    torch.testing.assert_close(cond.sum(1), diff, rtol=1e-4, atol=1e-5)


def test_lrp_relevance_is_conserved_through_the_head(small_net, reference) -> None:
    """With the epsilon rule on the head, the last conv's relevance sums to (z - b) / z of the target."""
    x, y = reference[0]
    rel = filter_scores(small_net, x, y, method="lrp", layers=["8"])["8"]
    with torch.no_grad():
        z = small_net(x).gather(1, y[:, None])[:, 0]
    bias = small_net[14].bias.detach()[y]
    torch.testing.assert_close(rel.sum(1), (z - bias) / z, rtol=1e-3, atol=1e-4)


def test_filter_scores_leave_parameters_unchanged(small_net, reference) -> None:
    before = {k: v.clone() for k, v in small_net.state_dict().items()}
    filter_scores(small_net, *reference[0], method="lrp")
    for k, v in small_net.state_dict().items():
        assert torch.equal(v, before[k]), k


def test_filter_scores_refuse_training_mode(small_net, reference) -> None:
    from pathxai.errors import ExplainError

    with pytest.raises(ExplainError, match="eval"):
        filter_scores(small_net.train(), *reference[0])


def test_precomputed_scores_are_reused_and_refreshed_after_a_step(small_net, reference) -> None:
    first = make_importance("lrp", small_net, reference)
    first.refresh()
    net = copy.deepcopy(small_net)
    reused = make_importance("lrp", net, reference, scores=first.scores)
    assert reused.fresh
    group = next(g for g in _groups(net, 32) if g[0].dep.target.module is net[0])
    torch.testing.assert_close(
        reused(group),
        first(next(g for g in _groups(small_net, 32) if g[0].dep.target.module is small_net[0])),
    )
    prune_model(net, reused, 0.5, input_size=32, iterative_steps=2)
    assert not reused.fresh and reused.scores["0"].numel() == 6  # recomputed for step 2


@pytest.mark.parametrize("arch", ["conv_bn", "resnet18"])
def test_fast_and_stock_lrp_filter_relevance_agree(arch: str) -> None:
    torch.manual_seed(0)
    model = randomise_bn(conv_bn_net() if arch == "conv_bn" else build_model("resnet18", width=4))
    x, y = torch.randn(3, 3, 32, 32), torch.tensor([0, 1, 1])
    fast = filter_scores(model, x, y, method="lrp")
    stock = filter_scores(model, x, y, method="lrp", fast=False)
    assert set(fast) == set(stock)
    for name in fast:
        scale = float(stock[name].abs().max()) + 1e-12
        torch.testing.assert_close(fast[name] / scale, stock[name] / scale, rtol=0, atol=1e-4)


def _loud_but_unheard_net(channel: int) -> nn.Sequential:
    """``conv_bn_net`` whose first-layer filter ``channel`` has by far the largest weights, while the
    next convolution reads nothing from it (its incoming weights from ``channel`` are zero)."""
    torch.manual_seed(0)
    model = randomise_bn(conv_bn_net())
    with torch.no_grad():
        model[0].weight[channel] *= 10.0
        model[4].weight[:, channel] = 0.0
    return model


@pytest.mark.parametrize("channel", [2, 6])
def test_lrp_removes_a_large_filter_nobody_listens_to_and_weight_norm_keeps_it(
    reference, channel: int
) -> None:
    model = _loud_but_unheard_net(channel)
    norms = model[0].weight.detach().flatten(1).norm(dim=1)
    assert int(norms.argmax()) == channel  # the largest filter of the layer by weight norm
    kept = {}
    for criterion in ("weight", "lrp"):
        plan = PruningPlan.compute(model, criterion, 0.0, reference, input_size=32, layer_ratios={"0": 0.125})
        kept[criterion] = plan.channels["0"]
        assert len(kept[criterion]) == 7  # one of the 8 filters removed
    assert channel in kept["weight"]
    assert channel not in kept["lrp"]
    rel = filter_scores(model, *reference[0], method="lrp", layers=["0"])["0"]
    assert torch.all(rel[:, channel] == 0) and torch.all(rel.abs().sum(0)[kept["lrp"]] > 0)
