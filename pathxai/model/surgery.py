"""Channel surgery: shrink a network to the channels a pruning plan keeps.

A *channel plan* maps the qualified name of a ``Conv2d``/``Linear`` layer (as in
``model.named_modules()``) to the sorted indices of the output channels it keeps, relative to the
unpruned base architecture. :func:`apply_channel_plan` rebuilds that smaller network from a freshly
built base model with Torch-Pruning's :class:`~torch_pruning.DependencyGraph`, so everything that
depends on a removed channel follows it: the BatchNorm after the convolution, the input channels of
the next layer, and in residual networks every layer coupled by an addition.

The plan is applied by the model loader whenever a model card carries ``channel_plan``; the pruning
package (:mod:`pathxai.prune`) produces such plans. :class:`ChannelTracker` keeps, while pruning, the
base index of every surviving channel so that the plan can be written down.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn

from pathxai.errors import PruneError

__all__ = [
    "ChannelTracker",
    "apply_channel_plan",
    "build_dependency_graph",
    "prunable_layers",
    "validate_channel_plan",
]

_PRUNABLE = (nn.Conv2d, nn.Linear)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Return the layers whose output channels a plan may name.

    Parameters
    ----------
    model
        Any network.

    Returns
    -------
    dict[str, nn.Module]
        ``Conv2d`` and ``Linear`` modules by qualified name, in definition order.
    """
    return {name: m for name, m in model.named_modules() if isinstance(m, _PRUNABLE)}


def _out_channels(module: nn.Module) -> int:
    if isinstance(module, nn.Conv2d):
        return int(module.out_channels)
    if isinstance(module, nn.Linear):
        return int(module.out_features)
    raise TypeError(f"not a prunable layer: {type(module).__name__}")


def build_dependency_graph(model: nn.Module, input_size: int) -> tp.DependencyGraph:
    """Trace ``model`` on one dummy RGB image and build its dependency graph.

    Parameters
    ----------
    model
        The network; its train/eval mode is restored afterwards.
    input_size
        Side of the square input patch in pixels.

    Returns
    -------
    torch_pruning.DependencyGraph
        The graph (it keeps a reference to ``model``).
    """
    if int(input_size) <= 0:
        raise ValueError(f"input_size must be a positive number of pixels, got {input_size}")
    was_training = model.training
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.zeros(1, 3, int(input_size), int(input_size), device=device)
    try:
        with torch.enable_grad():
            graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    finally:
        model.train(was_training)
    return graph


def _output_layers(graph: tp.DependencyGraph, layers: Mapping[str, nn.Module]) -> set[str]:
    """Names of layers whose output channels reach the network output (the logits)."""
    out: set[str] = set()
    for name, module in layers.items():
        if module not in graph.module2node:
            continue
        fn = tp.prune_conv_out_channels if isinstance(module, nn.Conv2d) else tp.prune_linear_out_channels
        group = graph.get_pruning_group(module, fn, [0])
        for dep, _ in group:
            node = dep.target
            reaches_output = node.type == tp.ops.OPTYPE.OUTPUT or (
                graph.is_out_channel_pruning_fn(dep.handler) and not node.outputs
            )
            if reaches_output:
                out.add(name)
                break
    return out


class ChannelTracker:
    """Follow which base-architecture channel every surviving output channel is.

    Parameters
    ----------
    model
        The (unpruned or already partly pruned) network.
    base_indices
        For a partly pruned network, the base index lists it already has (a channel plan);
        layers not listed start at ``range(out_channels)``.
    """

    def __init__(self, model: nn.Module, base_indices: Mapping[str, Sequence[int]] | None = None) -> None:
        self._names = {m: n for n, m in prunable_layers(model).items()}
        self.base: dict[str, list[int]] = {}
        for module, name in self._names.items():
            given = None if base_indices is None else base_indices.get(name)
            self.base[name] = list(given) if given is not None else list(range(_out_channels(module)))
            if len(self.base[name]) != _out_channels(module):
                raise PruneError(
                    f"layer {name!r} has {_out_channels(module)} output channels but its recorded plan "
                    f"lists {len(self.base[name])}",
                    hint="the model and its channel plan do not belong together",
                )
        self.initial = {n: len(v) for n, v in self.base.items()}

    def record(self, group: tp.Group) -> None:
        """Update the base indices with a group *before* it is pruned.

        Parameters
        ----------
        group
            A Torch-Pruning group holding the indices that are about to be removed.
        """
        graph = group._DG
        for dep, idxs in group:
            module = dep.target.module
            name = self._names.get(module)
            if name is None or not graph.is_out_channel_pruning_fn(dep.handler):
                continue
            gone = set(int(i) for i in idxs)
            self.base[name] = [b for i, b in enumerate(self.base[name]) if i not in gone]

    def prune(self, group: tp.Group) -> None:
        """Record ``group`` and prune it."""
        self.record(group)
        group.prune()

    def channel_plan(self, only_changed: bool = True) -> dict[str, list[int]]:
        """Return the kept base indices per layer.

        Parameters
        ----------
        only_changed
            List only layers that lost channels.
        """
        return {
            name: list(kept)
            for name, kept in self.base.items()
            if not only_changed or len(kept) != self.initial[name]
        }


