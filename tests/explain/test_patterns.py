"""PatternAttribution against the paper's definitions on hand-computed tiny networks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from pathxai.errors import ExplainError
from pathxai.explain import METHODS
from pathxai.explain.filters import filter_scores
from pathxai.explain.methods import make_method
from pathxai.explain.patterns import fit_model_patterns, fit_patterns, load_patterns, save_patterns

# signal s and distractor e: zero mean and exactly uncorrelated over the four samples
S = torch.tensor([1.0, -1.0, 2.0, -2.0])
E = torch.tensor([1.0, 1.0, -1.0, -1.0]) * 3.0
A_SIGNAL = torch.tensor([1.0, 0.0])
DISTRACTOR = torch.tensor([1.0, 1.0])


def _toy() -> tuple[nn.Linear, torch.Tensor]:
    """Kindermans et al.'s example: x = a_s s + d e; the filter w = (1, -1) cancels d and reads s."""
    x = S[:, None] * A_SIGNAL + E[:, None] * DISTRACTOR
    head = nn.Linear(2, 2, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[1.0, -1.0], [-1.0, 1.0]]))
    return head, x


def test_the_linear_estimator_recovers_the_signal_direction_not_the_filter() -> None:
    head, x = _toy()
    torch.testing.assert_close(head(x)[:, 0], S)  # the filter reads the signal exactly
    patterns = fit_patterns(nn.Sequential(head), [x])
    torch.testing.assert_close(patterns["0"][0], A_SIGNAL)  # a = cov(x, y) / (w^T cov(x, y)) = a_s
    torch.testing.assert_close(patterns["0"][1], -A_SIGNAL)  # the neuron reading -s: x = (-a_s)(-s)


def test_pattern_attribution_is_w_times_a_times_the_output_on_one_layer() -> None:
    head, x = _toy()
    net = nn.Sequential(head)
    method = make_method("pattern_attribution", net, reference=x)
    logits, attribution = method(x, torch.zeros(4, dtype=torch.long))
    # (w * a) y = ((1, -1) * (1, 0)) s = (s, 0): all on the signal; the gradient would be (1, -1)
    torch.testing.assert_close(attribution, torch.stack([S, torch.zeros(4)], 1))
    torch.testing.assert_close(logits[:, 0], S)
    method.close()


def test_the_relu_estimator_uses_only_active_samples() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 3, generator=g)
    first = nn.Linear(3, 2)
    net = nn.Sequential(first, nn.ReLU(), nn.Linear(2, 2)).eval()
    patterns = fit_patterns(net, [x[:20], x[20:]])
    w, b = first.weight.detach().double(), first.bias.detach().double()
    xd = x.double()
    for c in range(2):
        y = xd @ w[c]
        on = (y + b[c]) > 0
        xs, ys = xd[on], y[on]
        cov = (xs * ys[:, None]).mean(0) - xs.mean(0) * ys.mean()
        expected = cov / (w[c] @ cov)
        torch.testing.assert_close(patterns["0"][c].double(), expected, rtol=1e-5, atol=1e-6)
    last = net[2].weight.detach().double()
    h = torch.relu(xd @ w.T + b)
    y = h @ last.T
    cov = (h[:, :, None] * y[:, None, :]).mean(0) - h.mean(0)[:, None] * y.mean(0)[None, :]  # (D, C)
    expected_last = (cov / (last.T * cov).sum(0)).T
    torch.testing.assert_close(patterns["2"].double(), expected_last, rtol=1e-5, atol=1e-6)


def test_a_1x1_convolution_gets_the_patterns_of_the_same_linear_layer() -> None:
    g = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(3, 4, 1)
    lin = nn.Linear(3, 4)
    with torch.no_grad():
        lin.weight.copy_(conv.weight[:, :, 0, 0])
        lin.bias.copy_(conv.bias)
    x = torch.randn(6, 3, 5, 5, generator=g)
    pc = fit_patterns(nn.Sequential(conv, nn.ReLU(), nn.Flatten(1), nn.Linear(100, 2)), [x])["0"]
    rows = x.permute(0, 2, 3, 1).reshape(-1, 3)
    pl = fit_patterns(nn.Sequential(lin, nn.ReLU(), nn.Linear(4, 2)), [rows])["0"]
    assert pc.shape == conv.weight.shape
    torch.testing.assert_close(pc[:, :, 0, 0], pl, rtol=1e-4, atol=1e-5)


def test_patterns_round_trip_and_method_errors(tmp_path: Path) -> None:
    head, x = _toy()
    patterns = fit_patterns(nn.Sequential(head), [x])
    save_patterns(patterns, tmp_path)
    loaded = load_patterns(tmp_path)
    torch.testing.assert_close(loaded["0"], patterns["0"])
    method = make_method("pattern_attribution", nn.Sequential(head), patterns=tmp_path)
    assert method(x, torch.zeros(4, dtype=torch.long))[1].shape == x.shape
    assert "pattern_attribution" in METHODS
    with pytest.raises(ExplainError, match="patterns"):
        make_method("pattern_attribution", nn.Sequential(head))
    with pytest.raises(ExplainError, match="no patterns"):
        load_patterns(tmp_path / "missing")


def test_channel_scores_sum_the_backward_signal_and_fuse_batchnorm() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
        nn.Linear(4, 2),
    ).eval()  # fmt: skip
    with torch.no_grad():
        net[1].running_mean.uniform_(-0.5, 0.5)
        net[1].running_var.uniform_(0.5, 2.0)
    x = torch.randn(5, 3, 8, 8)
    y = torch.tensor([0, 1, 0, 1, 1])
    patterns = fit_model_patterns(net, [x])
    scores = filter_scores(net, x, y, method="pattern_attribution", patterns=patterns)
    # at the logit layer the signal is one-hot x logit: the target logit, zero elsewhere
    logits = net(x).detach()
    expected = torch.zeros(5, 2)
    expected[torch.arange(5), y] = logits[torch.arange(5), y]
    torch.testing.assert_close(scores["5"], expected)
    # at the conv (BatchNorm fused): (w_head * a_head)^T (target logit), spread evenly by the average
    # pool and gated by the ReLU, so summed over space it is scaled by the channel's active fraction
    kernel = net[5].weight.detach() * patterns["5"]
    active = (net[1](net[0](x)) > 0).float().mean(dim=(2, 3)).detach()
    torch.testing.assert_close(scores["0"], (expected @ kernel) * active, rtol=1e-4, atol=1e-5)
