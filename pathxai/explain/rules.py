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

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import grad as torch_grad
from zennit.core import Hook, RemovableHandle, RemovableHandleList, Stabilizer, expand
from zennit.layer import Sum

Tensor = torch.Tensor

_CONV_INPUT_GRAD: dict[type, Callable[..., Tensor]] = {
    nn.Conv1d: torch_grad.conv1d_input,
    nn.Conv2d: torch_grad.conv2d_input,
    nn.Conv3d: torch_grad.conv3d_input,
}
_CONV_FORWARD: dict[type, Callable[..., Tensor]] = {
    nn.Conv1d: F.conv1d,
    nn.Conv2d: F.conv2d,
    nn.Conv3d: F.conv3d,
}


def is_fast_module(module: nn.Module) -> bool:
    """Return whether the fast parametric rules here support ``module``.

    Parameters
    ----------
    module : torch.nn.Module
        A leaf module.

    Returns
    -------
    bool
        True for :class:`torch.nn.Linear` and zero-padded ``Conv1d/2d/3d`` with numeric padding,
        which are the modules whose relevance the fast rules compute with explicit linear algebra.
    """
    if isinstance(module, nn.Linear):
        return True
    if isinstance(module, tuple(_CONV_FORWARD)):
        return module.padding_mode == "zeros" and not isinstance(module.padding, str)
    return False


class _LinearOps:
    """Forward and transposed application of a module's (modified) weights, for Linear and Conv layers."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self.is_linear = isinstance(module, nn.Linear)
        if not self.is_linear:
            kind = next(kind for kind in _CONV_FORWARD if isinstance(module, kind))
            self._forward = _CONV_FORWARD[kind]
            self._input_grad = _CONV_INPUT_GRAD[kind]

    def forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        """Apply the layer with ``weight`` and ``bias`` in place of its own parameters."""
        if self.is_linear:
            return F.linear(x, weight, bias)
        m = self.module
        return self._forward(x, weight, bias, m.stride, m.padding, m.dilation, m.groups)

    def transpose(self, input_shape: Sequence[int], weight: Tensor, grad: Tensor) -> Tensor:
        """Vector-Jacobian product of the layer with ``weight``: maps an output-shaped tensor to the input."""
        if self.is_linear:
            return grad @ weight
        m = self.module
        return self._input_grad(input_shape, weight, grad, m.stride, m.padding, m.dilation, m.groups)


class _RuleFunction(torch.autograd.Function):
    """Identity on the layer output whose backward maps output relevance to input relevance."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, output: Tensor, hook: RuleHook, module: nn.Module) -> Tensor:  # type: ignore[override]
        ctx.hook = hook
        ctx.module = module
        ctx.save_for_backward(input, output)
        return output.view_as(output)

    @staticmethod
    def backward(ctx: Any, relevance: Tensor) -> tuple[Tensor | None, None, None, None]:  # type: ignore[override]
        input, output = ctx.saved_tensors
        hook: RuleHook = ctx.hook
        if not hook.active:
            return _plain_gradient(ctx.module, input, relevance), None, None, None
        return hook.relevance(ctx.module, input, output, relevance), None, None, None


