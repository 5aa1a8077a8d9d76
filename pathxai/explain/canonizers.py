"""Canonize the architectures a user brings (DenseNet, EfficientNet, MobileNet, timm CNNs) for LRP, by graph.

zennit's canonizers match module *names and order* (:class:`~zennit.torchvision.ResNetCanonizer` knows
torchvision's ResNet blocks; :class:`~zennit.canonizers.SequentialMergeBatchNorm` merges a batch norm into the
module registered just before it). Other families compute part of their forward in plain Python: residual
``+``, squeeze-excitation ``scale * x``, ``F.relu``, ``torch.cat``, pooling functions. Autograd would pass
relevance through those as a gradient (a residual sum would *copy* relevance to both branches), so LRP
would return garbage without any warning.

:func:`plan_lrp` traces the model with :mod:`torch.fx`, so every operation is visible, and

* **keeps zennit's own path** for torchvision ResNets and for models whose graph needs no rewrite
  (pathxai's architectures, VGG-style stacks): nothing changes for them;
* otherwise rewrites the graph (:func:`graph_canonize`): each ``a + b`` of two tensors becomes
  :class:`zennit.layer.Sum` (the z-rule splits relevance in proportion to the summands), each gating product
  ``x * g`` (squeeze-excitation, layer scale) becomes :class:`Gate`, whose rule gives all relevance to the
  gated signal ``x`` (the gate is treated as a constant weight, as for LSTM gates, Arras et al. 2017),
  ``F.relu`` and pooling functions become modules with their usual rules, and every batch norm fed by a
  convolution alone is fused into it. A batch norm that cannot be fused (DenseNet's BN-ReLU-conv order,
  after a concatenation) stays and gets the epsilon rule of an affine layer (:data:`GRAPH_LAYER_MAP`);
* **stops** with :class:`~pathxai.errors.ExplainError` naming the operation or layer when anything has no
  rule: attention, layer norm, an elementwise product of two feature maps, an unknown function. timm ViTs
  never get here (:mod:`pathxai.explain.attnlrp` explains them); other models with attention or layer norm
  (torchvision's ViT, ConvNeXt) are refused with "not supported yet".

The same canonized graph is used by the fast rules and by zennit's stock rules (``lrp_zennit``), so the two
agree to float rounding, and the graph canonizer is checked against zennit's ResNetCanonizer in the tests.
"""

from __future__ import annotations

import copy
import operator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp
from torch.nn.utils.fusion import fuse_conv_bn_eval
from zennit import rules as zrules
from zennit.core import Hook
from zennit.layer import Sum
from zennit.types import Activation, AvgPool, BatchNorm, Linear, MaxPool

from pathxai.errors import ExplainError
from pathxai.explain.canonize import NEUTRAL_MODULES, frozen_copy, is_resnet
from pathxai.explain.rules import RuleHook
from pathxai.model.projection import ConceptProjection

__all__ = ["Gate", "GateRule", "LRPPlan", "graph_canonize", "graph_layer_map", "plan_lrp"]

Tensor = torch.Tensor


class Gate(nn.Module):
    """``x * g`` for a stacked input ``(..., 2)`` = ``stack([x, g.expand_as(x)], -1)``: a gating product LRP sees."""

    def forward(self, input: Tensor) -> Tensor:
        """Return ``input[..., 0] * input[..., 1]``."""
        return input[..., 0] * input[..., 1]


class GateRule(RuleHook):
    """LRP rule of :class:`Gate`: all relevance to the gated signal, none to the gate (a constant weight)."""

    def copy(self) -> GateRule:
        """Return a fresh instance."""
        return GateRule()

    def relevance(self, module: nn.Module, input: Tensor, output: Tensor, relevance: Tensor) -> Tensor:
        """Stack ``(relevance, 0)``: the epsilon rule of ``x -> g * x`` with ``g`` fixed returns the relevance."""
        return torch.stack([relevance, torch.zeros_like(relevance)], dim=-1)


def graph_layer_map(epsilon: float = 1e-6) -> list[tuple[Any, Hook]]:
    """Rules for the modules :func:`graph_canonize` leaves, prepended to a composite's layer map.

    Parameters
    ----------
    epsilon : float
        Stabiliser of the epsilon rule on batch norms that could not be fused (affine layers with a bias).

    Returns
    -------
    list of (types, hook)
    """
    return [(Gate, GateRule()), (BatchNorm, zrules.Epsilon(epsilon=epsilon))]


