"""A concept direction (CAV) in one layer from paired artifact / clean activations.

Each pair is the same patch with and without the artifact (pasted from the audit's donors, or the
stain imposed), so the difference of their activations is the artifact and nothing else: the CAV is
the mean difference (the "pattern" CAV of Pahde et al., robust where a linear classifier's weights
are not), taken per channel over the spatially averaged activations, so one direction serves every
position of the feature map.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pathxai.errors import ModelError
from pathxai.model.card import ModelCard
from pathxai.model.io import preprocess

__all__ = ["Concept", "capture", "default_layer", "fit_concept", "layer_module"]


@dataclass(frozen=True)
class Concept:
    """A unit concept direction in a layer, and the clean level of its component.

    Attributes
    ----------
    layer
        Module name whose output the direction lives in.
    direction
        Unit vector over the layer's channels.
    offset
        Mean of ``direction·a`` over clean activations (every position).
    artifact_level
        The same over artifact activations.
    separation
        ``(artifact_level - offset)`` in units of the clean component's standard deviation.
    n_pairs
        Pairs the direction was fitted on.
    """

    layer: str
    direction: torch.Tensor
    offset: float
    artifact_level: float
    separation: float
    n_pairs: int

    @property
    def channels(self) -> int:
        """Channels of the layer."""
        return int(self.direction.numel())

    def info(self) -> dict[str, float | int | str]:
        """JSON-ready summary (the direction itself goes into the weights)."""
        return {
            "layer": self.layer,
            "offset": self.offset,
            "artifact_level": self.artifact_level,
            "separation": self.separation,
            "n_pairs": self.n_pairs,
            "cav": "mean difference of paired artifact/clean activations",
        }


def layer_module(model: nn.Module, layer: str) -> nn.Module:
    """The module ``layer`` of ``model``.

    Raises
    ------
    ModelError
        If there is none.
    """
    modules = dict(model.named_modules())
    if layer not in modules or not layer:
        raise ModelError(f"layer {layer!r} not found in {type(model).__name__}", hint="pass --layer NAME")
    return modules[layer]


def default_layer(model: nn.Module) -> str:
    """The last feature layer before the global pool: ``features`` (compact_cnn) or ``layer4`` (ResNet)."""
    names = dict(model.named_modules())
    for name in ("features", "layer4", "blocks"):
        if name in names:
            return name
    raise ModelError(
        f"no default concept layer for {type(model).__name__}",
        hint="pass --layer with the name of the last convolutional block",
    )


@contextmanager
def capture(module: nn.Module, store: list[torch.Tensor]) -> Iterator[None]:
    """Append every output of ``module`` to ``store`` while the block runs (the hook is removed after)."""
    handle = module.register_forward_hook(lambda _m, _i, out: store.append(out))
    try:
        yield
    finally:
        handle.remove()


def _activations(
    model: nn.Module, layer: str, patches: np.ndarray, card: ModelCard, batch: int = 64
) -> torch.Tensor:
    """``(N, C, H, W)`` (or ``(N, C)``) activations of ``layer`` for uint8 patches ``(N, h, w, 3)``."""
    out: list[torch.Tensor] = []
    module = layer_module(model, layer)
    with torch.inference_mode():
        for b in range(0, len(patches), batch):
            store: list[torch.Tensor] = []
            with capture(module, store):
                model(preprocess(patches[b : b + batch], card).contiguous())
            out.append(store[-1].float())
    return torch.cat(out)


def _component(acts: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    shape = (1, -1) + (1,) * (acts.ndim - 2)
    return (acts * v.view(shape)).sum(dim=1).flatten()


def fit_concept(
    model: nn.Module, card: ModelCard, layer: str, artifact: np.ndarray, clean: np.ndarray
) -> Concept:
    """The concept direction of paired patches (``artifact[i]`` is ``clean[i]`` with the artifact).

    Parameters
    ----------
    model, card
        The model (eval mode) and its card.
    layer
        Module name.
    artifact, clean
        uint8 patches ``(N, size, size, 3)``, paired.

    Raises
    ------
    ValueError
        Without pairs, or when the pairs do not differ in the layer.
    """
    if len(artifact) != len(clean) or len(clean) == 0:
        raise ValueError(f"need paired patches, got {len(artifact)} artifact and {len(clean)} clean")
    was_training = model.training
    model.eval()
    try:
        a_art = _activations(model, layer, artifact, card)
        a_cln = _activations(model, layer, clean, card)
    finally:
        model.train(was_training)
    dims = tuple(range(2, a_art.ndim))
    diff = (a_art.mean(dim=dims) if dims else a_art) - (a_cln.mean(dim=dims) if dims else a_cln)
    v = diff.mean(dim=0)
    norm = float(v.norm())
    if not np.isfinite(norm) or norm < 1e-8:
        raise ValueError(f"the artifact does not change the activations of {layer!r}; pick another --layer")
    v = v / norm
    c_clean, c_art = _component(a_cln, v), _component(a_art, v)
    offset = float(c_clean.mean())
    sep = (float(c_art.mean()) - offset) / max(float(c_clean.std()), 1e-9)
    return Concept(layer, v, offset, float(c_art.mean()), sep, len(clean))
