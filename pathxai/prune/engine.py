"""Structured pruning with Torch-Pruning: remove whole channels ranked by a criterion.

:func:`prune_model` drives a :class:`torch_pruning.pruner.BasePruner` interactively, recording the
base index of every surviving channel (:class:`pathxai.model.surgery.ChannelTracker`) so the result
can be saved as a channel plan and rebuilt by the model loader. The classifier output is never pruned.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
import torch_pruning as tp
from torch import nn
from tqdm.auto import tqdm

from pathxai.errors import PruneError
from pathxai.model.surgery import ChannelTracker, build_dependency_graph, prunable_layers
from pathxai.prune.criteria import DataImportance

__all__ = ["check_ratio", "feasible_ratios", "output_layers", "prune_model"]

#: ``finetune(model, step)`` is called after each pruning step with the pruned network.
FinetuneFn = Callable[[nn.Module, int], None]

#: ``on_group(model, group)`` is called with each Torch-Pruning group just before it is pruned.
GroupFn = Callable[[nn.Module, tp.Group], None]


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


def feasible_ratios(model: nn.Module, input_size: int, ratios: Sequence[float]) -> list[float]:
    """The ``ratios`` at which local (per-layer) pruning leaves every prunable layer a channel."""
    layers, outputs = prunable_layers(model), output_layers(model, input_size)
    widths = [_width(m) for n, m in layers.items() if n not in outputs and _width(m) > 0]
    if not widths:
        return []
    return [float(r) for r in ratios if int(min(widths) * (1.0 - float(r))) >= 1]


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
    on_group: GroupFn | None = None,
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
    on_group
        Called as ``on_group(model, group)`` before each group is pruned (e.g. to follow which
        BatchNorm channels survive).

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
        ``layer_ratios`` names the classifier output layer; a ratio would empty a layer (which
        Torch-Pruning silently skips) or exceeds ``max_layer_ratio`` with global ranking; nothing
        was pruned.
    """
    ratio = _check_arguments(ratio, iterative_steps, max_layer_ratio)
    layers, outputs = prunable_layers(model), output_layers(model, input_size)
    ratio_dict = _layer_ratios(layers, outputs, layer_ratios or {})
    _check_feasible(layers, outputs, ratio, ratio_dict, global_pruning, max_layer_ratio)
    before = _channels(layers, outputs)
    was_training = model.training
    cap = max_layer_ratio if global_pruning else 1.0
    schedule = (ratio, ratio_dict, cap, global_pruning, iterative_steps)
    pruner = _pruner(model, importance, input_size, schedule, [layers[n] for n in outputs])
    model.train(was_training)
    tracker = ChannelTracker(model, base_indices=base_plan)
    for step in tqdm(range(iterative_steps), desc="pruning", unit="step", disable=not progress, leave=False):
        _step(model, pruner, importance, tracker, on_group)
        _after_step(model, step, finetune, was_training)
    _check_removed(ratio, ratio_dict, before, _channels(layers, outputs))
    return _merged_plan(base_plan, tracker)


def _after_step(model: nn.Module, step: int, finetune: FinetuneFn | None, was_training: bool) -> None:
    """Fine-tune after a pruning step (when asked), in the mode the model came in; leave it so."""
    if finetune is not None:
        model.train(was_training)
        finetune(model, step)
    model.train(was_training)


def _merged_plan(
    base_plan: Mapping[str, Sequence[int]] | None, tracker: ChannelTracker
) -> dict[str, list[int]]:
    """The base plan (if any) updated with the layers this pruning changed, relative to the base."""
    plan = {k: list(v) for k, v in (base_plan or {}).items()}
    plan.update(tracker.channel_plan(only_changed=True))
    return plan


def _check_arguments(ratio: float, iterative_steps: int, max_layer_ratio: float) -> float:
    """``ratio`` as a float, after checking it, the number of steps and the per-layer cap."""
    value = check_ratio(ratio)
    if iterative_steps < 1:
        raise ValueError(f"iterative_steps must be >= 1, got {iterative_steps}")
    check_ratio(max_layer_ratio, "max_layer_ratio")
    return value


def _check_removed(ratio: float, ratio_dict: Mapping[nn.Module, float], before: int, after: int) -> None:
    """Refuse a run that asked for pruning but left every channel (``before``/``after``: channel counts)."""
    if (ratio > 0 or any(r > 0 for r in ratio_dict.values())) and after == before:
        raise PruneError(
            f"Torch-Pruning removed no channel at ratio {ratio:g}: every layer it would prune would "
            "lose all its channels or was excluded",
            hint="choose a smaller --ratio",
        )


