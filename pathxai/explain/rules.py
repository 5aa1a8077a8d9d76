"""Efficient LRP rules as zennit hooks.

zennit's stock rules (:mod:`zennit.rules`) are :class:`zennit.core.BasicHook` instances: in the backward pass
they run the layer forward again once per parameter modifier and back-propagate through those re-runs with
autograd, while autograd *also* computes the ordinary input gradient of the layer, which the hook then
discards. The hooks here compute the same relevance with less work:

* The module's forward runs on a detached input (no autograd graph, no ordinary backward).
* The output is wrapped in an autograd function whose backward *is* the rule; autograd merely chains the
  rules, so ``torch.autograd.grad(output, input, grad_outputs)`` returns the input relevance exactly like
  :class:`zennit.attribution.Gradient` does with a stock composite.
* Each rule uses the identities that hold for its input. For the z+ rule on a non-negative input (after a
  ReLU) the negative-input half of zennit's ``ZPlus`` is exactly zero, so one convolution with the positive
  weights and one transposed convolution (:func:`torch.nn.grad.conv2d_input`) give identical relevance. The
  epsilon and box rules reuse the layer's own output as their denominator. The flat rule's denominator
  depends only on the input shape and is cached.

Every rule falls back to the general formula when its shortcut does not apply (for example a negative
input to a z+ layer), so results equal zennit's stock rules up to floating-point rounding; the tests in
``tests/explain`` check that against zennit and against an independent matrix-form reference.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from zennit.core import expand
from zennit.layer import Sum

from pathxai.explain.rule_hook import (
    LinearOps,
    ParametricRule,
    RuleHook,
    is_fast_module,
    make_stabilizer,
    memory_format,
    negative_part,
    non_negative,
    param,
    plain_gradient,
    positive_part,
)

Tensor = torch.Tensor

__all__ = [
    "AlphaBetaRule",
    "EpsilonRule",
    "FlatRule",
    "GammaRule",
    "NormRule",
    "ParametricRule",
    "PassRule",
    "RuleHook",
    "ZBoxRule",
    "ZPlusRule",
    "is_fast_module",
    "make_stabilizer",
]


class PassRule(RuleHook):
    """Pass relevance through unchanged (zennit's ``Pass`` for activations and merged batch norms)."""

    def copy(self) -> PassRule:
        """Return a fresh instance."""
        return PassRule()

    def relevance(self, module: nn.Module, input: Tensor, output: Tensor, relevance: Tensor) -> Tensor:
        """Return ``relevance`` unchanged."""
        return relevance


class NormRule(RuleHook):
    """zennit's ``Norm`` rule for sums and average pools: ``R_in = x * J^T (R / stabilize(z))``.

    Parameters
    ----------
    stabilizer : float or callable
        As in :class:`zennit.rules.Norm`.
    """

    def __init__(self, stabilizer: float | Callable[[Tensor], Tensor] = 1e-6) -> None:
        super().__init__()
        self.stabilizer = stabilizer
        self._stabilize = make_stabilizer(stabilizer)

    def copy(self) -> NormRule:
        """Return a fresh instance with the same stabilizer."""
        return NormRule(self.stabilizer)

    def relevance(self, module: nn.Module, input: Tensor, output: Tensor, relevance: Tensor) -> Tensor:
        """Distribute relevance in proportion to each input's share of the (linear) output."""
        ratio = relevance / self._stabilize(output)
        if isinstance(module, Sum):  # the Jacobian of a sum broadcasts: no autograd round trip needed
            return input * ratio.unsqueeze(module.dim)
        return input * plain_gradient(module, input, ratio)


class ZPlusRule(ParametricRule):
    """zennit's ``ZPlus`` rule (alpha=1, beta=0), computed in one pass when the input is non-negative.

    zennit computes ``z = W+ x+ + b+ + W- x-`` and ``R_in = x+ * W+^T s + x- * W-^T s`` with
    ``s = R / stabilize(z)``. After a ReLU, ``x- == 0`` exactly, so both ``x-`` terms vanish and one forward
    with ``W+`` plus one transposed product give the same relevance. Negative inputs use the full formula.

    Parameters
    ----------
    stabilizer : float or callable
        As in :class:`zennit.rules.ZPlus`.
    """

    def __init__(self, stabilizer: float | Callable[[Tensor], Tensor] = 1e-6) -> None:
        super().__init__()
        self.stabilizer = stabilizer
        self._stabilize = make_stabilizer(stabilizer)

    def copy(self) -> ZPlusRule:
        """Return a fresh instance with the same stabilizer."""
        return ZPlusRule(self.stabilizer)

    def relevance(self, module: nn.Module, input: Tensor, output: Tensor, relevance: Tensor) -> Tensor:
        """Apply the z+ rule."""
        ops = LinearOps(module)
        w_pos, b_pos = self._modified(module, "pos", positive_part, bias="mod")
        if non_negative(input):
            z = ops.forward(input, w_pos, b_pos)
            if isinstance(self.stabilizer, (int, float)):
                # z >= 0 here, where zennit's stabilize(z) is exactly z + epsilon: one op instead of four
                z = z.add_(float(self.stabilizer))
            else:
                z = self._stabilize(z)
            ratio = torch.div(relevance, z, out=z) if z.shape == relevance.shape else relevance / z
            return ops.transpose(input.shape, w_pos, ratio).mul_(input)
        w_neg, _ = self._modified(module, "neg", negative_part, bias="zero")
        x_pos, x_neg = positive_part(input), negative_part(input)
        denom = ops.forward(x_pos, w_pos, b_pos) + ops.forward(x_neg, w_neg, None)
        ratio = relevance / self._stabilize(denom)
        return x_pos * ops.transpose(input.shape, w_pos, ratio) + x_neg * ops.transpose(
            input.shape, w_neg, ratio
        )


class AlphaBetaRule(ParametricRule):
    """zennit's ``AlphaBeta`` rule, with the negative-input terms skipped when the input is non-negative.

    Parameters
    ----------
    alpha, beta : float
        Weights of the positive and negative contributions (``alpha - beta == 1``).
    stabilizer : float or callable
        As in :class:`zennit.rules.AlphaBeta`.
    """

    def __init__(
        self, alpha: float = 2.0, beta: float = 1.0, stabilizer: float | Callable[[Tensor], Tensor] = 1e-6
    ) -> None:
        super().__init__()
        if alpha < 0 or beta < 0:
            raise ValueError(f"alpha and beta must be non-negative, got alpha={alpha}, beta={beta}")
        if alpha - beta != 1.0:
            raise ValueError(f"alpha - beta must equal 1, got alpha={alpha}, beta={beta}")
        self.alpha = alpha
        self.beta = beta
        self.stabilizer = stabilizer
        self._stabilize = make_stabilizer(stabilizer)

    def copy(self) -> AlphaBetaRule:
        """Return a fresh instance with the same parameters."""
        return AlphaBetaRule(self.alpha, self.beta, self.stabilizer)

    def relevance(self, module: nn.Module, input: Tensor, output: Tensor, relevance: Tensor) -> Tensor:
        """Apply the alpha-beta rule."""
        ops = LinearOps(module)
        w_pos, b_pos = self._modified(module, "pos", positive_part, bias="mod")
        w_neg, b_neg = self._modified(module, "neg", negative_part, bias="mod")
        shape = input.shape
        if non_negative(input):
            ratio_p = relevance / self._stabilize(ops.forward(input, w_pos, b_pos))
            ratio_n = relevance / self._stabilize(ops.forward(input, w_neg, b_neg))
            pos = ops.transpose(shape, w_pos, ratio_p)
            neg = ops.transpose(shape, w_neg, ratio_n)
            return input * (self.alpha * pos - self.beta * neg)
        x_pos, x_neg = positive_part(input), negative_part(input)
        z_p = ops.forward(x_pos, w_pos, b_pos) + ops.forward(x_neg, w_neg, None)
        z_n = ops.forward(x_pos, w_neg, b_neg) + ops.forward(x_neg, w_pos, None)
        ratio_p = relevance / self._stabilize(z_p)
        ratio_n = relevance / self._stabilize(z_n)
        pos = x_pos * ops.transpose(shape, w_pos, ratio_p) + x_neg * ops.transpose(shape, w_neg, ratio_p)
        neg = x_pos * ops.transpose(shape, w_neg, ratio_n) + x_neg * ops.transpose(shape, w_pos, ratio_n)
        return self.alpha * pos - self.beta * neg


class GammaRule(ParametricRule):
    """zennit's generalised ``Gamma`` rule, with the negative-input terms skipped for non-negative inputs.

    Outputs with a positive pre-activation use ``W + gamma W+``, negative ones ``W + gamma W-``; the layer's
    own output decides the sign, as in zennit.

    Parameters
    ----------
    gamma : float
        Weight of the added positive (negative) parameters.
    stabilizer : float or callable
        As in :class:`zennit.rules.Gamma`.
    """

    def __init__(self, gamma: float = 0.25, stabilizer: float | Callable[[Tensor], Tensor] = 1e-6) -> None:
        super().__init__()
        self.gamma = gamma
        self.stabilizer = stabilizer
        self._stabilize = make_stabilizer(stabilizer)

    def copy(self) -> GammaRule:
        """Return a fresh instance with the same parameters."""
        return GammaRule(self.gamma, self.stabilizer)

    def relevance(self, module: nn.Module, input: Tensor, output: Tensor, relevance: Tensor) -> Tensor:
        """Apply the gamma rule."""
        ops = LinearOps(module)
        gamma = self.gamma
        w_up, b_up = self._modified(module, "gamma+", lambda t: t + gamma * positive_part(t), bias="mod")
        w_dn, b_dn = self._modified(module, "gamma-", lambda t: t + gamma * negative_part(t), bias="mod")
        shape = input.shape
        g_pos = relevance * (output > 0)
        g_neg = relevance * (output < 0)
        if non_negative(input):
            ratio_p = g_pos / self._stabilize(ops.forward(input, w_up, b_up))
            ratio_n = g_neg / self._stabilize(ops.forward(input, w_dn, b_dn))
            return input * (ops.transpose(shape, w_up, ratio_p) + ops.transpose(shape, w_dn, ratio_n))
        x_pos, x_neg = positive_part(input), negative_part(input)
        z_p = ops.forward(x_pos, w_up, b_up) + ops.forward(x_neg, w_dn, None)
        z_n = ops.forward(x_pos, w_dn, b_dn) + ops.forward(x_neg, w_up, None)
        ratio_p = g_pos / self._stabilize(z_p)
        ratio_n = g_neg / self._stabilize(z_n)
        return (
            x_pos * ops.transpose(shape, w_up, ratio_p)
            + x_neg * ops.transpose(shape, w_dn, ratio_p)
            + x_pos * ops.transpose(shape, w_dn, ratio_n)
            + x_neg * ops.transpose(shape, w_up, ratio_n)
        )


class EpsilonRule(ParametricRule):
    """zennit's ``Epsilon`` rule; the denominator is the layer's own output, so no extra forward is needed.

    Parameters
    ----------
    epsilon : float or callable
        As in :class:`zennit.rules.Epsilon`.
    """

    def __init__(self, epsilon: float | Callable[[Tensor], Tensor] = 1e-6) -> None:
        super().__init__()
        self.epsilon = epsilon
        self._stabilize = make_stabilizer(epsilon)

    def copy(self) -> EpsilonRule:
        """Return a fresh instance with the same epsilon."""
        return EpsilonRule(self.epsilon)

    def relevance(self, module: nn.Module, input: Tensor, output: Tensor, relevance: Tensor) -> Tensor:
        """Apply the epsilon rule ``R_in = x * W^T (R / stabilize(z))``."""
        ops = LinearOps(module)
        ratio = relevance / self._stabilize(output)
        return input * ops.transpose(input.shape, param(module, "weight").detach(), ratio)


class FlatRule(ParametricRule):
    """zennit's ``Flat`` rule: relevance spread uniformly over each output's receptive field.

    Its denominator (the flat layer applied to an all-ones input) depends only on the input shape, so it is
    computed once per shape and cached. For an ungrouped convolution every output channel has the same
    all-ones weights and so the same denominator and the same back-projection; the rule then sums the
    relevance over output channels first and back-projects one channel with a ones kernel, which gives
    the same result as zennit's ``Flat`` with a fraction of the work.

    Parameters
    ----------
    stabilizer : float or callable
        As in :class:`zennit.rules.Flat`.
    """

    def __init__(self, stabilizer: float | Callable[[Tensor], Tensor] = 1e-6) -> None:
        super().__init__()
        self.stabilizer = stabilizer
        self._stabilize = make_stabilizer(stabilizer)
        self._denominators: dict[tuple[Any, ...], Tensor] = {}

    def copy(self) -> FlatRule:
        """Return a fresh instance with the same stabilizer."""
        return FlatRule(self.stabilizer)

    def relevance(self, module: nn.Module, input: Tensor, output: Tensor, relevance: Tensor) -> Tensor:
        """Apply the flat rule."""
        ops = LinearOps(module)
        ones_w, _ = self._modified(module, "ones", torch.ones_like, bias="zero")
        collapse = not ops.is_linear and module.groups == 1
        if collapse:  # one output and one input channel suffice, see the class docstring
            ones_w = ones_w[:1, :1]
        shape = (1, 1, *input.shape[2:]) if collapse else (1, *input.shape[1:])
        key = (shape, input.dtype, input.device, ones_w.shape)
        denom = self._denominators.get(key)
        if denom is None:
            ones = torch.ones(shape, dtype=input.dtype, device=input.device)
            scale = input.shape[1] if collapse else 1  # the input channels the collapsed kernel stands for
            denom = self._stabilize(ops.forward(ones, ones_w, None) * scale)
            self._denominators = {key: denom}
        if not collapse:
            return ops.transpose(input.shape, ones_w, relevance / denom)
        ratio = relevance.sum(dim=1, keepdim=True).div_(denom)
        one_channel = ops.transpose((input.shape[0], 1, *input.shape[2:]), ones_w, ratio)
        return one_channel.expand(input.shape).contiguous(memory_format=memory_format(input))

    def remove(self) -> None:
        """Drop cached denominators too."""
        self._denominators.clear()
        super().remove()


class ZBoxRule(ParametricRule):
    """zennit's ``ZBox`` rule for a bounded input (the first layer of :func:`epsilon_gamma_box`).

    The layer's own output is ``z``; the bound terms ``W+ low + b+`` and ``W- high + b-`` depend only on the
    input shape and are cached.

    Parameters
    ----------
    low, high : torch.Tensor or float
        Lowest and highest possible input values, broadcastable to the input (e.g. ``(1, 3, 1, 1)``).
    stabilizer : float or callable
        As in :class:`zennit.rules.ZBox`.
    """

    def __init__(
        self,
        low: Tensor | float,
        high: Tensor | float,
        stabilizer: float | Callable[[Tensor], Tensor] = 1e-6,
    ) -> None:
        super().__init__()
        self.low = low
        self.high = high
        self.stabilizer = stabilizer
        self._stabilize = make_stabilizer(stabilizer)
        self._bounds: dict[tuple[Any, ...], tuple[Tensor, Tensor, Tensor]] = {}

    def copy(self) -> ZBoxRule:
        """Return a fresh instance with the same bounds and stabilizer."""
        return ZBoxRule(self.low, self.high, self.stabilizer)

    def relevance(self, module: nn.Module, input: Tensor, output: Tensor, relevance: Tensor) -> Tensor:
        """Apply the z-box rule."""
        ops = LinearOps(module)
        w_pos, b_pos = self._modified(module, "pos", positive_part, bias="mod")
        w_neg, b_neg = self._modified(module, "neg", negative_part, bias="mod")
        shape = (1, *input.shape[1:])
        weight = param(module, "weight")
        key = (tuple(shape), input.dtype, input.device, weight.data_ptr(), weight._version)
        cached = self._bounds.get(key)
        if cached is None:
            low = expand(self.low, shape).to(input)
            high = expand(self.high, shape).to(input)
            bound = ops.forward(low, w_pos, b_pos) + ops.forward(high, w_neg, b_neg)
            cached = (low, high, bound)
            self._bounds = {key: cached}
        low, high, bound = cached
        ratio = relevance / self._stabilize(output - bound)
        weight = param(module, "weight").detach()
        return (
            input * ops.transpose(input.shape, weight, ratio)
            - low * ops.transpose(input.shape, w_pos, ratio)
            - high * ops.transpose(input.shape, w_neg, ratio)
        )

    def remove(self) -> None:
        """Drop cached bounds too."""
        self._bounds.clear()
        super().remove()
