"""LRP composites by name: zennit's stock composites and the same rule maps built from the efficient rules.

A composite maps each module of a model to an LRP rule (zennit's ``module_map``), and carries the canonizers
that bring the model into a form LRP can handle (batch norm merged into the preceding convolution, residual
additions made explicit). The fast composites here are ordinary zennit composites
(:class:`zennit.composites.SpecialFirstLayerMapComposite`) whose rules are the hooks of
:mod:`pathxai.explain.rules`; modules those hooks do not support fall back to zennit's stock rule.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn
from zennit import rules as zrules
from zennit.canonizers import Canonizer
from zennit.composites import (
    EpsilonAlpha2Beta1Flat,
    EpsilonGammaBox,
    EpsilonPlusFlat,
    SpecialFirstLayerMapComposite,
)
from zennit.core import Composite, Hook
from zennit.layer import Sum
from zennit.types import Activation, AvgPool, BatchNorm, Convolution, Linear

from pathxai.explain.rules import (
    AlphaBetaRule,
    EpsilonRule,
    FlatRule,
    GammaRule,
    NormRule,
    ParametricRule,
    PassRule,
    ZBoxRule,
    ZPlusRule,
    is_fast_module,
)

#: Composite names understood by :func:`make_composite`.
COMPOSITE_NAMES = ("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat")

#: ImageNet channel statistics, the default normalisation when no model card gives others.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def input_bounds(
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Lowest and highest possible values of a normalised input, for the z-box rule.

    Pixels in ``[0, 1]`` normalised as ``(x - mean) / std`` lie in ``[-mean / std, (1 - mean) / std]``.

    Parameters
    ----------
    mean, std : sequence of float
        Per-channel normalisation of the model's input.

    Returns
    -------
    low, high : torch.Tensor
        Tensors of shape ``(1, C, 1, 1)``.
    """
    mean_t = torch.as_tensor(tuple(mean), dtype=torch.float32)
    std_t = torch.as_tensor(tuple(std), dtype=torch.float32)
    if mean_t.ndim != 1 or mean_t.shape != std_t.shape:
        raise ValueError(
            f"mean and std must be sequences of equal length, got {tuple(mean)} and {tuple(std)}"
        )
    if bool((std_t <= 0).any()):
        raise ValueError(f"std must be positive, got {tuple(std)}")
    low = ((0.0 - mean_t) / std_t).view(1, -1, 1, 1)
    high = ((1.0 - mean_t) / std_t).view(1, -1, 1, 1)
    return low, high


def _stock_rule(rule: Hook) -> Hook:
    """Return zennit's stock rule computing the same relevance as one of the efficient rules."""
    if isinstance(rule, ZPlusRule):
        return zrules.ZPlus(stabilizer=rule.stabilizer)
    if isinstance(rule, AlphaBetaRule):
        return zrules.AlphaBeta(alpha=rule.alpha, beta=rule.beta, stabilizer=rule.stabilizer)
    if isinstance(rule, GammaRule):
        return zrules.Gamma(gamma=rule.gamma, stabilizer=rule.stabilizer)
    if isinstance(rule, EpsilonRule):
        return zrules.Epsilon(epsilon=rule.epsilon)
    if isinstance(rule, FlatRule):
        return zrules.Flat(stabilizer=rule.stabilizer)
    if isinstance(rule, ZBoxRule):
        return zrules.ZBox(low=rule.low, high=rule.high, stabilizer=rule.stabilizer)
    return rule


class FastComposite(SpecialFirstLayerMapComposite):
    """A zennit composite of efficient rules, falling back to zennit's stock rule where they do not apply.

    Parameters
    ----------
    layer_map, first_map : list of (types, hook)
        As in :class:`zennit.composites.SpecialFirstLayerMapComposite`.
    canonizers : list of zennit canonizers, optional
        Applied when the composite is registered.
    """

    def mapping(self, ctx: dict[str, Any], name: str, module: nn.Module) -> Hook | None:
        """Return the rule for ``module``; a stock rule for layers the fast rules do not support."""
        rule = super().mapping(ctx, name, module)
        if isinstance(rule, ParametricRule) and not is_fast_module(module):
            return _stock_rule(rule)
        return rule


