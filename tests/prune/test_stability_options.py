"""The stability options of a pruning run: relevance pooling, LRP rules, settings labels, BN tiles."""

from __future__ import annotations

import pytest
import torch

from pathxai.explain.filters import filter_scores
from pathxai.prune import PruneSettings, make_importance
from pathxai.prune.engine import feasible_ratios
from pathxai.prune.sweep import SWEEP_COLUMNS, stability_fields

from .conftest import conv_bn_net


def test_signed_relevance_is_the_mean_of_signed_scores(small_net, reference) -> None:
    x, y = reference[0]
    signed = make_importance("taylor", small_net, reference, relevance="signed")
    absolute = make_importance("taylor", small_net, reference)
    signed.refresh()
    absolute.refresh()
    per = filter_scores(small_net, x, y, method="taylor")
    torch.testing.assert_close(signed.scores["4"], per["4"].double().mean(0))
    torch.testing.assert_close(absolute.scores["4"], per["4"].double().abs().mean(0))
    assert not torch.allclose(signed.scores["4"], absolute.scores["4"])
    with pytest.raises(ValueError, match="relevance"):
        make_importance("lrp", small_net, reference, relevance="square")


def test_lrp_rules_reach_the_filter_scores(small_net, reference) -> None:
    x, y = reference[0]
    plus = filter_scores(small_net, x, y, method="lrp")["4"]
    box = filter_scores(
        small_net, x, y, method="lrp", lrp_method="lrp_epsilon_gamma_box", lrp_options={"gamma": 0.1}
    )["4"]
    box_big = filter_scores(
        small_net, x, y, method="lrp", lrp_method="lrp_epsilon_gamma_box", lrp_options={"gamma": 10.0}
    )["4"]
    assert not torch.allclose(plus, box) and not torch.allclose(box, box_big)


def test_settings_give_criterion_options_and_a_variant_label() -> None:
    default = PruneSettings()
    assert default.bn_recalibrate == "shift" and default.relevance == "abs"
    assert default.criterion_options("lrp") == {"relevance": "abs"}
    assert default.criterion_options("weight") == {}
    assert default.criterion_options("ig") == {"relevance": "abs", "ig_steps": 16}
    box = PruneSettings(lrp_method="lrp_epsilon_gamma_box", lrp_gamma=0.5, relevance="signed")
    assert box.criterion_options("lrp") == {
        "relevance": "signed",
        "lrp_method": "lrp_epsilon_gamma_box",
        "lrp_options": {"gamma": 0.5},
    }
    labels = {
        default.variant(),
        box.variant(),
        PruneSettings(bn_recalibrate="none").variant(),
        PruneSettings(bn_recalibrate="full").variant(),
        PruneSettings(global_pruning=True, normalizer="max").variant(),
    }
    assert len(labels) == 5
    with pytest.raises(ValueError, match="bn_recalibrate"):
        PruneSettings(bn_recalibrate="yes")
    fields = stability_fields(box)
    assert fields["variant"] == box.variant() and fields["lrp_gamma"] == "0.5"
    assert list(SWEEP_COLUMNS[:2]) == ["criterion", "ratio"] and set(fields) <= set(SWEEP_COLUMNS)
    assert SWEEP_COLUMNS.index("auc") < SWEEP_COLUMNS.index("variant")


def test_feasible_ratios_stop_before_a_layer_would_be_emptied() -> None:
    net = conv_bn_net(widths=(8, 12, 16))
    assert feasible_ratios(net, 32, [0.5, 0.85, 0.9, 0.95]) == [0.5, 0.85]  # 8 * 0.1 < 1
