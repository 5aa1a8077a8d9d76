"""Artifact channels: rank conv channels by how much LRP relevance the artifact adds, and remove the top ones.

Each pair of patches is the same clean patch with and without the transplanted artifact
(:func:`~pathxai.mitigate.evidence.paired_patches`), so the difference of a channel's LRP relevance
for the class the artifact marks is what the artifact makes that channel contribute. Channels are
ranked by the mean of that difference over the pairs across every prunable convolution (LRP conserves
relevance layer by layer, so the layers' scores are on one scale) and the top ``k`` are removed by
channel surgery (:func:`pathxai.model.surgery.apply_channel_plan`, Torch-Pruning: the BatchNorm and
the next layer's inputs follow). The result is a smaller model whose card carries the channel plan.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pathxai.explain.filters import filter_scores
from pathxai.model.card import ModelCard
from pathxai.model.io import preprocess
from pathxai.model.surgery import apply_channel_plan
from pathxai.prune.engine import output_layers
from pathxai.prune.plan import layer_channels

__all__ = ["ArtifactChannels", "artifact_channels", "remove_channels"]

#: Default share of the candidate channels removed when no count is given.
DEFAULT_SHARE = 0.05
#: At most this share of one layer's channels is removed (a layer never loses every channel).
MAX_LAYER_SHARE = 0.5


@dataclass(frozen=True)
class ArtifactChannels:
    """The channels ranked by artifact relevance.

    Attributes
    ----------
    scores
        Layer name -> mean over pairs of (relevance with the artifact - relevance without), per channel.
    ranked
        ``(layer, channel, score)`` from the most artifact-relevant down.
    n_pairs
        Pairs the scores were measured on.
    """

    scores: Mapping[str, np.ndarray]
    ranked: tuple[tuple[str, int, float], ...]
    n_pairs: int

    def top(self, k: int) -> list[tuple[str, int, float]]:
        """The ``k`` highest-scoring channels with a positive score, at most half of any layer's."""
        out: list[tuple[str, int, float]] = []
        taken: dict[str, int] = {}
        for layer, ch, score in self.ranked:
            if len(out) >= k or score <= 0:
                break
            cap = int(MAX_LAYER_SHARE * len(self.scores[layer]))
            if taken.get(layer, 0) >= cap:
                continue
            taken[layer] = taken.get(layer, 0) + 1
            out.append((layer, ch, score))
        return out


def candidate_layers(model: nn.Module, input_size: int) -> list[str]:
    """Conv layers whose output channels may be removed (not those producing the logits)."""
    outputs = set(output_layers(model, input_size))
    return [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and n not in outputs]


def artifact_channels(
    model: nn.Module,
    card: ModelCard,
    artifact: np.ndarray,
    clean: np.ndarray,
    target_class: int,
    layers: list[str] | None = None,
    batch: int = 32,
) -> ArtifactChannels:
    """Rank channels by the LRP relevance the artifact adds for ``target_class``.

    Parameters
    ----------
    model, card
        The model (eval mode; not modified) and its card.
    artifact, clean
        Paired uint8 patches ``(N, size, size, 3)``: ``artifact[i]`` is ``clean[i]`` with the artifact.
    target_class
        Output index explained (the class the artifact marks).
    layers
        Conv layers ranked (default: :func:`candidate_layers`).
    batch
        Patches per LRP pass.

    Raises
    ------
    ValueError
        Without pairs.
    """
    if len(artifact) != len(clean) or len(clean) == 0:
        raise ValueError(f"need paired patches, got {len(artifact)} artifact and {len(clean)} clean")
    names = layers if layers is not None else candidate_layers(model, card.input_size)
    was_training = model.training
    model.eval()
    sums: dict[str, torch.Tensor] = {}
    try:
        for b in range(0, len(clean), batch):
            x_art = preprocess(artifact[b : b + batch], card).contiguous()
            x_cln = preprocess(clean[b : b + batch], card).contiguous()
            targets = [target_class] * len(x_art)
            with torch.enable_grad():
                r_art = filter_scores(model, x_art, targets, method="lrp", layers=names)
                r_cln = filter_scores(model, x_cln, targets, method="lrp", layers=names)
            for name in names:
                d = (r_art[name].detach().double() - r_cln[name].detach().double()).sum(0)
                sums[name] = d if name not in sums else sums[name] + d
    finally:
        model.train(was_training)
    scores = {n: (s / len(clean)).numpy() for n, s in sums.items()}
    ranked = sorted(
        ((n, int(c), float(v)) for n, s in scores.items() for c, v in enumerate(s)),
        key=lambda t: (-t[2], t[0], t[1]),
    )
    return ArtifactChannels(scores, tuple(ranked), len(clean))


def default_count(model: nn.Module, card: ModelCard) -> int:
    """:data:`DEFAULT_SHARE` of the candidate channels (at least one)."""
    widths = layer_channels(model)
    n = sum(widths[name] for name in candidate_layers(model, card.input_size))
    return max(1, round(DEFAULT_SHARE * n))


def remove_channels(
    model: nn.Module, card: ModelCard, channels: list[tuple[str, int, float]]
) -> tuple[nn.Module, dict[str, list[int]]]:
    """A copy of ``model`` without ``channels``, and the plan (kept channels, relative to ``model``).

    The plan lists only the layers that lost channels; compose it with the card's own plan
    (:func:`pathxai.prune.plan.compose_plans`) for a card that rebuilds the network.
    """
    widths = layer_channels(model)
    gone: dict[str, set[int]] = {}
    for layer, ch, _ in channels:
        gone.setdefault(layer, set()).add(ch)
    plan = {layer: [i for i in range(widths[layer]) if i not in g] for layer, g in gone.items()}
    new = apply_channel_plan(copy.deepcopy(model), plan, input_size=card.input_size)
    new.eval()
    return new, plan
