"""A concept projection baked into a model (P-ClArC): one direction removed from a layer's activations.

P-ClArC (Anders et al. 2022, *Finding and removing Clever Hans*) models an artifact as a direction
``v`` (a concept activation vector) in the channels of one layer and removes it without retraining:
at every spatial position the activation ``a`` becomes ``a - v (v·a - z)``, where ``z`` is the mean
of ``v·a`` over clean samples, so clean activations barely move and an artifact's component is set
back to the clean level. :class:`ConceptProjection` holds ``v`` and ``z`` as buffers (so they travel in
``model.safetensors``, never in a pickle) and :func:`install_projection` attaches it to a model as the
child ``concept_projection`` and runs it on the named layer's output with a forward hook. The card's
``projection`` entry (``{"layer": ..., "channels": ...}``) lets :func:`pathxai.model.io.load_model`
rebuild the same model; every other parameter keeps its name.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pathxai.errors import ModelError

__all__ = ["PROJECTION_ATTR", "ConceptProjection", "install_projection", "projection_spec"]

#: Attribute (and state-dict prefix) of the projection module on a model.
PROJECTION_ATTR = "concept_projection"


class ConceptProjection(nn.Module):
    """Remove the component along a unit direction ``v`` of channel activations, down to a clean level.

    Parameters
    ----------
    channels
        Channels of the layer whose output is projected.
    direction
        The concept direction (normalised to unit length); zeros (no-op) when ``None``.
    offset
        Mean of ``v·a`` over clean activations.
    """

    direction: torch.Tensor
    offset: torch.Tensor

    def __init__(self, channels: int, direction: torch.Tensor | None = None, offset: float = 0.0) -> None:
        super().__init__()
        if channels < 1:
            raise ValueError(f"channels must be >= 1, got {channels}")
        v = torch.zeros(channels) if direction is None else direction.detach().to(torch.float32).flatten()
        if v.numel() != channels:
            raise ValueError(f"direction has {v.numel()} values, the layer {channels} channels")
        norm = float(v.norm())
        self.register_buffer("direction", v / norm if norm > 0 else v)
        self.register_buffer("offset", torch.tensor(float(offset)))

    @property
    def channels(self) -> int:
        """Number of channels the direction spans."""
        return int(self.direction.numel())

    def forward(self, a: torch.Tensor) -> torch.Tensor:
        """Project ``a`` (``(N, C)`` or ``(N, C, H, W)``): ``a - v (v·a - z)`` at every position."""
        if a.ndim < 2 or a.shape[1] != self.channels:
            raise ValueError(
                f"expected activations with {self.channels} channels, got shape {tuple(a.shape)}"
            )
        shape = (1, -1) + (1,) * (a.ndim - 2)
        v = self.direction.to(a.dtype).view(shape)
        coef = (a * v).sum(dim=1, keepdim=True) - self.offset.to(a.dtype)
        return a - v * coef

    def hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        """Forward hook: the projected output of ``module``."""
        return self(output)


def _layer(model: nn.Module, layer: str) -> nn.Module:
    modules = dict(model.named_modules())
    if not layer or layer not in modules:
        raise ModelError(
            f"layer {layer!r} not found in {type(model).__name__}",
            hint="name a module of the model, e.g. 'features' for compact_cnn or 'layer4' for resnet18",
        )
    return modules[layer]


def install_projection(
    model: nn.Module, layer: str, channels: int, direction: torch.Tensor | None = None, offset: float = 0.0
) -> ConceptProjection:
    """Attach a :class:`ConceptProjection` to ``model`` and hook it onto ``layer``'s output (in place).

    Raises
    ------
    ModelError
        If ``layer`` is not a module of ``model`` or the model already has a projection.
    """
    if hasattr(model, PROJECTION_ATTR):
        raise ModelError("the model already holds a concept projection; project from the original model")
    target = _layer(model, layer)
    proj = ConceptProjection(channels, direction, offset)
    model.add_module(PROJECTION_ATTR, proj)
    target.register_forward_hook(proj.hook)
    return proj


def projection_spec(layer: str, channels: int, **info: Any) -> dict[str, Any]:
    """The card's ``projection`` entry: the hooked layer, its channels, and what made the direction."""
    return {"layer": layer, "channels": int(channels), **info}