def _base_map(stabilizer: float) -> list[tuple[Any, Hook]]:
    return [
        (Activation, PassRule()),
        (Sum, NormRule(stabilizer=stabilizer)),
        (AvgPool, NormRule(stabilizer=stabilizer)),
        (BatchNorm, PassRule()),
    ]


def make_composite(
    name: str,
    *,
    fast: bool = True,
    canonizers: list[Canonizer] | None = None,
    epsilon: float = 1e-6,
    stabilizer: float = 1e-6,
    gamma: float = 0.25,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    extra_layer_map: list[tuple[Any, Hook]] | None = None,
) -> Composite:
    """Build an LRP composite by name.

    Parameters
    ----------
    name : str
        One of :data:`COMPOSITE_NAMES`.
    fast : bool
        The efficient rules of :mod:`pathxai.explain.rules` (default) or zennit's stock composite.
    canonizers : list of zennit canonizers, optional
        Applied on registration (e.g. from :func:`pathxai.explain.canonize.canonizers_for`). ``None`` means
        none: pass them when the model has not been canonized already.
    epsilon : float
        Stabiliser of the epsilon rule (dense layers).
    stabilizer : float
        Stabiliser of all other rules.
    gamma : float
        Gamma of the gamma rule (``epsilon_gamma_box``).
    mean, std : sequence of float
        Input normalisation, from which the z-box bounds are derived (``epsilon_gamma_box``).
    extra_layer_map : list of (types, hook), optional
        Rules that take precedence over the composite's own (e.g.
        :func:`pathxai.explain.canonizers.graph_layer_map` for graph-canonized models).

    Returns
    -------
    zennit.core.Composite
        An unregistered composite.
    """
    if name not in COMPOSITE_NAMES:
        raise ValueError(f"unknown composite {name!r}; valid names: {', '.join(COMPOSITE_NAMES)}")
    canonizers = list(canonizers or [])
    extra = list(extra_layer_map or [])
    if name == "epsilon_gamma_box":
        low, high = input_bounds(mean, std)
        if not fast:
            return EpsilonGammaBox(
                low=low,
                high=high,
                epsilon=epsilon,
                gamma=gamma,
                stabilizer=stabilizer,
                layer_map=extra,
                canonizers=canonizers,
            )
        layer_map = [
            *extra,
            *_base_map(stabilizer),
            (Convolution, GammaRule(gamma=gamma, stabilizer=stabilizer)),
            (nn.Linear, EpsilonRule(epsilon=epsilon)),
        ]
        first_map: list[tuple[Any, Hook]] = [
            (Convolution, ZBoxRule(low=low, high=high, stabilizer=stabilizer))
        ]
        return FastComposite(layer_map=layer_map, first_map=first_map, canonizers=canonizers)

    if not fast:
        stock: Callable[..., Composite] = (
            EpsilonPlusFlat if name == "epsilon_plus_flat" else EpsilonAlpha2Beta1Flat
        )
        return stock(epsilon=epsilon, stabilizer=stabilizer, layer_map=extra, canonizers=canonizers)
    conv_rule: Hook = (
        ZPlusRule(stabilizer=stabilizer)
        if name == "epsilon_plus_flat"
        else AlphaBetaRule(alpha=2.0, beta=1.0, stabilizer=stabilizer)
    )
    layer_map = [
        *extra,
        *_base_map(stabilizer),
        (Convolution, conv_rule),
        (nn.Linear, EpsilonRule(epsilon=epsilon)),
    ]
    first_map = [(Linear, FlatRule(stabilizer=stabilizer))]
    return FastComposite(layer_map=layer_map, first_map=first_map, canonizers=canonizers)
