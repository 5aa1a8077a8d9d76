"""PruningPlan: compute on a copy, JSON round trip, apply, save/load as a model, clear errors."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from torch import nn

from pathxai.errors import PruneError
from pathxai.model import ModelCard, build_model, load_model, save_model
from pathxai.prune import PruningPlan, compose_plans

from .conftest import conv_bn_net, randomise_bn


def _card(arch: str, plan: dict[str, list[int]] | None, **kw) -> ModelCard:
    return ModelCard(
        arch=arch,
        classes=("non-tumour", "tumour"),
        tumour_index=1,
        input_size=32,
        mpp=1.24,
        mean=(0.5, 0.5, 0.5),
        std=(0.25, 0.25, 0.25),
        arch_kwargs=kw,
        channel_plan=plan,
    )


def test_compute_leaves_model_unchanged_and_records_sizes(small_net, reference) -> None:
    before = {k: v.clone() for k, v in small_net.state_dict().items()}
    plan, pruned = PruningPlan.compute_and_prune(small_net, "lrp", 0.5, reference, input_size=32)
    for k, v in small_net.state_dict().items():
        assert torch.equal(v, before[k])
    assert plan.n_reference == 4
    assert plan.metrics_after["params"] < plan.metrics_before["params"]
    assert plan.metrics_after["macs"] < plan.metrics_before["macs"]
    assert plan.metrics_after["params"] == sum(p.numel() for p in pruned.parameters())
    assert {n: len(k) for n, k in plan.channels.items()} == {"0": 4, "4": 6, "8": 8}
    assert plan.channels_after < plan.channels_before


def test_apply_reproduces_the_pruned_network_on_a_copy(small_net, reference) -> None:
    plan, pruned = PruningPlan.compute_and_prune(small_net, "taylor", 0.3, reference, input_size=32)
    applied = plan.apply(small_net)
    assert small_net[0].out_channels == 8  # original untouched
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(applied.eval()(x), pruned.eval()(x))


def test_json_round_trip(small_net, reference, tmp_path) -> None:
    plan = PruningPlan.compute(small_net, "weight", 0.25, input_size=32)
    path = plan.save(tmp_path / "plan.json")
    again = PruningPlan.load(path)
    assert again == plan
    assert json.loads(path.read_text())["version"] == 1


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5, float("nan")])
def test_ratio_outside_unit_interval_is_refused(small_net, ratio: float) -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        PruningPlan.compute(small_net, "weight", ratio, input_size=32)
    good = PruningPlan.compute(small_net, "weight", 0.25, input_size=32).to_dict()
    good["ratio"] = ratio
    with pytest.raises(PruneError, match=r"\[0, 1\)"):
        PruningPlan.from_dict(good)


@pytest.mark.parametrize("ratio", [0.9999, 0.95])
def test_ratio_that_would_empty_a_layer_is_refused_not_ignored(small_net, ratio: float) -> None:
    """Torch-Pruning leaves a layer whole when its ratio would remove every channel: 0.9999 on
    layers of 8-16 channels used to give an unpruned model reported as pruned (issue 21)."""
    with pytest.raises(PruneError, match=r"every channel of layer '0' \(8 channels\).*ratio <= 0\.875"):
        PruningPlan.compute(small_net, "weight", ratio, input_size=32)
    plan = PruningPlan.compute(small_net, "weight", 0.875, input_size=32)  # the limit it names works
    assert {len(v) for v in plan.channels.values()} == {1, 2}


def test_global_ratio_above_the_layer_cap_is_refused(small_net) -> None:
    with pytest.raises(PruneError, match=r"per-layer cap 0\.95"):
        PruningPlan.compute(small_net, "weight", 0.97, input_size=32, global_pruning=True)


def test_unknown_layer_and_bad_content_are_refused(small_net) -> None:
    good = PruningPlan.compute(small_net, "weight", 0.25, input_size=32).to_dict()
    with pytest.raises(PruneError, match=r"unknown layer 'features\.99'"):
        PruningPlan.from_dict({**good, "channels": {"features.99": [0]}})
    with pytest.raises(PruneError, match=r"distinct channel indices in 0\.\.7"):
        PruningPlan.from_dict({**good, "channels": {"0": [0, 8]}})
    with pytest.raises(PruneError, match="unknown criterion"):
        PruningPlan.from_dict({**good, "criterion": "magic"})
    with pytest.raises(PruneError, match="unknown keys"):
        PruningPlan.from_dict({**good, "colour": "red"})
    with pytest.raises(PruneError, match="not valid JSON"):
        PruningPlan.from_json("{not json")


def test_incompatible_model_is_refused(small_net) -> None:
    plan = PruningPlan.compute(small_net, "weight", 0.25, input_size=32)
    with pytest.raises(PruneError, match="does not fit"):
        plan.apply(randomise_bn(conv_bn_net(widths=(8, 12, 20))))
    with pytest.raises(PruneError, match="lacks"):
        plan.apply(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.LazyLinear(2)))
    with pytest.raises(PruneError, match="does not fit"):
        plan.apply(plan.apply(small_net))  # already pruned


def test_unknown_criterion_is_value_error(small_net) -> None:
    with pytest.raises(ValueError, match="unknown pruning criterion"):
        PruningPlan.compute(small_net, "magic", 0.2, input_size=32)


@pytest.mark.parametrize(
    ("arch", "kw"), [("compact_cnn", {"widths": [8, 16, 16]}), ("resnet18", {"width": 8})]
)
def test_pruned_model_round_trips_through_save_and_load(tmp_path, reference, arch: str, kw: dict) -> None:
    torch.manual_seed(0)
    model = randomise_bn(build_model(arch, **kw))
    plan, pruned = PruningPlan.compute_and_prune(model, "lrp", 0.5, reference, input_size=32)
    save_model(pruned, _card(arch, plan.channels, **kw), tmp_path / "pruned")
    loaded = load_model(tmp_path / "pruned")
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        assert torch.equal(loaded(x), pruned.eval()(x))
    assert sum(p.numel() for p in loaded.parameters()) == plan.metrics_after["params"]


def test_card_with_plan_for_other_architecture_fails_clearly(tmp_path) -> None:
    from pathxai.errors import PathXAIError

    model = build_model("compact_cnn", widths=[8, 16, 16])
    save_model(model, _card("compact_cnn", None, widths=[8, 16, 16]), tmp_path / "m")
    card_path = tmp_path / "m" / "model_card.json"
    data = json.loads(card_path.read_text())
    data["channel_plan"] = {"layer1.0.conv1": [0]}
    card_path.write_text(json.dumps(data))
    with pytest.raises(PathXAIError, match=r"layer1\.0\.conv1"):
        load_model(tmp_path / "m")


def test_compose_plans() -> None:
    assert compose_plans({"a": [1, 3, 5, 7]}, {"a": [0, 2], "b": [4]}) == {"a": [1, 5], "b": [4]}
    assert compose_plans(None, {"a": [2]}) == {"a": [2]}


def test_plan_is_frozen(small_net) -> None:
    plan = PruningPlan.compute(small_net, "random", 0.25, input_size=32)
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.ratio = 0.5  # type: ignore[misc]
