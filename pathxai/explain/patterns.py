"""PatternNet/PatternAttribution (Kindermans et al. 2018, "Learning how to explain neural networks").

A linear neuron ``y = w^T x`` sees inputs ``x = a y + d`` (signal along the *pattern* ``a``, plus
distractor ``d``). The filter ``w`` must cancel the distractor, so it does not show the signal; the
pattern does. PatternAttribution backpropagates the output through the network like the gradient, but
with every weight ``w`` replaced by ``w * a`` (element-wise), and returns that signal at the input.

Patterns are *fitted once on data* (reference tiles) with the paper's estimators, per output channel:

* ``relu`` (two-component estimator ``S_a+-``, layers followed by a ReLU): only the samples where the
  neuron is active (``w^T x + b > 0``) count,
  ``a = (E+[x y] - E+[x] E+[y]) / (w^T (E+[x y] - E+[x] E+[y])) ``;
* ``linear`` (``S_a``, the output layer): ``a = cov(x, y) / (w^T cov(x, y))`` over all samples.

For a convolution ``x`` is the input patch under the kernel at every position (``unfold``). BatchNorm
is fused into the convolution before fitting (the fused convolution is the linear neuron). Patterns are
stored as safetensors beside the model (:func:`save_patterns`, :data:`PATTERNS_FILE`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from pathxai.errors import ExplainError

__all__ = [
    "PATTERNS_FILE",
    "PatternStats",
    "fit_model_patterns",
    "fit_patterns",
    "load_patterns",
    "pattern_hooks",
    "pattern_layers",
    "save_patterns",
]

#: File name of the patterns beside a model's weights.
PATTERNS_FILE = "patterns.safetensors"

_LAYERS = (nn.Conv2d, nn.Linear)


def pattern_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The Conv2d/Linear layers of a (BatchNorm-fused) model that get a pattern, by name."""
    out: dict[str, nn.Module] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d) and m.groups != 1:
            raise ExplainError(f"PatternAttribution does not support grouped convolutions ({name!r})")
        if isinstance(m, _LAYERS):
            out[name] = m
    return out


