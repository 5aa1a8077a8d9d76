"""The machinery of the efficient LRP rules: a rule is the backward of one autograd function.

A :class:`RuleHook` runs its module's forward on a detached input and wraps the output in an autograd
function whose backward *is* the rule, so autograd merely chains the rules (see
:mod:`pathxai.explain.rules` for the rules and why this is faster than zennit's stock hooks).
:class:`ParametricRule` adds cached modified weights; the tensor helpers here are shared by the rules.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn import grad as torch_grad
from zennit.core import Hook, RemovableHandle, RemovableHandleList, Stabilizer

__all__ = [
    "LinearOps",
    "ParametricRule",
    "RuleHook",
    "is_fast_module",
    "make_stabilizer",
    "memory_format",
    "negative_part",
    "non_negative",
    "param",
    "plain_gradient",
    "positive_part",
]

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


class LinearOps:
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
            return plain_gradient(ctx.module, input, relevance), None, None, None
        return hook.relevance(ctx.module, input, output, relevance), None, None, None


def plain_gradient(module: nn.Module, input: Tensor, grad_output: Tensor) -> Tensor:
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
        weight = param(module, "weight")
        module_bias = param(module, "bias")
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


def param(module: nn.Module, name: str) -> Any:
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


def memory_format(t: Tensor) -> torch.memory_format:
    """Return the memory format of a 4-d tensor (channels_last or contiguous)."""
    if t.ndim == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


def non_negative(t: Tensor) -> bool:
    """Whether every element is >= 0 (False for NaN); one reduction, no temporary mask."""
    return t.numel() == 0 or bool(t.min() >= 0)


def positive_part(t: Tensor) -> Tensor:
    """The positive part of ``t``."""
    return t.clamp(min=0)


def negative_part(t: Tensor) -> Tensor:
    """The negative part of ``t``."""
    return t.clamp(max=0)