def _layer_ratios(
    layers: Mapping[str, nn.Module], outputs: Sequence[str], layer_ratios: Mapping[str, float]
) -> dict[nn.Module, float]:
    """Per-layer ratios by module, checked: known Conv2d/Linear layers, never the logits."""
    ratio_dict: dict[nn.Module, float] = {}
    for name, r in layer_ratios.items():
        if name not in layers:
            raise ValueError(f"layer_ratios names {name!r}, which is not a Conv2d/Linear layer of the model")
        if name in outputs and float(r) > 0:
            raise PruneError(f"layer {name!r} produces the logits; its output channels cannot be pruned")
        ratio_dict[layers[name]] = check_ratio(r, f"ratio of layer {name!r}")
    return ratio_dict


#: ``(ratio, per-layer ratios, per-layer cap, global ranking, iterative steps)`` of :func:`_pruner`.
Schedule = tuple[float, dict[nn.Module, float], float, bool, int]


def _pruner(
    model: nn.Module,
    importance: tp.importance.Importance,
    input_size: int,
    schedule: Schedule,
    ignored: list[nn.Module],
) -> tp.pruner.BasePruner:
    """Torch-Pruning's pruner over ``model``, traced on a zero input on the model's device."""
    ratio, ratio_dict, cap, global_pruning, iterative_steps = schedule
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    example = torch.zeros(1, 3, int(input_size), int(input_size), device=device)
    with torch.enable_grad():
        return tp.pruner.BasePruner(
            model,
            example,
            importance=importance,
            global_pruning=global_pruning,
            pruning_ratio=ratio,
            pruning_ratio_dict=ratio_dict or None,
            max_pruning_ratio=cap,
            iterative_steps=iterative_steps,
            ignored_layers=ignored,
        )


def _step(
    model: nn.Module,
    pruner: tp.pruner.BasePruner,
    importance: tp.importance.Importance,
    tracker: ChannelTracker,
    on_group: GroupFn | None = None,
) -> None:
    """One pruning step in eval mode (data-driven scores refreshed first), recorded by ``tracker``."""
    if isinstance(importance, DataImportance) and not importance.fresh:
        importance.refresh()
    model.eval()
    for group in pruner.step(interactive=True):
        if on_group is not None:
            on_group(model, group)
        tracker.prune(group)
    if isinstance(importance, DataImportance):
        importance.fresh = False


def _width(layer: nn.Module) -> int:
    return int(getattr(layer, "out_channels", getattr(layer, "out_features", 0)))


def _channels(layers: Mapping[str, nn.Module], outputs: Sequence[str]) -> int:
    """Output channels of the prunable layers, the classifier output excluded."""
    return sum(_width(m) for n, m in layers.items() if n not in outputs)


def _check_feasible(
    layers: Mapping[str, nn.Module],
    outputs: Sequence[str],
    ratio: float,
    ratio_dict: Mapping[nn.Module, float],
    global_pruning: bool,
    max_layer_ratio: float,
) -> None:
    """Refuse ratios that Torch-Pruning would silently not apply.

    Torch-Pruning leaves a layer whole when its ratio would remove every channel (``int(C * (1 -
    ratio)) == 0``), so ``--ratio 0.9999`` used to write an unpruned model. With global ranking no
    layer loses more than ``max_layer_ratio``, so a larger overall ratio cannot be reached either.
    """
    if global_pruning:
        if ratio > max_layer_ratio:
            raise PruneError(
                f"pruning ratio {ratio:g} with global ranking exceeds the per-layer cap "
                f"{max_layer_ratio:g} (no layer loses more channels)",
                hint=f"choose a ratio <= {max_layer_ratio:g}",
            )
        return
    for name, layer in layers.items():
        width = _width(layer)
        r = ratio_dict.get(layer, ratio)
        if name in outputs or width < 1 or r <= 0:
            continue
        if int(width * (1.0 - r)) < 1:
            widths = [_width(m) for n, m in layers.items() if n not in outputs and _width(m) > 0]
            limit = math.floor((1.0 - 1.0 / min(widths)) * 1e4) / 1e4
            raise PruneError(
                f"pruning ratio {r:g} would remove every channel of layer {name!r} ({width} channels), "
                "which Torch-Pruning then leaves unpruned",
                hint=f"choose a ratio <= {limit:g}, where every layer keeps a channel",
            )