@dataclass
class LRPPlan:
    """How LRP will treat a model.

    Attributes
    ----------
    canonizer : str
        ``"zennit-resnet"`` (zennit's ResNetCanonizer), ``"sequential"`` (zennit's SequentialMergeBatchNorm;
        the graph needs no rewrite) or ``"graph"`` (:func:`graph_canonize`).
    model : torch.nn.Module or None
        For ``"graph"``: the canonized private copy (eval mode, gradients off). ``None`` otherwise.
    """

    canonizer: str
    model: nn.Module | None = None


_ADD = {operator.add, operator.iadd, torch.add}
_MUL = {operator.mul, operator.imul, torch.mul}
_RELU = {F.relu, torch.relu, torch.relu_}
_NEUTRAL_FUNCTIONS = {
    torch.flatten,
    torch.cat,
    torch.concat,
    torch.stack,
    torch.reshape,
    torch.squeeze,
    torch.unsqueeze,
    torch.permute,
    torch.transpose,
    operator.getitem,
    getattr,
}
_NEUTRAL_METHODS = {
    "flatten",
    "view",
    "reshape",
    "squeeze",
    "unsqueeze",
    "contiguous",
    "permute",
    "transpose",
    "size",
    "dim",
    "expand_as",
}
#: Modules that compute the identity in eval mode (stochastic depth of torchvision and timm).
_EVAL_IDENTITY_MODULES = ("StochasticDepth", "DropPath")
_TRANSFORMER_LEAVES = (nn.MultiheadAttention, nn.LayerNorm)


class _Tracer(fx.Tracer):
    """Trace into every module except leaves (no children) and the rule-carrying modules."""

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return isinstance(m, (Sum, Gate)) or next(m.children(), None) is None


def _has_rule(module: nn.Module) -> bool:
    if isinstance(module, nn.MultiheadAttention):
        return False
    return isinstance(
        module,
        (Linear, BatchNorm, Activation, AvgPool, MaxPool, Sum, Gate, ConceptProjection, *NEUTRAL_MODULES),
    )


def _name(target: Any) -> str:
    return getattr(target, "__name__", None) or str(target)


def _transformer_layers(model: nn.Module) -> list[str]:
    """Names of the attention / layer-norm layers of ``model`` (empty for CNNs)."""
    return [
        f"{name or '<root>'} ({type(m).__name__})"
        for name, m in model.named_modules()
        if isinstance(m, _TRANSFORMER_LEAVES) or type(m).__name__ in ("Attention", "LayerNorm2d")
    ]


def _trace(model: nn.Module) -> fx.GraphModule:
    try:
        return fx.GraphModule(model, _Tracer().trace(model))
    except Exception as exc:
        raise ExplainError(
            f"LRP cannot check {type(model).__name__}: torch.fx cannot trace it "
            f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})",
            hint="LRP needs every operation to be visible to pick its rule; use method='gradient'",
        ) from exc


def _shape(node: Any) -> tuple[int, ...] | None:
    meta = getattr(node, "meta", {}).get("tensor_meta") if isinstance(node, fx.Node) else None
    return tuple(meta.shape) if meta is not None and hasattr(meta, "shape") else None


def _sample_size(model: nn.Module) -> int:
    """Side of the blank image for shape propagation, large enough that no feature map is 1 x 1.

    On a 1 x 1 map a squeeze-excitation gate would have the shape of the signal it gates.
    """
    card = getattr(model, "pathxai_card", None)
    return max(int(getattr(card, "input_size", 0) or 0), 160)


@dataclass
class _Rewrite:
    kind: str  # "sum", "gate", "relu", "avgpool", "mean", "identity"
    node: fx.Node


