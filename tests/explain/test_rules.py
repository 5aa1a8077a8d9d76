"""Each efficient rule against an independent matrix-form reference (unfold + explicit contributions).

The reference builds the full contribution tensor ``Z[n, j, i, l] = x_i * w_ji`` of a layer with
``torch.nn.functional.unfold`` and applies each rule's textbook formula to it, then folds the input
relevance back; nothing is shared with :mod:`pathxai.explain.rules` or zennit. Each rule is also checked
against zennit's stock rule on the same layer. Everything runs in float64 so that ill-conditioned
denominators (epsilon rule, mixed-sign inputs) do not hide real differences behind rounding.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from zennit import rules as zrules
from zennit.composites import LayerMapComposite

from pathxai.explain import rules

EPS = 1e-6


def stab(z: torch.Tensor) -> torch.Tensor:
    return z + EPS * torch.where(z >= 0, 1.0, -1.0)


def contributions(layer: nn.Module, x: torch.Tensor, weight: torch.Tensor):
    """Return (patches (N, K, L), weight matrix (O, K), fold function) for a Conv2d or Linear layer."""
    if isinstance(layer, nn.Linear):
        return x[:, :, None], weight, lambda p: p[:, :, 0]
    kh, kw = layer.kernel_size
    kwargs = {
        "kernel_size": (kh, kw),
        "padding": layer.padding,
        "stride": layer.stride,
        "dilation": layer.dilation,
    }
    patches = F.unfold(x, **kwargs)
    return patches, weight.reshape(weight.shape[0], -1), lambda p: F.fold(p, x.shape[2:], **kwargs)


def reference(rule: str, layer: nn.Module, x: torch.Tensor, r_out: torch.Tensor, **kw) -> torch.Tensor:
    w = layer.weight.detach()
    b = layer.bias.detach() if layer.bias is not None else torch.zeros(w.shape[0], dtype=w.dtype)
    out = layer(x).detach()
    r = r_out.reshape(r_out.shape[0], r_out.shape[1], -1)  # (N, O, L)
    z_out = out.reshape(out.shape[0], out.shape[1], -1)
    p, wm, fold = contributions(layer, x, w)
    bcol = b[None, :, None]

    def contrib(pp: torch.Tensor, ww: torch.Tensor) -> torch.Tensor:  # (N, O, K, L)
        return pp[:, None, :, :] * ww[None, :, :, None]

    def share(z: torch.Tensor, denom: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        return (z / stab(denom)[:, :, None, :] * rel[:, :, None, :]).sum(1)

    xp, xn = contributions(layer, x.clamp(min=0), w)[0], contributions(layer, x.clamp(max=0), w)[0]
    wp, wn = wm.clamp(min=0), wm.clamp(max=0)
    zp = contrib(xp, wp) + contrib(xn, wn)  # positive contributions
    zn = contrib(xp, wn) + contrib(xn, wp)  # negative contributions
    if rule == "epsilon":
        z = contrib(p, wm)
        rel = share(z, z.sum(2) + bcol, r)
    elif rule == "zplus":
        rel = share(zp, zp.sum(2) + bcol.clamp(min=0), r)
    elif rule == "alphabeta":
        a, bt = kw["alpha"], kw["beta"]
        rel = a * share(zp, zp.sum(2) + bcol.clamp(min=0), r) - bt * share(
            zn, zn.sum(2) + bcol.clamp(max=0), r
        )
    elif rule == "gamma":
        g = kw["gamma"]
        z = contrib(p, wm)
        up, dn = z + g * zp, z + g * zn
        pos, neg = (z_out > 0).float(), (z_out < 0).float()
        rel = share(up, up.sum(2) + bcol + g * bcol.clamp(min=0), r * pos)
        rel = rel + share(dn, dn.sum(2) + bcol + g * bcol.clamp(max=0), r * neg)
    elif rule == "flat":
        ones = contributions(layer, torch.ones_like(x), w)[0]
        z = contrib(ones, torch.ones_like(wm))
        rel = share(z, z.sum(2), r)
    elif rule == "zbox":
        low, high = kw["low"], kw["high"]
        pl = contributions(layer, torch.full_like(x, low), w)[0]
        ph = contributions(layer, torch.full_like(x, high), w)[0]
        z = contrib(p, wm) - contrib(pl, wp) - contrib(ph, wn)
        rel = share(z, z.sum(2), r)
    else:
        raise AssertionError(rule)
    return fold(rel)


def run_rule(hook, layer: nn.Module, x: torch.Tensor, r_out: torch.Tensor) -> torch.Tensor:
    composite = LayerMapComposite([((nn.Conv2d, nn.Linear), hook)])
    x = x.clone().requires_grad_(True)
    with composite.context(layer):
        out = layer(x)
        (rel,) = torch.autograd.grad(out, x, r_out)
    return rel


CASES = {
    "epsilon": (lambda: rules.EpsilonRule(EPS), lambda: zrules.Epsilon(EPS), {}),
    "zplus": (lambda: rules.ZPlusRule(EPS), lambda: zrules.ZPlus(EPS), {}),
    "alphabeta": (
        lambda: rules.AlphaBetaRule(2.0, 1.0, EPS),
        lambda: zrules.AlphaBeta(2.0, 1.0, EPS),
        {"alpha": 2.0, "beta": 1.0},
    ),
    "gamma": (lambda: rules.GammaRule(0.25, EPS), lambda: zrules.Gamma(0.25, EPS), {"gamma": 0.25}),
    "flat": (lambda: rules.FlatRule(EPS), lambda: zrules.Flat(EPS), {}),
    "zbox": (
        lambda: rules.ZBoxRule(-2.5, 2.5, EPS),
        lambda: zrules.ZBox(-2.5, 2.5, EPS),
        {"low": -2.5, "high": 2.5},
    ),
}


def layers() -> dict[str, nn.Module]:
    torch.manual_seed(3)
    return {
        "conv_s1": nn.Conv2d(3, 5, 3, padding=1),
        "conv_s2": nn.Conv2d(4, 6, 3, stride=2, padding=1),
        "conv_k1_nobias": nn.Conv2d(4, 3, 1, bias=False),
        "linear": nn.Linear(7, 4),
    }


def make_input(layer: nn.Module, sign: str) -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    shape = (2, layer.in_features) if isinstance(layer, nn.Linear) else (2, layer.in_channels, 7, 7)
    x = torch.randn(shape, generator=g)
    if sign == "nonneg":
        x = x.clamp(min=0)  # as after a ReLU, with exact zeros
    if sign == "box":
        x = x.clamp(-2.5, 2.5)
    return x


@pytest.mark.parametrize("sign", ["nonneg", "mixed"])
@pytest.mark.parametrize("layer_name", ["conv_s1", "conv_s2", "conv_k1_nobias", "linear"])
@pytest.mark.parametrize("rule", sorted(CASES))
def test_rule_matches_matrix_reference_and_zennit(rule: str, layer_name: str, sign: str) -> None:
    layer = layers()[layer_name].eval().double()
    if rule == "zbox":
        sign = "box"
    x = make_input(layer, sign).double()
    with torch.no_grad():
        out = layer(x)
    r_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    fast_factory, stock_factory, kw = CASES[rule]
    fast = run_rule(fast_factory(), layer, x, r_out)
    ref = reference(rule, layer, x, r_out, **kw)
    stock = run_rule(stock_factory(), layer, x, r_out)
    scale = ref.abs().max()
    assert scale > 0
    assert (fast - ref).abs().max() <= 1e-9 * scale
    assert (fast - stock).abs().max() <= 1e-9 * scale


def test_reference_is_not_trivially_equal_across_rules() -> None:
    """The reference distinguishes the rules (so agreement above means something)."""
    layer = layers()["conv_s1"].eval()
    x = make_input(layer, "nonneg")
    r_out = torch.randn(layer(x).shape, generator=torch.Generator().manual_seed(7))
    zplus = reference("zplus", layer, x, r_out)
    eps = reference("epsilon", layer, x, r_out)
    assert (zplus - eps).abs().max() > 1e-2 * zplus.abs().max()


def test_zplus_uses_general_formula_for_negative_inputs() -> None:
    """The one-pass shortcut would be wrong for negative inputs; the rule must notice them."""
    layer = layers()["conv_s1"].eval()
    x = make_input(layer, "mixed")
    r_out = torch.randn(layer(x).shape, generator=torch.Generator().manual_seed(7))
    fast = run_rule(rules.ZPlusRule(EPS), layer, x, r_out)
    # what the shortcut alone would give: x * W+^T (R / (W+ x + b+))
    wp = layer.weight.detach().clamp(min=0)
    z = F.conv2d(x, wp, layer.bias.detach().clamp(min=0), padding=1)
    shortcut = x * torch.nn.grad.conv2d_input(x.shape, wp, r_out / stab(z), padding=1)
    ref = reference("zplus", layer, x, r_out)
    assert (fast - ref).abs().max() <= 1e-5 * ref.abs().max()
    assert (shortcut - ref).abs().max() > 1e-3 * ref.abs().max()


def test_rule_hooks_are_removable_and_copyable() -> None:
    layer = nn.Conv2d(3, 4, 3, padding=1)
    before = (dict(layer._forward_hooks), dict(layer._forward_pre_hooks), dict(layer._backward_hooks))
    for factory, _, _ in CASES.values():
        hook = factory()
        assert type(hook.copy()) is type(hook)
        handles = hook.copy().register(layer)
        assert layer._forward_hooks and layer._forward_pre_hooks
        handles.remove()
        assert (
            dict(layer._forward_hooks),
            dict(layer._forward_pre_hooks),
            dict(layer._backward_hooks),
        ) == before


def test_alpha_beta_arguments_validated() -> None:
    with pytest.raises(ValueError, match="alpha - beta"):
        rules.AlphaBetaRule(alpha=2.0, beta=2.0)
    with pytest.raises(ValueError, match="non-negative"):
        rules.AlphaBetaRule(alpha=-1.0, beta=-2.0)
