"""LRP for vision transformers (timm ``VisionTransformer``): AttnLRP as gradient x input with modified backward.

AttnLRP (Achtibat et al., ICML 2024) extends LRP to attention, layer norm and gated activations. Every rule it
uses can be written as "relevance = input x (modified gradient)": if each operation's backward maps the
gradient ``g_y`` of its output to a ``g_x`` such that ``x * g_x`` is the rule's relevance of ``x`` given
``R_y = y * g_y``, then one backward pass seeded with the one-hot target, times the input, is LRP of the whole
network. Linear maps need nothing (their gradient *is* the LRP-0 rule); the operations below get a modified
backward (:class:`AttnLRPCanonizer` patches the ``forward`` of the modules of a private copy):

* **Linear and convolution layers** (patch embedding, q/k/v, projections, MLP, head): the epsilon rule,
  ``g_x = W^T (g_y * y / (y + eps sign(y)))``; the bias takes its share of relevance.
* **LayerNorm**: the identity rule on the normalisation (Ali et al. 2022, AttnLRP): the standard deviation
  is a constant in the backward, ``g_x = (g' - mean(g')) / std`` with ``g' = weight * g_y``. The mean
  subtraction stays: it is linear, so it conserves relevance (a detached mean would absorb relevance as a
  bias would).
* **GELU, SiLU, QuickGELU, ReLU**: gates, ``f(x) = x * gate(x)`` with the gate a constant: the identity rule,
  all relevance of the output goes to the input.
* **Attention**: the matrix products ``q k^T`` and ``attn v`` get the uniform rule (each factor receives
  half of the relevance: the gradient is halved), and the softmax AttnLRP's rule
  ``R_x = x * (R_s - s * sum(R_s))``, which is exactly gradient x input of the softmax, so its backward is
  the plain gradient (``attention="attnlrp"``, the default). ``attention="cp"`` gives CP-LRP instead (Ali
  et al. 2022): the attention weights are constants, all relevance flows through the values.

AttnLRP is the default because its softmax rule lets relevance reach the tokens through the queries and keys,
which is where a ViT decides what to attend to; CP-LRP ignores that path but conserves relevance exactly
(without biases), which makes it the stricter test of the other rules.

Residual sums, the position embedding, layer scale, token pooling and averaging are linear, so their gradient
is already the z-rule (a sum splits relevance in proportion to its summands; the position embedding and
class token absorb relevance as biases do).

:func:`check_transformer` accepts only the modules whose forward is known here (timm's ``VisionTransformer``,
``Block``, ``Attention``, ``Mlp``, ``PatchEmbed``, ``LayerScale`` and leaf layers with a rule) and names every
other one, so a model holding a layer without a rule stops with its name instead of returning garbage.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch import nn
from zennit.canonizers import AttributeCanonizer

from pathxai.errors import ExplainError
from pathxai.explain.canonize import NEUTRAL_MODULES, frozen_copy, no_rule_error
from pathxai.model.external import LinearHeadModel

__all__ = [
    "ATTENTION_RULES",
    "AttnLRPCanonizer",
    "attnlrp_copy",
    "check_transformer",
    "half_gradient",
    "is_timm_transformer",
]

Tensor = torch.Tensor

#: Rules for the softmax of attention: AttnLRP's (default) or CP-LRP's (attention weights constant).
ATTENTION_RULES = ("attnlrp", "cp")

#: timm modules whose forward this module knows (by class name; timm is an optional dependency).
_TIMM_CONTAINERS = ("VisionTransformer", "Block", "Mlp", "PatchEmbed", "LayerScale", "Attention")
#: timm modules computing the identity in eval mode.
_TIMM_EVAL_IDENTITY = ("DropPath", "PatchDropout")
#: Pooling of the token sequence with a rule (class token, mean of tokens, none).
_POOLS = ("token", "avg", "")


def _timm_name(module: nn.Module) -> str | None:
    """The class name of a timm module, ``None`` for a class defined outside timm."""
    cls = type(module)
    return cls.__name__ if cls.__module__.split(".", 1)[0] == "timm" else None


def is_timm_transformer(model: nn.Module) -> bool:
    """Whether ``model`` holds a timm ``VisionTransformer`` or timm ``Attention`` (the AttnLRP path)."""
    return any(_timm_name(m) in ("VisionTransformer", "Attention") for m in model.modules())


# --------------------------------------------------------------------------------------------------------
# modified backward passes
# --------------------------------------------------------------------------------------------------------


class _ScaleGradient(torch.autograd.Function):
    """Identity whose backward multiplies the gradient by a constant."""

    @staticmethod
    def forward(ctx: Any, input: Tensor, factor: float) -> Tensor:  # type: ignore[override]
        ctx.factor = factor
        return input.view_as(input)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        return grad * ctx.factor, None


def half_gradient(product: Tensor) -> Tensor:
    """The uniform rule of a product of two inputs: each receives half of the relevance (halved gradient)."""
    return _ScaleGradient.apply(product, 0.5)  # type: ignore[no-any-return]


class _EpsilonGradient(torch.autograd.Function):
    """Identity on a layer output ``y`` whose backward is ``g * y / (y + eps sign(y))`` (the epsilon rule)."""

    @staticmethod
    def forward(ctx: Any, output: Tensor, epsilon: float) -> Tensor:  # type: ignore[override]
        ctx.epsilon = epsilon
        ctx.save_for_backward(output)
        return output.view_as(output)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        (output,) = ctx.saved_tensors
        # y / (y + eps sign(y)) in three passes without temporaries beyond one (a where() costs 3x more)
        ratio = output.abs().add_(ctx.epsilon).copysign_(output)
        torch.div(output, ratio, out=ratio)
        return ratio.mul_(grad), None


def epsilon_gradient(output: Tensor, epsilon: float) -> Tensor:
    """Apply the epsilon rule's stabiliser to the backward of the layer that produced ``output``."""
    return _EpsilonGradient.apply(output, epsilon)  # type: ignore[no-any-return]


