"""Structured pruning with Torch-Pruning: remove whole channels ranked by a criterion.

:func:`prune_model` drives a :class:`torch_pruning.pruner.BasePruner` interactively, recording the
base index of every surviving channel (:class:`pathxai.model.surgery.ChannelTracker`) so the result
can be saved as a channel plan and rebuilt by the model loader. The classifier output is never pruned.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn
from tqdm.auto import tqdm

from pathxai.errors import PruneError
from pathxai.model.surgery import ChannelTracker, build_dependency_graph, prunable_layers
from pathxai.prune.criteria import DataImportance

__all__ = ["check_ratio", "output_layers", "prune_model"]

#: ``finetune(model, step)`` is called after each pruning step with the pruned network.
FinetuneFn = Callable[[nn.Module, int], None]


def check_ratio(ratio: float, what: str = "ratio") -> float:
    """Return ``ratio`` as a float if it lies in ``[0, 1)``, else raise ``ValueError``."""
    try:
        value = float(ratio)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"pruning {what} must be a number in [0, 1), got {ratio!r}") from exc
    if not 0.0 <= value < 1.0:
        raise ValueError(
            f"pruning {what} must be in [0, 1) (the fraction of channels removed), got {ratio!r}"
        )
    return value


def output_layers(model: nn.Module, input_size: int) -> list[str]:
    """Names of the layers whose output channels are the network's outputs (never pruned)."""
    graph = build_dependency_graph(model, input_size)
    names = []
    for name, module in prunable_layers(model).items():
        node = graph.module2node.get(module)
        if node is not None and not node.outputs:
            names.append(name)
    return names


def prune_model(
    model: nn.Module,
    importance: tp.importance.Importance,
    ratio: float,
    *,
    input_size: int,
    global_pruning: bool = False,
    iterative_steps: int = 1,
    layer_ratios: Mapping[str, float] | None = None,
    max_layer_ratio: float = 0.95,
    finetune: FinetuneFn | None = None,
    base_plan: Mapping[str, Sequence[int]] | None = None,
    progress: bool = False,
) -> dict[str, list[int]]:
    """Prune ``model`` in place and return its channel plan.

    Parameters
    ----------
    model
        The network (modified in place).
    importance
        The criterion (see :mod:`pathxai.prune.criteria`).
    ratio
        Fraction of channels removed, in ``[0, 1)``: from every group (local pruning) or overall
        (global pruning).
    input_size
        Side of the square input, used to trace the network.
    global_pruning
        Rank all groups together instead of each group on its own.
    iterative_steps
        Reach ``ratio`` in this many equal steps; data-driven criteria are recomputed before each.
    layer_ratios
        Per-layer ratios by layer name, overriding ``ratio`` for those layers.
    max_layer_ratio
        No group loses more than this fraction of its channels (global pruning).
    finetune
        Called as ``finetune(model, step)`` after each step (e.g. a few epochs of training).
    base_plan
        If ``model`` was already pruned, its channel plan (so the returned plan stays relative to the
        base architecture).
    progress
        Show a progress bar over the steps.

    Returns
    -------
    dict[str, list[int]]
        Layer name -> kept output channels relative to the base architecture (changed layers only,
        merged with ``base_plan``).

    Raises
    ------
    ValueError
        A ratio outside ``[0, 1)``, ``iterative_steps < 1`` or an unknown layer in ``layer_ratios``.
    PruneError
        ``layer_ratios`` names the classifier output layer.
    """
    ratio = check_ratio(ratio)
    if iterative_steps < 1:
        raise ValueError(f"iterative_steps must be >= 1, got {iterative_steps}")
    check_ratio(max_layer_ratio, "max_layer_ratio")
    layers = prunable_layers(model)
    outputs = output_layers(model, input_size)
    ratio_dict: dict[nn.Module, float] = {}
    for name, r in (layer_ratios or {}).items():
        if name not in layers:
            raise ValueError(f"layer_ratios names {name!r}, which is not a Conv2d/Linear layer of the model")
        if name in outputs and float(r) > 0:
            raise PruneError(f"layer {name!r} produces the logits; its output channels cannot be pruned")
        ratio_dict[layers[name]] = check_ratio(r, f"ratio of layer {name!r}")
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.zeros(1, 3, int(input_size), int(input_size), device=device)
    was_training = model.training
    with torch.enable_grad():
        pruner = tp.pruner.BasePruner(
            model,
            example,
            importance=importance,
            global_pruning=global_pruning,
            pruning_ratio=ratio,
            pruning_ratio_dict=ratio_dict or None,
            max_pruning_ratio=max_layer_ratio if global_pruning else 1.0,
            iterative_steps=iterative_steps,
            ignored_layers=[layers[n] for n in outputs],
        )
    model.train(was_training)
    tracker = ChannelTracker(model, base_indices=base_plan)
    steps = range(iterative_steps)
    for step in tqdm(steps, desc="pruning", unit="step", disable=not progress, leave=False):
        if isinstance(importance, DataImportance) and not importance.fresh:
            importance.refresh()
        model.eval()
        for group in pruner.step(interactive=True):
            tracker.prune(group)
        if isinstance(importance, DataImportance):
            importance.fresh = False
        model.train(was_training)
        if finetune is not None:
            finetune(model, step)
            model.train(was_training)
    plan = {k: list(v) for k, v in (base_plan or {}).items()}
    plan.update(tracker.channel_plan(only_changed=True))
    return plan
