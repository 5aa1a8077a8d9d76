"""Small randomly initialised models saved like trained ones, for tests and examples.

They have real safetensors weights and a model card, so everything that loads a model (the CLI,
worker processes, the explainers, pruning) runs on them unchanged, in a fraction of the time.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch

from pathxai.model.architectures import build_model
from pathxai.model.card import ModelCard
from pathxai.model.io import save_model

__all__ = ["save_tiny_model"]


def save_tiny_model(
    out: str | Path,
    widths: Sequence[int] = (8, 16, 16),
    *,
    input_size: int = 64,
    mpp: float = 2.0,
    std: float = 0.25,
    seed: int = 0,
) -> Path:
    """Save a seeded, untrained two-class ``compact_cnn`` with its card under ``out``.

    Parameters
    ----------
    out
        Model directory to write.
    widths
        Channels of the convolution blocks.
    input_size, mpp
        Tile size in pixels and resolution in µm/px the card declares.
    std
        Normalisation standard deviation of every channel (the mean is 0.5).
    seed
        Torch seed of the weight initialisation.

    Returns
    -------
    Path
        The model directory.
    """
    torch.manual_seed(seed)
    model = build_model("compact_cnn", num_classes=2, widths=list(widths)).eval()
    card = ModelCard(
        arch="compact_cnn",
        classes=("non-tumour", "tumour"),
        tumour_index=1,
        input_size=input_size,
        mpp=mpp,
        mean=(0.5, 0.5, 0.5),
        std=(std, std, std),
        arch_kwargs={"widths": list(widths)},
    )
    return save_model(model, card, out)