class _LayerNormIdentity(torch.autograd.Function):
    """``F.layer_norm`` over the last dimension whose backward treats the standard deviation as a constant."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any, input: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float
    ) -> Tensor:
        output, _, rstd = torch.native_layer_norm(input, input.shape[-1:], weight, bias, eps)
        ctx.save_for_backward(rstd, weight)
        ctx.has_weight = weight is not None
        return output

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None, None, None]:  # type: ignore[override]
        rstd, weight = ctx.saved_tensors
        if ctx.has_weight:
            grad = grad * weight
        return (grad - grad.mean(-1, keepdim=True)) * rstd, None, None, None


def _gelu_gate(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.erf(x * (1.0 / math.sqrt(2.0))))


def _gelu_tanh_gate(x: Tensor) -> Tensor:
    return 0.5 * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x.pow(3))))


def _gate_of(module: nn.Module) -> Callable[[Tensor], Tensor] | None:
    """``gate`` with ``module(x) == x * gate(x)``, for the activations that are gates; ``None`` otherwise."""
    timm_name = _timm_name(module)
    if isinstance(module, nn.GELU):
        return _gelu_tanh_gate if module.approximate == "tanh" else _gelu_gate
    if timm_name == "GELU":
        return _gelu_gate
    if timm_name == "GELUTanh":
        return _gelu_tanh_gate
    if timm_name == "QuickGELU":
        return lambda x: torch.sigmoid(1.702 * x)
    if isinstance(module, nn.SiLU):
        return torch.sigmoid
    if isinstance(module, nn.ReLU):
        return lambda x: (x > 0).to(x.dtype)
    return None


# --------------------------------------------------------------------------------------------------------
# patched forwards
# --------------------------------------------------------------------------------------------------------


def _epsilon_forward(module: nn.Module, epsilon: float, input: Tensor) -> Tensor:
    return epsilon_gradient(type(module).forward(module, input), epsilon)


def _layer_norm_forward(module: nn.LayerNorm, input: Tensor) -> Tensor:
    return _LayerNormIdentity.apply(input, module.weight, module.bias, module.eps)  # type: ignore[no-any-return]


def _gate_forward(gate: Callable[[Tensor], Tensor], input: Tensor) -> Tensor:
    with torch.no_grad():
        factor = gate(input)
    return input * factor


def _attention_forward(
    module: Any, rule: str, x: Tensor, attn_mask: Tensor | None = None, is_causal: bool = False
) -> Tensor:
    """The forward of timm's ``Attention`` written out, with the rules of the products and the softmax."""
    if attn_mask is not None or is_causal:
        raise ExplainError(
            "AttnLRP explains unmasked self-attention only",
            hint="call the model without attn_mask / is_causal",
        )
    batch, tokens, _ = x.shape
    heads, head_dim = int(module.num_heads), int(module.head_dim)
    qkv = module.qkv(x).reshape(batch, tokens, 3, heads, head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    q, k = module.q_norm(q), module.k_norm(k)
    scores = half_gradient((q * module.scale) @ k.transpose(-2, -1))
    attn = scores.softmax(dim=-1)
    if rule == "cp":  # CP-LRP: the attention weights are constants, all relevance goes to the values
        out = attn.detach() @ v
    else:
        out = half_gradient(attn @ v)
    out = out.transpose(1, 2).reshape(batch, tokens, heads * head_dim)
    return module.proj(module.norm(out))  # type: ignore[no-any-return]


class AttnLRPCanonizer(AttributeCanonizer):
    """A zennit canonizer that patches the forward of a transformer's modules with the AttnLRP rules.

    Registered on a model (``apply``), the model's plain backward pass computes AttnLRP's modified gradient,
    so ``input * gradient`` of the target logit is the relevance; ``remove`` restores the modules.

    Parameters
    ----------
    epsilon : float
        Stabiliser of the epsilon rule of linear and convolution layers.
    attention : str
        ``"attnlrp"`` (AttnLRP's softmax rule) or ``"cp"`` (CP-LRP: attention weights constant).
    """

    def __init__(self, epsilon: float = 1e-6, attention: str = "attnlrp") -> None:
        if attention not in ATTENTION_RULES:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_RULES)}, got {attention!r}")
        self.epsilon = float(epsilon)
        self.attention = attention
        super().__init__(self._attributes)

    def _attributes(self, name: str, module: nn.Module) -> dict[str, Any] | None:
        # partial objects of module-level functions: a deep copy of the model rebinds them to the copy
        if _timm_name(module) == "Attention":
            return {"forward": partial(_attention_forward, module, self.attention)}
        if isinstance(module, nn.LayerNorm):
            return {"forward": partial(_layer_norm_forward, module)}
        if isinstance(module, nn.Linear | nn.Conv2d):
            return {"forward": partial(_epsilon_forward, module, self.epsilon)}
        gate = _gate_of(module)
        if gate is not None:
            return {"forward": partial(_gate_forward, gate)}
        return None

    def copy(self) -> AttnLRPCanonizer:
        """Return a canonizer with the same rules."""
        return AttnLRPCanonizer(self.epsilon, self.attention)