def _classify(gm: fx.GraphModule) -> tuple[list[_Rewrite], list[str]]:
    """Find the nodes to rewrite and the operations without an LRP rule."""
    rewrites: list[_Rewrite] = []
    problems: list[str] = []
    modules = dict(gm.named_modules())
    for node in gm.graph.nodes:
        if node.op == "call_module":
            module = modules[str(node.target)]
            if type(module).__name__ in _EVAL_IDENTITY_MODULES:
                rewrites.append(_Rewrite("identity", node))
            elif not _has_rule(module):
                problems.append(f"layer {node.target} ({type(module).__name__})")
            continue
        if node.op not in ("call_function", "call_method"):
            continue
        target = node.target
        tensors = [a for a in node.args if isinstance(a, fx.Node)]
        is_method = node.op == "call_method"
        if target in _ADD or (is_method and target in ("add", "add_")):
            if len(tensors) == 2 and len(node.args) == 2 and not node.kwargs:
                rewrites.append(_Rewrite("sum", node))
            else:
                problems.append(f"addition of a constant at {node.name}")
        elif target in _MUL or (is_method and target in ("mul", "mul_")):
            if len(tensors) == 2 and len(node.args) == 2 and not node.kwargs:
                rewrites.append(_Rewrite("gate", node))
            else:
                problems.append(f"multiplication by a constant at {node.name}")
        elif target in _RELU or (is_method and target in ("relu", "relu_")):
            rewrites.append(_Rewrite("relu", node))
        elif target in (F.adaptive_avg_pool2d,) and _pool_to_one(node):
            rewrites.append(_Rewrite("avgpool", node))
        elif (target is torch.mean or (is_method and target == "mean")) and _spatial_mean(node):
            rewrites.append(_Rewrite("mean", node))
        elif _name(target) in ("stochastic_depth", "drop_path", "dropout") or target is F.dropout:
            rewrites.append(_Rewrite("identity", node))
        elif target in _NEUTRAL_FUNCTIONS or (is_method and target in _NEUTRAL_METHODS):
            continue
        else:
            problems.append(f"operation {_name(target)} at {node.name}")
    return rewrites, problems


def _pool_to_one(node: fx.Node) -> bool:
    size = node.args[1] if len(node.args) > 1 else node.kwargs.get("output_size")
    return size in (1, (1, 1), [1, 1])


def _spatial_mean(node: fx.Node) -> bool:
    dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
    return isinstance(dim, tuple | list) and sorted(int(d) for d in dim) in ([2, 3], [-2, -1])


def _unfusable_batch_norms(gm: fx.GraphModule) -> list[fx.Node]:
    """Batch-norm nodes whose input is not a convolution used by that batch norm alone."""
    modules = dict(gm.named_modules())
    uses: dict[str, int] = {}
    for node in gm.graph.nodes:
        if node.op == "call_module":
            uses[str(node.target)] = uses.get(str(node.target), 0) + 1
    out = []
    for node in gm.graph.nodes:
        if node.op != "call_module" or not isinstance(modules[str(node.target)], nn.BatchNorm2d):
            continue
        src = node.args[0]
        ok = (
            isinstance(src, fx.Node)
            and src.op == "call_module"
            and isinstance(modules[str(src.target)], nn.Conv2d)
            and len(src.users) == 1
            and uses[str(src.target)] == 1
        )
        if not ok:
            out.append(node)
    return out


def _add_module(gm: fx.GraphModule, prefix: str, module: nn.Module, counter: list[int]) -> str:
    counter[0] += 1
    name = f"lrp_{prefix}_{counter[0]}"
    gm.add_submodule(name, module)
    return name


def _apply(gm: fx.GraphModule, rewrites: list[_Rewrite]) -> list[str]:
    """Rewrite the graph in place; return problems found (products of two feature maps)."""
    graph = gm.graph
    counter = [0]
    problems: list[str] = []
    for rw in rewrites:
        node = rw.node
        new: fx.Node
        with graph.inserting_before(node):
            if rw.kind == "sum":
                a, b = node.args[0], node.args[1]
                stacked = graph.call_function(torch.stack, ((a, b),), {"dim": -1})
                new = graph.call_module(_add_module(gm, "sum", Sum(dim=-1), counter), (stacked,))
            elif rw.kind == "gate":
                a, b = node.args[0], node.args[1]
                sa, sb = _shape(a), _shape(b)
                if (
                    sa is None
                    or sb is None
                    or sa == sb
                    or (sa is not None and sb is not None and _numel(sa) == _numel(sb))
                ):
                    problems.append(f"elementwise product of two feature maps at {node.name}")
                    continue
                x, g = (a, b) if _numel(sa) > _numel(sb) else (b, a)
                expanded = graph.call_method("expand_as", (g, x))
                stacked = graph.call_function(torch.stack, ((x, expanded),), {"dim": -1})
                new = graph.call_module(_add_module(gm, "gate", Gate(), counter), (stacked,))
            elif rw.kind == "relu":
                new = graph.call_module(_add_module(gm, "relu", nn.ReLU(), counter), (node.args[0],))
            elif rw.kind == "avgpool":
                new = graph.call_module(
                    _add_module(gm, "avgpool", nn.AdaptiveAvgPool2d(1), counter), (node.args[0],)
                )
            elif rw.kind == "mean":
                keep = bool(node.kwargs.get("keepdim", node.args[2] if len(node.args) > 2 else False))
                new = graph.call_module(
                    _add_module(gm, "avgpool", nn.AdaptiveAvgPool2d(1), counter), (node.args[0],)
                )
                if not keep:
                    new = graph.call_function(torch.flatten, (new, 1))
            else:  # identity in eval mode (stochastic depth, drop path, functional dropout)
                src = node.args[0]
                if not isinstance(src, fx.Node):
                    problems.append(f"operation {_name(node.target)} at {node.name}")
                    continue
                new = src
        node.replace_all_uses_with(new)
        graph.erase_node(node)
    return problems


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n


