"""The result type of every attribution method."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Explanation:
    """Relevance maps and the classification of one batch, from one forward pass.

    Attributes
    ----------
    relevance : numpy.ndarray
        float32 ``(N, H, W)``: relevance summed over the colour channels, same ``H, W`` as the input.
    logits : numpy.ndarray
        float32 ``(N, C)`` from the same forward pass that produced the relevance.
    probabilities : numpy.ndarray
        float32 ``(N, C)``: softmax of ``logits``.
    target : numpy.ndarray
        int64 ``(N,)``: the explained class of each sample.
    method : str
        Registry name of the method that produced the relevance.
    """

    relevance: np.ndarray
    logits: np.ndarray
    probabilities: np.ndarray
    target: np.ndarray
    method: str

    def __len__(self) -> int:
        """Return the number of samples."""
        return int(self.relevance.shape[0])