# --------------------------------------------------------------------------------------------------------
# what has a rule
# --------------------------------------------------------------------------------------------------------


def _problem(name: str, module: nn.Module) -> str | None:
    """Why ``module`` has no rule here (``None`` when it has one)."""
    label = f"layer {name or '<root>'} ({type(module).__name__})"
    timm_name = _timm_name(module)
    if timm_name == "VisionTransformer":
        if getattr(module, "attn_pool", None) is not None:
            return f"{label}: attention pooling"
        pool = getattr(module, "global_pool", "token")
        return None if pool in _POOLS else f"{label}: {pool!r} pooling"
    if timm_name == "Attention":
        return f"{label}: gated attention" if getattr(module, "gate", None) is not None else None
    if timm_name in _TIMM_CONTAINERS or timm_name in _TIMM_EVAL_IDENTITY:
        return None
    if isinstance(module, nn.LayerNorm):
        ok = len(module.normalized_shape) == 1
        return None if ok else f"{label}: normalised over {len(module.normalized_shape)} dimensions"
    if isinstance(module, nn.Conv2d):
        ok = module.padding_mode == "zeros"
        return None if ok else f"{label}: {module.padding_mode} padding"
    if isinstance(module, (nn.Linear, LinearHeadModel, nn.Sequential, nn.ModuleList, *NEUTRAL_MODULES)):
        return None
    if _gate_of(module) is not None:
        return None
    return label


def check_transformer(model: nn.Module) -> None:
    """Raise :class:`~pathxai.errors.ExplainError` naming every module of ``model`` without an AttnLRP rule.

    Parameters
    ----------
    model : torch.nn.Module
        A timm ``VisionTransformer`` (or :class:`~pathxai.model.external.LinearHeadModel` over one).

    Raises
    ------
    ExplainError
        If a module's forward is unknown here (another transformer family, a custom wrapper, SwiGLU MLPs,
        RMS norm, attention pooling, ...), listing the modules.
    """
    problems = [p for name, m in model.named_modules() if (p := _problem(name, m)) is not None]
    if problems:
        raise no_rule_error(
            model,
            problems,
            "AttnLRP covers timm VisionTransformer models (attention, LayerNorm, GELU MLPs, "
            "class-token or average pooling); use method='gradient' for this model",
            shown=6,
        )


def attnlrp_copy(model: nn.Module, *, epsilon: float = 1e-6, attention: str = "attnlrp") -> nn.Module:
    """A private copy of a timm ViT whose backward computes AttnLRP (see the module docs).

    Parameters
    ----------
    model : torch.nn.Module
        The caller's model (not modified).
    epsilon : float
        Stabiliser of the epsilon rule.
    attention : str
        ``"attnlrp"`` or ``"cp"`` (see :class:`AttnLRPCanonizer`).

    Returns
    -------
    torch.nn.Module
        The copy: eval mode, gradients of the parameters off, the canonizer applied for good.

    Raises
    ------
    ExplainError
        If a module has no rule (:func:`check_transformer`).
    """
    canonizer = AttnLRPCanonizer(epsilon, attention)
    check_transformer(model)
    prepared = frozen_copy(model)
    canonizer.apply(prepared)
    return prepared
