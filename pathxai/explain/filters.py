"""Per-filter attribution: how much each output channel of a layer contributes to a decision.

Each method returns, for every requested ``Conv2d``/``Linear`` layer, one signed score per sample and
output channel, shape ``(N, C)``. The score is measured at the layer's *effective* output: the output
of the BatchNorm that directly follows it when there is one (the BN is part of the filter), else the
layer's own output.

Methods
-------
``lrp``
    Layer-wise relevance propagation with the rules of the heatmaps (``EpsilonPlusFlat``: flat first
    layer, z+ convolutions, epsilon dense layers; BatchNorm merged into the convolution before it).
    By default this runs on the fast LRP path of :class:`pathxai.explain.Explainer` (BatchNorm fused
    once, efficient rule hooks); ``fast=False`` or an explicit ``composite`` uses zennit's stock
    composite with the ``Gradient`` attributor instead (same numbers up to float rounding). The
    backward pass starts from the one-hot target, so each sample carries unit relevance. Under the
    LRP-modified backward the tensor flowing between layers *is* the relevance, so a channel's
    relevance is the sum over space of the modified gradient retained at the layer's output.
``ig``
    Integrated-gradients attribution of hidden units (layer conductance): with inputs interpolated
    from a baseline, ``sum_k (a_k - a_{k-1}) * d y_target / d a_k`` summed over space. Over a layer
    the scores add up to ``y(x) - y(baseline)`` (completeness).
``gradient``
    ``sum_{h,w} |d y_target / d a|``.
``pattern_attribution``
    PatternAttribution (Kindermans et al. 2018, :mod:`pathxai.explain.patterns`): the target logit
    backpropagated with ``weight * pattern`` in every layer (BatchNorm fused); a channel's score is
    the sum over space of that signal at the layer's output (the PatternAttribution of the rest of
    the network with respect to the channel). Patterns are fitted on reference inputs.
``taylor``
    First-order Taylor expansion of the cross-entropy loss (Molchanov et al. 2017):
    ``sum_{h,w} a * dL / da`` per sample (take the absolute value to rank).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from zennit.attribution import Gradient
from zennit.canonizers import SequentialMergeBatchNorm
from zennit.composites import EpsilonPlusFlat
from zennit.core import Composite
from zennit.torchvision import ResNetCanonizer

from pathxai.errors import ExplainError

__all__ = [
    "FILTER_METHODS",
    "check_filter_lrp",
    "default_filter_composite",
    "filter_scores",
    "measurement_modules",
]

FILTER_METHODS: tuple[str, ...] = ("lrp", "ig", "gradient", "taylor", "pattern_attribution")

_LAYERS = (nn.Conv2d, nn.Linear)


def check_filter_lrp(model: nn.Module) -> None:
    """Refuse per-filter LRP relevance on a model it is not defined for (timm ViTs).

    AttnLRP explains a ViT's input, but its relevance at hidden units is not computed yet: the fast hooks
    would record modified gradients and a zennit composite has no attention rules, so either would return
    numbers that are not relevance.

    Raises
    ------
    ExplainError
        The model is a timm transformer.
    """
    from pathxai.explain.attnlrp import is_timm_transformer

    if is_timm_transformer(model):
        raise ExplainError(
            "per-neuron LRP relevance (the 'lrp' filter scores) is not available for ViTs yet; AttnLRP "
            "gives their input heatmaps only",
            hint="score a ViT's units with 'gradient', 'taylor', 'ig' or weights",
        )


def default_filter_composite(model: nn.Module) -> Composite:
    """Return the LRP composite used for filter relevance.

    ``EpsilonPlusFlat`` (flat first layer, z+ convolutions, epsilon dense layers) with the ResNet
    canonizer for torchvision ResNets and a sequential BatchNorm merge otherwise.

    Parameters
    ----------
    model
        The network to explain.

    Returns
    -------
    zennit.core.Composite
        A fresh composite (canonizers hold state, so never share one between models).
    """
    from torchvision.models.resnet import BasicBlock, Bottleneck

    is_resnet = any(isinstance(m, BasicBlock | Bottleneck) for m in model.modules())
    canonizer = ResNetCanonizer() if is_resnet else SequentialMergeBatchNorm()
    return EpsilonPlusFlat(canonizers=[canonizer])


def _layer_names(model: nn.Module, layers: Sequence[str] | None) -> list[str]:
    named = dict(model.named_modules())
    if layers is None:
        return [n for n, m in named.items() if isinstance(m, _LAYERS)]
    out = []
    for name in layers:
        if name not in named:
            raise ValueError(f"model has no layer named {name!r}")
        if not isinstance(named[name], _LAYERS):
            raise ValueError(f"layer {name!r} is a {type(named[name]).__name__}, not a Conv2d or Linear")
        out.append(name)
    return out


def measurement_modules(model: nn.Module, example: torch.Tensor) -> dict[str, nn.Module]:
    """Map each Conv2d/Linear layer to the module whose output is its effective output.

    A BatchNorm whose input is exactly the layer's output tensor belongs to the layer; other layers
    are measured at their own output. Found by one traced forward pass of ``example``.

    Parameters
    ----------
    model
        The network (in eval mode for a meaningful result; the pass is run without gradients).
    example
        One input batch, e.g. a single image ``(1, 3, H, W)``.

    Returns
    -------
    dict[str, nn.Module]
        Layer name -> measured module (the layer itself or its BatchNorm).
    """
    names: dict[nn.Module, str] = {m: n for n, m in model.named_modules() if isinstance(m, _LAYERS)}
    producer: dict[int, str] = {}
    alive: list[torch.Tensor] = []  # keep produced tensors alive so their ids stay unique
    measured: dict[str, nn.Module] = {n: m for m, n in names.items()}
    handles = []

    def on_layer(module: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        producer[id(out)] = names[module]
        alive.append(out)

    def on_norm(module: nn.Module, inp: tuple[torch.Tensor, ...], _out: torch.Tensor) -> None:
        name = producer.get(id(inp[0]))
        if name is not None:
            measured[name] = module

    for module in model.modules():
        if isinstance(module, _LAYERS):
            handles.append(module.register_forward_hook(on_layer))
        elif isinstance(module, nn.modules.batchnorm._BatchNorm):
            handles.append(module.register_forward_hook(on_norm))
    try:
        with torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return measured


class _Recorder:
    """Forward hooks keeping each measured module's output and a tensor hook keeping its gradient."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.outputs: dict[str, torch.Tensor] = {}
        self.grads: dict[str, torch.Tensor] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(_module: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            self.outputs[name] = out.detach()
            if out.requires_grad:

                def keep(grad: torch.Tensor) -> None:
                    self.grads[name] = grad.detach()

                out.register_hook(keep)

        return hook

    @contextmanager
    def attached(self) -> Iterator[_Recorder]:
        self._handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        try:
            yield self
        finally:
            for h in self._handles:
                h.remove()
            self._handles = []


def _spatial_sum(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(2).sum(2) if t.dim() > 2 else t


def _check_inputs(model: nn.Module, inputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if inputs.dim() != 4:
        raise ValueError(f"inputs must be a (N, C, H, W) batch, got shape {tuple(inputs.shape)}")
    targets = torch.as_tensor(targets, dtype=torch.long, device=inputs.device).reshape(-1)
    if targets.numel() != inputs.shape[0]:
        raise ValueError(f"{targets.numel()} targets for {inputs.shape[0]} inputs")
    if model.training:
        raise ExplainError("filter attribution needs the model in eval mode", hint="call model.eval() first")
    return targets


class _LiveRecorder:
    """Forward hooks keeping each measured module's output, detached and graph-attached."""

    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.outputs: dict[str, torch.Tensor] = {}
        self.live: dict[str, torch.Tensor] = {}

    def _hook(self, name: str) -> Callable[[nn.Module, tuple[torch.Tensor, ...], torch.Tensor], None]:
        def hook(_module: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            self.outputs[name] = out.detach()
            self.live[name] = out

        return hook

    @contextmanager
    def attached(self) -> Iterator[_LiveRecorder]:
        handles = [m.register_forward_hook(self._hook(n)) for n, m in self.modules.items()]
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    def grads(self, objective: torch.Tensor) -> dict[str, torch.Tensor]:
        """Plain gradients of ``objective`` with respect to every recorded output."""
        names = list(self.modules)
        missing = [n for n in names if n not in self.live]
        if missing:
            raise ExplainError(f"layers {missing[:3]} were not reached by the forward pass")
        live = [self.live[n] for n in names]
        grads = torch.autograd.grad(objective, live, allow_unused=True)
        self.live.clear()
        return {
            n: (torch.zeros_like(o) if g is None else g) for n, o, g in zip(names, live, grads, strict=True)
        }


def _lrp(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    modules: dict[str, nn.Module],
    composite: Composite | None,
) -> dict[str, torch.Tensor]:
    composite = composite if composite is not None else default_filter_composite(model)
    recorder = _Recorder(modules)
    n_classes: list[int] = []

    def attr_output(output: torch.Tensor) -> torch.Tensor:
        n_classes.append(output.shape[1])
        return F.one_hot(targets, output.shape[1]).to(output.dtype)

    with Gradient(model=model, composite=composite, attr_output=attr_output) as attributor:
        with recorder.attached():
            attributor(inputs.detach())
    missing = [n for n in modules if n not in recorder.grads]
    if missing:
        raise ExplainError(
            f"no relevance reached layers {missing[:3]}; are they used by the model's forward?"
        )
    return {n: _spatial_sum(recorder.grads[n]) for n in modules}


def _lrp_fast(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    names: Sequence[str],
    lrp_method: str = "lrp",
    lrp_options: Mapping[str, Any] | None = None,
) -> dict[str, torch.Tensor]:
    from pathxai.explain.explainer import Explainer

    with Explainer(model, lrp_method, **dict(lrp_options or {})) as explainer:
        prepared = explainer.model  # BatchNorm fused into the convolutions: their output is the filter's
        named = dict(prepared.named_modules())
        missing = [n for n in names if n not in named]
        if missing:
            raise ExplainError(f"layers {missing[:3]} are not in the LRP-prepared model")
        recorder = _Recorder({n: named[n] for n in names})
        x = inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad(), recorder.attached():
            logits = prepared(x)
            seed = F.one_hot(targets, logits.shape[1]).to(logits.dtype)
            torch.autograd.grad(logits, x, seed)
    missing = [n for n in names if n not in recorder.grads]
    if missing:
        raise ExplainError(f"no relevance reached layers {missing[:3]}; does the model's forward use them?")
    return {n: _spatial_sum(recorder.grads[n]) for n in names}


def _pattern(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    names: Sequence[str],
    patterns: Mapping[str, torch.Tensor] | None,
) -> dict[str, torch.Tensor]:
    from pathxai.explain.canonize import prepare_model
    from pathxai.explain.patterns import fit_patterns, pattern_hooks

    prepared = prepare_model(model, canonize=True)
    if patterns is None:
        patterns = fit_patterns(prepared, [inputs.detach()])
    named = dict(prepared.named_modules())
    handles = pattern_hooks(prepared, patterns)
    recorder = _Recorder({n: named[n] for n in names})  # after the pattern hooks: sees their output
    try:
        x = inputs.detach().clone().requires_grad_(True)
        with torch.enable_grad(), recorder.attached():
            logits = prepared(x)
            seed = F.one_hot(targets, logits.shape[1]).to(logits.dtype) * logits.detach()
            torch.autograd.grad(logits, x, seed)
    finally:
        for h in handles:
            h.remove()
    return {n: _spatial_sum(recorder.grads[n]) for n in names}


def _plain(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    modules: dict[str, nn.Module],
    method: str,
) -> dict[str, torch.Tensor]:
    recorder = _LiveRecorder(modules)
    with torch.enable_grad(), recorder.attached():
        output = model(inputs.detach())
        if method == "taylor":
            objective = F.cross_entropy(output, targets, reduction="sum")
        else:
            objective = output.gather(1, targets[:, None]).sum()
        grads = recorder.grads(objective)
    if method == "taylor":
        return {n: _spatial_sum(recorder.outputs[n] * grads[n]) for n in modules}
    return {n: _spatial_sum(grads[n].abs()) for n in modules}


def _conductance(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    modules: dict[str, nn.Module],
    steps: int,
    baseline: torch.Tensor | None,
) -> dict[str, torch.Tensor]:
    if steps < 1:
        raise ValueError(f"ig_steps must be >= 1, got {steps}")
    x = inputs.detach()
    base = torch.zeros_like(x) if baseline is None else torch.as_tensor(baseline, dtype=x.dtype).expand_as(x)
    recorder = _LiveRecorder(modules)
    scores = {n: torch.zeros(0) for n in modules}
    with recorder.attached():
        with torch.no_grad():
            model(base)
        previous = dict(recorder.outputs)
        for k in range(1, steps + 1):
            alpha = k / steps
            with torch.enable_grad():
                output = model(base + alpha * (x - base))
                objective = output.gather(1, targets[:, None]).sum()
                grads = recorder.grads(objective)
            for n in modules:
                term = _spatial_sum((recorder.outputs[n] - previous[n]) * grads[n])
                scores[n] = term if k == 1 else scores[n] + term
            previous = dict(recorder.outputs)
    return scores


def filter_scores(
    model: nn.Module,
    inputs: torch.Tensor,
    targets: torch.Tensor | Sequence[int],
    *,
    method: str = "lrp",
    layers: Sequence[str] | None = None,
    composite: Composite | None = None,
    fast: bool = True,
    ig_steps: int = 16,
    baseline: torch.Tensor | None = None,
    lrp_method: str = "lrp",
    lrp_options: Mapping[str, Any] | None = None,
    patterns: Mapping[str, torch.Tensor] | None = None,
) -> dict[str, torch.Tensor]:
    """Attribute a decision to the output channels of layers.

    Parameters
    ----------
    model
        The network, in eval mode. Parameters are left unchanged (zennit's canonizers are undone).
    inputs
        A preprocessed batch ``(N, 3, H, W)``.
    targets
        The class explained for each sample (usually the true label).
    method
        One of :data:`FILTER_METHODS`.
    layers
        Names of Conv2d/Linear layers; all of them when ``None``.
    composite
        A zennit composite for ``lrp``; when given, the stock zennit path is used with it.
    fast
        For ``lrp`` without ``composite``: use the fast LRP path of :mod:`pathxai.explain` (default),
        else zennit's stock :func:`default_filter_composite`.
    ig_steps
        Riemann steps of the integrated-gradients path.
    baseline
        The integrated-gradients baseline input (zeros, i.e. the normalisation mean, by default).
    lrp_method, lrp_options
        For the fast ``lrp`` path: the registered LRP method (``"lrp"`` = ``EpsilonPlusFlat``,
        ``"lrp_epsilon_gamma_box"``, ``"lrp_epsilon_alpha2_beta1_flat"``) and its rule parameters
        (``gamma``, ``epsilon``, ``stabilizer``).
    patterns
        For ``pattern_attribution``: patterns fitted on reference inputs by layer name
        (:func:`pathxai.explain.patterns.fit_model_patterns`); fitted on ``inputs`` when not given.

    Returns
    -------
    dict[str, torch.Tensor]
        Layer name -> signed scores of shape ``(N, out_channels)``.

    Raises
    ------
    ValueError
        Unknown method or layer, bad shapes.
    ExplainError
        The model is in training mode or a layer is not reached.
    """
    if method not in FILTER_METHODS:
        raise ValueError(f"unknown filter attribution method {method!r}; choose one of {FILTER_METHODS}")
    targets_t = _check_inputs(model, inputs, torch.as_tensor(targets))
    names = _layer_names(model, layers)
    if not names:
        return {}
    if method == "lrp":
        check_filter_lrp(model)
    if method == "lrp" and composite is None and fast:
        return _lrp_fast(model, inputs, targets_t, names, lrp_method, lrp_options)
    if method == "pattern_attribution":
        return _pattern(model, inputs, targets_t, names, patterns)
    measured = measurement_modules(model, inputs[:1].detach())
    modules = {n: measured[n] for n in names}
    if method == "lrp":
        return _lrp(model, inputs, targets_t, modules, composite)
    if method == "ig":
        return _conductance(model, inputs, targets_t, modules, ig_steps, baseline)
    return _plain(model, inputs, targets_t, modules, method)
