"""Whole-model LRP: the fast path against zennit's stock composites, and conservation with zero biases."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from pathxai.explain import Explainer
from pathxai.model import build_model
from tests.explain.conftest import randomise_bn, set_bn_eps, tv_resnet18, vgg_net, zero_biases

LRP_FAST = ["lrp_epsilon_plus_flat", "lrp_epsilon_gamma_box", "lrp_epsilon_alpha2_beta1_flat"]


# Narrow residual nets on tiny inputs have neurons whose positive pre-activation is exactly zero while they
# still receive relevance through the residual sum; z+ (stock or fast) drops that relevance. Width 16 at
# 48 px avoids such degenerate neurons, so conservation is a meaningful check.
FACTORIES = {
    "vgg_2conv": (lambda: vgg_net(convs=2, bias=True), 32),
    "compact_cnn": (lambda: build_model("compact_cnn"), 48),
    "pathxai_resnet18": (lambda: build_model("resnet18", width=16), 48),
    "torchvision_resnet18": (tv_resnet18, 32),
}


def make(name: str) -> tuple[nn.Module, int]:
    """Build one test model (seeded, eval mode) and its input size."""
    factory, size = FACTORIES[name]
    torch.manual_seed(0)
    return factory().eval(), size


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def explain_both(model: nn.Module, x: torch.Tensor, method: str):
    with Explainer(model, method) as fast, Explainer(model, method, fast=False) as stock:
        return fast(x), stock(x)


FAST_VS_STOCK = [
    *[(name, method) for name in ("vgg_2conv", "compact_cnn", "pathxai_resnet18") for method in LRP_FAST],
    ("torchvision_resnet18", "lrp_epsilon_plus_flat"),
]
# alpha2-beta1 is conservative only where a neuron has both positive and negative contributions; the narrow
# residual net has 1x1 shortcut neurons with only one sign, so it is checked on the VGG stack only.
CONSERVATION = [
    *[
        (name, method)
        for name in ("vgg_2conv", "pathxai_resnet18")
        for method in ["lrp", *LRP_FAST, "lrp_zennit"]
        if not (name == "pathxai_resnet18" and method == "lrp_epsilon_alpha2_beta1_flat")
    ],
    ("compact_cnn", "lrp"),
    ("torchvision_resnet18", "lrp"),
    ("torchvision_resnet18", "lrp_zennit"),
]


@pytest.mark.parametrize(("name", "method"), FAST_VS_STOCK)
def test_fast_path_equals_zennit_stock(name: str, method: str) -> None:
    """Fast rules + BN fused once give zennit's stock relevance (random BN statistics, random inputs).

    Batch-norm eps is set to 0 here: zennit's merge leaves each batch norm computing ``x / sqrt(1 + eps)``
    instead of the identity, a ~5e-6 scale per layer that the fast path (which removes merged batch norms)
    does not reproduce; with eps = 0 both compute the same function and must agree.
    """
    model, size = make(name)
    set_bn_eps(randomise_bn(model, scale=0.5), 0.0)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(2))
    fast, stock = explain_both(model, x, method)
    assert relative_error(fast.relevance, stock.relevance) <= 1e-4
    np.testing.assert_allclose(fast.logits, stock.logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["compact_cnn", "torchvision_resnet18"])
def test_production_lrp_equals_zennit_stock_with_default_bn_eps(name: str) -> None:
    """``lrp`` vs ``lrp_zennit`` with ordinary batch norms (eps 1e-5) and trained-like statistics."""
    model, size = make(name)
    randomise_bn(model, scale=0.1)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(3))
    with Explainer(model, "lrp") as fast, Explainer(model, "lrp_zennit") as stock:
        a, b = fast(x), stock(x)
    assert relative_error(a.relevance, b.relevance) <= 1e-4


@pytest.mark.parametrize(("name", "method"), CONSERVATION)
def test_conservation_with_zero_biases(name: str, method: str) -> None:
    """With every bias and batch-norm shift zero, relevance sums to the explained logit."""
    model, size = make(name)
    zero_biases(model)
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(4))
    with Explainer(model, method) as explainer:
        result = explainer(x, target=torch.tensor([1, 0, 1]))
    totals = result.relevance.reshape(3, -1).astype(np.float64).sum(1)
    logits = result.logits[np.arange(3), result.target]
    assert np.all(np.abs(logits) > 1e-4), "degenerate test: logits too close to zero"
    np.testing.assert_allclose(totals, logits, rtol=2e-3)


def test_conservation_breaks_with_biases() -> None:
    """The conservation test can fail: with non-zero biases relevance is absorbed and sums differ."""
    model, size = make("vgg_2conv")
    randomise_bn(model, scale=1.0)
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(4))
    result = Explainer(model, "lrp")(x)
    totals = result.relevance.reshape(3, -1).sum(1)
    logits = result.logits[:, 1]
    assert not np.allclose(totals, logits, rtol=2e-3)


def test_lrp_tight_conservation_epsilon_plus_flat() -> None:
    """In float64 with tiny stabilisers the production path conserves relevance to 1e-9 relative."""
    model, size = make("compact_cnn")
    zero_biases(model).double()
    x = torch.randn(4, 3, size, size, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    with Explainer(model, "lrp", epsilon=1e-12, stabilizer=1e-12) as explainer:
        model_copy = explainer.model
        result = explainer(x)
        with torch.no_grad():
            logits64 = model_copy(x)[:, 1].numpy()
    totals = result.relevance.reshape(4, -1).astype(np.float64).sum(1)
    # relevance is returned as float32: compare at float32 resolution of the sum, logits in float64
    np.testing.assert_allclose(totals, logits64, rtol=1e-6)