def validate_channel_plan(
    model: nn.Module, channel_plan: Mapping[str, Iterable[int]]
) -> dict[str, list[int]]:
    """Check a plan against the (unpruned) ``model`` and normalise it.

    Parameters
    ----------
    model
        The base architecture the plan is relative to.
    channel_plan
        Layer name -> kept output-channel indices.

    Returns
    -------
    dict[str, list[int]]
        The plan with sorted integer index lists.

    Raises
    ------
    PruneError
        Unknown layer, a layer that is not a Conv2d/Linear, no kept channel, duplicated or
        out-of-range indices.
    """
    if not isinstance(channel_plan, Mapping):
        raise PruneError(
            f"a channel plan must map layer names to index lists, got {type(channel_plan).__name__}"
        )
    layers = prunable_layers(model)
    modules = dict(model.named_modules())
    clean: dict[str, list[int]] = {}
    for name, kept in channel_plan.items():
        if name not in modules:
            known = ", ".join(list(layers)[:8])
            raise PruneError(
                f"channel plan names layer {name!r}, which the {type(model).__name__} model does not have",
                hint=f"prunable layers are e.g. {known}; was the plan made for another architecture?",
            )
        if name not in layers:
            raise PruneError(
                f"channel plan names layer {name!r}, a {type(modules[name]).__name__}; "
                "only Conv2d and Linear output channels can be planned"
            )
        try:
            idx = [int(i) for i in kept]
        except (TypeError, ValueError) as exc:
            raise PruneError(f"channel plan for layer {name!r} is not a list of integers: {exc}") from exc
        n = _out_channels(layers[name])
        if not idx:
            raise PruneError(f"channel plan keeps no channel of layer {name!r}; keep at least one")
        if len(set(idx)) != len(idx):
            raise PruneError(f"channel plan for layer {name!r} repeats channel indices")
        bad = [i for i in idx if i < 0 or i >= n]
        if bad:
            raise PruneError(
                f"channel plan for layer {name!r} keeps channels {bad[:5]} but the layer has only {n} "
                f"(indices 0..{n - 1})",
                hint="the plan does not fit this model (different width or architecture)",
            )
        clean[name] = sorted(idx)
    return clean


def apply_channel_plan(
    model: nn.Module, channel_plan: Mapping[str, Sequence[int]], input_size: int
) -> nn.Module:
    """Shrink ``model`` in place to the channels ``channel_plan`` keeps.

    Parameters
    ----------
    model
        A freshly built, unpruned network of the plan's base architecture.
    channel_plan
        Layer name -> sorted kept output-channel indices relative to the base architecture. Layers
        coupled to a planned layer (BatchNorm, the next layer's inputs, residual partners) follow it;
        coupled layers listed in the plan must keep the same channels.
    input_size
        Side of the square input patch, used to trace the network.

    Returns
    -------
    nn.Module
        ``model`` itself, now with fewer channels. Weights of kept channels are unchanged, so loading a
        pruned state dict afterwards reproduces the pruned network exactly.

    Raises
    ------
    PruneError
        The plan names unknown or unprunable layers, keeps impossible channels, would change the number
        of classes, or contradicts itself across coupled layers.
    ValueError
        ``input_size`` is not positive.
    """
    plan = validate_channel_plan(model, channel_plan)
    if not plan:
        return model
    layers = prunable_layers(model)
    graph = build_dependency_graph(model, input_size)
    outputs = _output_layers(graph, {n: layers[n] for n in plan})
    for name in outputs:
        if len(plan[name]) != _out_channels(layers[name]):
            raise PruneError(
                f"channel plan removes output channels of {name!r}, which produces the logits; "
                "pruning must never change the classifier output"
            )
    tracker = ChannelTracker(model)
    for name, module in layers.items():
        if name not in plan:
            continue
        if module not in graph.module2node:
            raise PruneError(f"layer {name!r} is not used in the forward pass; it cannot be pruned by plan")
        current = tracker.base[name]
        kept = set(plan[name])
        missing = sorted(kept - set(current))
        if missing:
            raise PruneError(
                f"channel plan for {name!r} keeps channels {missing[:5]} that a coupled layer's plan "
                "already removed",
                hint="layers joined by a residual addition must keep the same channels",
            )
        remove = [i for i, b in enumerate(current) if b not in kept]
        if not remove:
            continue
        fn = tp.prune_conv_out_channels if isinstance(module, nn.Conv2d) else tp.prune_linear_out_channels
        group = graph.get_pruning_group(module, fn, remove)
        tracker.prune(group)
    for name, kept_list in plan.items():
        if tracker.base[name] != kept_list:
            raise PruneError(
                f"channel plan for {name!r} cannot be met: coupled layers removed channels it keeps",
                hint="layers joined by a residual addition must keep the same channels",
            )
    return model