def _fuse_batch_norms(gm: fx.GraphModule) -> None:
    """Fuse every batch norm fed by a convolution alone into it (eval-mode statistics)."""
    unfusable = set(_unfusable_batch_norms(gm))
    modules = dict(gm.named_modules())
    for node in list(gm.graph.nodes):
        if node.op != "call_module" or node in unfusable:
            continue
        bn = modules[str(node.target)]
        if not isinstance(bn, nn.BatchNorm2d):
            continue
        src = node.args[0]
        conv = modules[str(src.target)]
        fused = fuse_conv_bn_eval(conv, bn)
        parent, _, child = str(src.target).rpartition(".")
        setattr(gm.get_submodule(parent) if parent else gm, child, fused)
        node.replace_all_uses_with(src)
        gm.graph.erase_node(node)


def graph_canonize(model: nn.Module, sample_size: int = 64) -> fx.GraphModule:
    """Return a canonized private copy of ``model`` as an :class:`torch.fx.GraphModule` (see the module docs).

    Parameters
    ----------
    model : torch.nn.Module
        The caller's model (not modified).
    sample_size : int
        Side of the blank image used to learn tensor shapes (which factor of a product is the gate); at
        least 160 is used, so that no feature map is 1 x 1.

    Returns
    -------
    torch.fx.GraphModule
        Eval mode, gradients off, residual sums and gates as modules, batch norms fused where possible.

    Raises
    ------
    ExplainError
        If an operation or layer has no LRP rule (named in the message).
    """
    prepared = frozen_copy(model)
    gm = _trace(prepared)
    rewrites, problems = _classify(gm)
    _raise_if(model, problems)
    if any(rw.kind == "gate" for rw in rewrites):
        first = next(prepared.parameters(), None)
        dtype = first.dtype if first is not None else torch.float32
        with torch.no_grad():
            side = max(sample_size, 160)
            ShapeProp(gm).propagate(torch.zeros(1, 3, side, side, dtype=dtype))
    _raise_if(model, _apply(gm, rewrites))
    gm.graph.eliminate_dead_code()
    gm.recompile()
    _fuse_batch_norms(gm)
    gm.graph.lint()
    gm.recompile()
    gm.delete_all_unused_submodules()
    return gm.eval()


def _raise_if(model: nn.Module, problems: list[str]) -> None:
    if problems:
        listed = "; ".join(problems[:6]) + (" ..." if len(problems) > 6 else "")
        raise ExplainError(
            f"LRP has no rule for {len(problems)} operation(s) of {type(model).__name__}: {listed}",
            hint="use method='gradient' (or another gradient method) for this model",
        )


def plan_lrp(model: nn.Module) -> LRPPlan:
    """Decide how LRP treats ``model`` (see the module docs).

    Parameters
    ----------
    model : torch.nn.Module
        The caller's model (not modified).

    Returns
    -------
    LRPPlan

    Raises
    ------
    ExplainError
        For transformers other than timm ViTs (those take :mod:`pathxai.explain.attnlrp` before this) and for
        models with operations or layers that have no LRP rule.
    """
    layers = _transformer_layers(model)
    if layers:
        listed = ", ".join(layers[:4]) + (" ..." if len(layers) > 4 else "")
        raise ExplainError(
            f"LRP for attention and layer norm outside timm's VisionTransformer (torchvision ViT, ConvNeXt) "
            f"is not supported yet; {type(model).__name__} has {listed}",
            hint="AttnLRP covers timm ViTs (timm:vit_*); use method='gradient', 'smoothgrad' or "
            "'integrated_gradients' for this model",
        )
    if is_resnet(model):
        return LRPPlan("zennit-resnet")
    gm = _trace(copy.deepcopy(model).eval())
    rewrites, problems = _classify(gm)
    _raise_if(model, problems)
    if not rewrites and not _unfusable_batch_norms(gm):
        return LRPPlan("sequential")
    return LRPPlan("graph", graph_canonize(model, _sample_size(model)))