def _plain_gradient(module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:
    """Return the input gradient of ``module``, using its forward method (bypassing hooks)."""
    with torch.enable_grad():
        x = input.detach().requires_grad_(True)
        (grad,) = torch.autograd.grad(module.forward(x), x, grad_output)
    return grad


class RuleHook(Hook):
    """Base class of the efficient rules: a :class:`zennit.core.Hook` whose backward is an autograd function.

    Subclasses implement :meth:`relevance`. The module computes its forward on a detached input, so autograd
    records no graph for it and never computes its ordinary gradient; the output is then wrapped in
    :class:`_RuleFunction`, whose backward calls :meth:`relevance`. Registration, copying and removal follow
    zennit's hook protocol, so these hooks mix freely with zennit's stock hooks in one composite.
    """

    def pre_forward(self, module: nn.Module, input: tuple[Any, ...]) -> tuple[Any, ...] | None:
        """Keep the graph-connected input for the backward and let the module run on a detached copy."""
        first = input[0]
        if isinstance(first, Tensor) and first.requires_grad and torch.is_grad_enabled():
            self.stored_tensors.setdefault("inputs", []).append(first)
            return (first.detach(), *input[1:])
        return None

    def post_forward(self, module: nn.Module, input: tuple[Any, ...], output: Any) -> Any:
        """Wrap the output in the rule function, connecting it to the stored graph-connected input."""
        pending = self.stored_tensors.get("inputs")
        if not pending or not isinstance(output, Tensor):
            return None
        original = pending.pop()
        return _RuleFunction.apply(original, output, self, module)

    def forward(self, module: nn.Module, input: tuple[Any, ...], output: Any) -> None:
        """Nothing to record: the rule function keeps what the backward needs."""

    def register(self, module: nn.Module) -> RemovableHandleList:
        """Register the pre- and post-forward hooks on ``module``; the returned handles remove them."""
        return RemovableHandleList(
            [
                RemovableHandle(self),
                module.register_forward_pre_hook(self.pre_forward),
                module.register_forward_hook(self.post_forward),
            ]
        )

    def copy(self) -> RuleHook:
        """Return a fresh instance with the same parameters (zennit composites copy one per module)."""
        raise NotImplementedError

    def relevance(self, module: nn.Module, input: Tensor, output: Tensor, relevance: Tensor) -> Tensor:
        """Map the relevance of ``output`` to the relevance of ``input``.

        Parameters
        ----------
        module : torch.nn.Module
            The module this hook is registered to.
        input : torch.Tensor
            The module's input in the forward pass.
        output : torch.Tensor
            The module's output in the forward pass.
        relevance : torch.Tensor
            Relevance of ``output`` (what arrives as gradient in the backward pass).

        Returns
        -------
        torch.Tensor
            Relevance of ``input``.
        """
        raise NotImplementedError


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
        return input * _plain_gradient(module, input, ratio)


class ParametricRule(RuleHook):
    """Base of the rules for Linear and Conv layers; keeps a cache of modified weights per module."""

    def __init__(self) -> None:
        super().__init__()
        self._weights: dict[tuple[Any, ...], tuple[Tensor, Tensor | None]] = {}
        self._module_ref: Callable[[], nn.Module | None] | None = None

    def _modified(
        self, module: nn.Module, key: str, fn: Callable[[Tensor], Tensor], bias: str = "mod"
    ) -> tuple[Tensor, Tensor | None]:
        """Return ``(fn(weight), fn(bias) | bias | None)``, cached until the weights change.

        ``bias`` is ``"mod"`` (apply ``fn``), ``"keep"`` (unmodified) or ``"zero"`` (no bias).
        """
        weight = _param(module, "weight")
        module_bias = _param(module, "bias")
        full: tuple[Any, ...] = (key, bias, weight.data_ptr(), weight._version, weight.dtype, weight.device)
        if module_bias is not None:
            full += (module_bias.data_ptr(), module_bias._version)
        cached = self._weights.get(full)
        if cached is None:
            with torch.no_grad():
                new_weight = fn(weight.detach())
                if module_bias is None or bias == "zero":
                    new_bias = None
                elif bias == "keep":
                    new_bias = module_bias.detach()
                else:
                    new_bias = fn(module_bias.detach())
            cached = (new_weight, new_bias)
            if len(self._weights) > 16:
                self._weights.clear()
            self._weights[full] = cached
        return cached

    def remove(self) -> None:
        """Drop cached weights and stored tensors."""
        self._weights.clear()
        super().remove()


def _param(module: nn.Module, name: str) -> Any:
    """Return a parameter (or ``None`` for an absent bias) of a Linear/Conv module."""
    return getattr(module, name)


def make_stabilizer(value: float | Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """Return a callable computing zennit's ``Stabilizer.ensure(value)`` with fewer passes over memory.

    For a number ``eps`` the result is zennit's ``stabilize(z, eps)``: ``z + eps * sign(z)`` with
    ``sign(0) = +1``, computed as one ``where``; a callable is passed through zennit's ``Stabilizer``.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        eps = float(value)

        def stabilize(z: Tensor) -> Tensor:
            return torch.where(z >= 0, z + eps, z - eps)

        return stabilize
    return Stabilizer.ensure(value)  # type: ignore[no-any-return]


def _memory_format(t: Tensor) -> torch.memory_format:
    """Return the memory format of a 4-d tensor (channels_last or contiguous)."""
    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def _non_negative(t: Tensor) -> bool:
    """Whether every element is >= 0 (False for NaN); one reduction, no temporary mask."""
    return t.numel() == 0 or bool(t.min() >= 0)


def _pos(t: Tensor) -> Tensor:
    return t.clamp(min=0)


def _neg(t: Tensor) -> Tensor:
    return t.clamp(max=0)


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
        ops = _LinearOps(module)
        w_pos, b_pos = self._modified(module, "pos", _pos, bias="mod")
        if _non_negative(input):
            z = ops.forward(input, w_pos, b_pos)
            if isinstance(self.stabilizer, (int, float)):
                # z >= 0 here, where zennit's stabilize(z) is exactly z + epsilon: one op instead of four
                z = z.add_(float(self.stabilizer))
            else:
                z = self._stabilize(z)
            ratio = torch.div(relevance, z, out=z) if z.shape == relevance.shape else relevance / z
            return ops.transpose(input.shape, w_pos, ratio).mul_(input)
        w_neg, _ = self._modified(module, "neg", _neg, bias="zero")
        x_pos, x_neg = _pos(input), _neg(input)
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
        ops = _LinearOps(module)
        w_pos, b_pos = self._modified(module, "pos", _pos, bias="mod")
        w_neg, b_neg = self._modified(module, "neg", _neg, bias="mod")
        shape = input.shape
        if _non_negative(input):
            ratio_p = relevance / self._stabilize(ops.forward(input, w_pos, b_pos))
            ratio_n = relevance / self._stabilize(ops.forward(input, w_neg, b_neg))
            pos = ops.transpose(shape, w_pos, ratio_p)
            neg = ops.transpose(shape, w_neg, ratio_n)
            return input * (self.alpha * pos - self.beta * neg)
        x_pos, x_neg = _pos(input), _neg(input)
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
        ops = _LinearOps(module)
        gamma = self.gamma
        w_up, b_up = self._modified(module, "gamma+", lambda t: t + gamma * _pos(t), bias="mod")
        w_dn, b_dn = self._modified(module, "gamma-", lambda t: t + gamma * _neg(t), bias="mod")
        shape = input.shape
        g_pos = relevance * (output > 0)
        g_neg = relevance * (output < 0)
        if _non_negative(input):
            ratio_p = g_pos / self._stabilize(ops.forward(input, w_up, b_up))
            ratio_n = g_neg / self._stabilize(ops.forward(input, w_dn, b_dn))
            return input * (ops.transpose(shape, w_up, ratio_p) + ops.transpose(shape, w_dn, ratio_n))
        x_pos, x_neg = _pos(input), _neg(input)
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
        ops = _LinearOps(module)
        ratio = relevance / self._stabilize(output)
        return input * ops.transpose(input.shape, _param(module, "weight").detach(), ratio)


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
        ops = _LinearOps(module)
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
        return one_channel.expand(input.shape).contiguous(memory_format=_memory_format(input))

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
        ops = _LinearOps(module)
        w_pos, b_pos = self._modified(module, "pos", _pos, bias="mod")
        w_neg, b_neg = self._modified(module, "neg", _neg, bias="mod")
        shape = (1, *input.shape[1:])
        weight = _param(module, "weight")
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
        weight = _param(module, "weight").detach()
        return (
            input * ops.transpose(input.shape, weight, ratio)
            - low * ops.transpose(input.shape, w_pos, ratio)
            - high * ops.transpose(input.shape, w_neg, ratio)
        )

    def remove(self) -> None:
        """Drop cached bounds too."""
        self._bounds.clear()
        super().remove()