def _rows(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The layer's inputs as rows ``(M, D)``: input patches of a convolution, samples of a linear layer."""
    if isinstance(module, nn.Linear):
        return x.reshape(-1, x.shape[-1])
    assert isinstance(module, nn.Conv2d)
    if isinstance(module.padding, str):
        raise ExplainError("PatternAttribution needs numeric convolution padding")
    cols = F.unfold(x, module.kernel_size, module.dilation, module.padding, module.stride)  # (N, D, L)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def _flat_weight(module: nn.Module) -> torch.Tensor:
    w = module.weight
    assert isinstance(w, torch.Tensor)
    return w.detach().reshape(w.shape[0], -1)


class PatternStats:
    """Running sums of one layer's pattern estimator (per output channel)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, kind: str) -> None:
        if kind not in ("relu", "linear"):
            raise ValueError(f"pattern kind must be 'relu' or 'linear', got {kind!r}")
        self.w = weight.double()  # (C, D)
        self.b = None if bias is None else bias.detach().double()
        self.kind = kind
        c, d = self.w.shape
        self.n = torch.zeros(c, dtype=torch.float64)
        self.sx = torch.zeros(d, c, dtype=torch.float64)
        self.sy = torch.zeros(c, dtype=torch.float64)
        self.sxy = torch.zeros(d, c, dtype=torch.float64)

    def add(self, rows: torch.Tensor) -> None:
        """Accumulate input rows ``(M, D)``."""
        x = rows.detach().double()
        y = x @ self.w.T  # (M, C), without bias: y = w^T x
        if self.kind == "relu":
            pre = y if self.b is None else y + self.b
            mask = (pre > 0).double()
        else:
            mask = torch.ones_like(y)
        self.n += mask.sum(0)
        self.sx += x.T @ mask
        self.sy += (y * mask).sum(0)
        self.sxy += x.T @ (y * mask)

    def pattern(self) -> torch.Tensor:
        """The patterns ``(C, D)``; channels never active (or with no variance) get zeros."""
        n = self.n.clamp_min(1.0)
        cov = self.sxy / n - (self.sx / n) * (self.sy / n)  # (D, C)
        denom = (self.w.T * cov).sum(0)  # w^T cov per channel
        ok = (self.n > 1) & (denom.abs() > 1e-12)
        a = torch.where(ok, cov / torch.where(ok, denom, torch.ones_like(denom)), torch.zeros_like(cov))
        return a.T.contiguous()


@torch.no_grad()
def fit_patterns(
    model: nn.Module, batches: Iterable[torch.Tensor], output_layers: Iterable[str] = ()
) -> dict[str, torch.Tensor]:
    """Fit a pattern per output channel of every Conv2d/Linear layer of ``model`` on input ``batches``.

    Parameters
    ----------
    model
        A BatchNorm-fused network in eval mode (see :func:`pathxai.explain.canonize.prepare_model`).
    batches
        Preprocessed input batches (no labels needed).
    output_layers
        Layers not followed by a ReLU (the logits): fitted with the linear estimator; every other
        layer with the two-component ``relu`` estimator. Default: the last Conv2d/Linear layer.

    Returns
    -------
    dict[str, torch.Tensor]
        Layer name -> patterns with the layer's weight shape.
    """
    layers = pattern_layers(model)
    if not layers:
        raise ExplainError("the model has no Conv2d/Linear layer to fit patterns for")
    linear = set(output_layers) or {list(layers)[-1]}
    stats = {
        n: PatternStats(_flat_weight(m), getattr(m, "bias", None), "linear" if n in linear else "relu")
        for n, m in layers.items()
    }

    def hook(name: str):  # type: ignore[no-untyped-def]
        def run(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
            stats[name].add(_rows(module, inputs[0]))

        return run

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in layers.items()]
    seen = 0
    try:
        for x in batches:
            model(x)
            seen += int(x.shape[0])
    finally:
        for h in handles:
            h.remove()
    if seen == 0:
        raise ExplainError("no reference inputs to fit the patterns on")
    return {n: stats[n].pattern().reshape(_weight_shape(layers[n])).float() for n in layers}


def _weight_shape(module: nn.Module) -> tuple[int, ...]:
    w = module.weight
    assert isinstance(w, torch.Tensor)
    return tuple(w.shape)


def pattern_hooks(
    model: nn.Module, patterns: Mapping[str, torch.Tensor]
) -> list[torch.utils.hooks.RemovableHandle]:
    """Make the backward pass of each Conv2d/Linear layer use ``weight * pattern`` (forward unchanged).

    Returns the hook handles (call ``.remove()`` on each to undo).
    """
    layers = pattern_layers(model)
    missing = sorted(set(layers) - set(patterns))
    if missing:
        raise ExplainError(
            f"no pattern for layers {missing[:3]}",
            hint="fit the patterns on this (pruned) model: pathxai.explain.patterns.fit_patterns",
        )
    handles = []
    for name, module in layers.items():
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        pattern = patterns[name].to(weight.device, weight.dtype)
        if pattern.shape != weight.shape:
            raise ExplainError(
                f"pattern of layer {name!r} has shape {tuple(pattern.shape)}, the weight {tuple(weight.shape)}"
            )
        handles.append(module.register_forward_hook(_backward_with(weight.detach() * pattern)))
    return handles


def _backward_with(kernel: torch.Tensor):  # type: ignore[no-untyped-def]
    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> torch.Tensor:
        x = inputs[0]
        if isinstance(module, nn.Linear):
            alt = F.linear(x, kernel)
        else:
            assert isinstance(module, nn.Conv2d)
            alt = F.conv2d(x, kernel, None, module.stride, module.padding, module.dilation, module.groups)
        return output.detach() + alt - alt.detach()  # value of the forward, gradient of (w * a)

    return hook


def save_patterns(patterns: Mapping[str, torch.Tensor], model_dir: str | Path) -> Path:
    """Write ``patterns`` to ``model_dir/patterns.safetensors``."""
    path = Path(model_dir) / PATTERNS_FILE
    save_file({k: v.detach().contiguous().cpu() for k, v in patterns.items()}, str(path))
    return path


def load_patterns(path: str | Path) -> dict[str, torch.Tensor]:
    """Read patterns written by :func:`save_patterns` (a file, or the model directory holding it)."""
    p = Path(path)
    if p.is_dir():
        p = p / PATTERNS_FILE
    if not p.is_file():
        raise ExplainError(
            f"no patterns at {p}",
            hint="fit them once on reference tiles (pathxai.explain.patterns.fit_patterns) and save_patterns",
        )
    return dict(load_file(str(p)))


def fit_model_patterns(model: nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fit patterns for a caller's model: BatchNorm fused into a private copy first (the model is unchanged).

    The layer names are those of ``model`` (fusing replaces BatchNorm layers by identities in place).
    """
    from pathxai.explain.canonize import prepare_model

    return fit_patterns(prepare_model(model, canonize=True), batches)
