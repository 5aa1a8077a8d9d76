"""Artifact channels: the ranking follows the relevance the artifact adds; removal shrinks the model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pathxai.errors import PruneError
from pathxai.mitigate.channels import ArtifactChannels, remove_channels
from pathxai.model.testing import save_tiny_model


def _ranking(scores: dict[str, list[float]]) -> ArtifactChannels:
    arr = {k: np.asarray(v) for k, v in scores.items()}
    ranked = sorted(((n, c, float(v)) for n, s in arr.items() for c, v in enumerate(s)), key=lambda t: -t[2])
    return ArtifactChannels(arr, tuple(ranked), 4)


def test_top_takes_positive_scores_only_and_caps_each_layer():
    r = _ranking({"a": [5.0, 4.0, 3.0, 2.0], "b": [1.0, -1.0, 0.0, 0.5]})
    top = r.top(10)
    # layer a gives at most half its channels (2); b's non-positive channels never go
    assert [(n, c) for n, c, _ in top] == [("a", 0), ("a", 1), ("b", 0), ("b", 3)]
    assert [(n, c) for n, c, _ in r.top(1)] == [("a", 0)]


def test_remove_channels_drops_exactly_the_named_ones(tmp_path):
    from pathxai.model.io import load_model_with_card

    net, card = load_model_with_card(save_tiny_model(tmp_path / "m"))
    convs = [n for n, m in net.named_modules() if isinstance(m, nn.Conv2d)]
    first = dict(net.named_modules())[convs[0]]
    assert isinstance(first, nn.Conv2d)
    keep_w = first.weight.detach().clone()
    new, plan = remove_channels(net, card, [(convs[0], 1, 1.0)])
    shrunk = dict(new.named_modules())[convs[0]]
    assert isinstance(shrunk, nn.Conv2d)
    assert shrunk.out_channels == first.out_channels - 1
    assert plan[convs[0]] == [i for i in range(first.out_channels) if i != 1]
    torch.testing.assert_close(shrunk.weight, keep_w[plan[convs[0]]])
    assert first.out_channels == keep_w.shape[0]  # the original is not modified
    with pytest.raises(PruneError, match="no channel"):  # a layer cannot lose every channel
        remove_channels(net, card, [(convs[0], i, 1.0) for i in range(first.out_channels)])
