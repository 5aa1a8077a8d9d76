"""Model-parameter randomisation sanity checks (Adebayo et al. 2018; Quantus ``MPRT``).

:func:`cascading_copies` re-initialises the model's convolution and dense layers one at a time, from the
output layer down ("top-down", cumulative), and :func:`cascading_randomisation` explains the same patches
with every copy and returns the rank correlation of ``|R|`` with the trained model's map per step. A method
that passes the check draws a different picture once the weights are gone (correlation near 0); a method
whose map does not depend on the weights (an edge detector) keeps a correlation near 1.

Batch-norm layers are left as they are (their statistics are not weights the model learnt a picture
with); only ``Conv*d`` and ``Linear`` layers are re-initialised, with ``reset_parameters`` under a fixed
seed.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from pathxai.explain.explainer import Explainer
from pathxai.explain.scores import map_correlation

Tensor = torch.Tensor

_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)

#: Verdict thresholds on the mean Spearman correlation of ``|R|`` after every layer is randomised.
PASS_BELOW = 0.2
FAIL_AT = 0.5


def randomisable_layers(model: nn.Module) -> list[str]:
    """Names of the convolution and dense layers, output layer first (the cascade's order)."""
    names = [name for name, m in model.named_modules() if isinstance(m, _LAYERS)]
    return names[::-1]


def cascading_copies(model: nn.Module, seed: int = 0) -> Iterator[tuple[str, nn.Module]]:
    """Yield ``(layer name, copy)`` with the layers up to that one re-initialised (top-down, cumulative).

    One copy of the model is made and randomised step by step; each yielded copy is the same object, so
    use it before asking for the next.
    """
    work = copy.deepcopy(model).eval()
    modules = dict(work.named_modules())
    for i, name in enumerate(randomisable_layers(work)):
        layer = modules[name]
        with torch.random.fork_rng(devices=[]), torch.no_grad():
            torch.manual_seed(seed + i)
            layer.reset_parameters()  # type: ignore[operator]
        yield name, work


def verdict(full_randomisation_spearman: float | None) -> str:
    """``"passes"`` / ``"weak"`` / ``"fails"`` from the mean correlation after full randomisation."""
    if full_randomisation_spearman is None or not np.isfinite(full_randomisation_spearman):
        return "unknown"
    if full_randomisation_spearman < PASS_BELOW:
        return "passes"
    if full_randomisation_spearman < FAIL_AT:
        return "weak"
    return "fails"


@dataclass(frozen=True)
class RandomisationResult:
    """Correlations of each randomised model's map with the trained model's map.

    Attributes
    ----------
    layers : list of str
        Randomised layers, in cascade order (the last entry = every layer randomised).
    spearman : numpy.ndarray
        ``(L, N)`` Spearman correlation of ``|R|`` per step and patch.
    """

    layers: list[str]
    spearman: np.ndarray

    @property
    def full(self) -> np.ndarray:
        """``(N,)`` correlations after every layer is randomised."""
        return np.asarray(self.spearman[-1])


def cascading_randomisation(
    model: nn.Module,
    method: str,
    x: Tensor,
    target: Tensor,
    reference: np.ndarray,
    seed: int = 0,
    last_only: bool = False,
    **options: Any,
) -> RandomisationResult:
    """Run the cascading randomisation test of ``method`` on one batch.

    Parameters
    ----------
    model : torch.nn.Module
        The trained classifier (not modified).
    method : str
        A registered method name.
    x : torch.Tensor
        ``(N, C, H, W)`` model inputs.
    target : torch.Tensor
        ``(N,)`` explained classes.
    reference : numpy.ndarray
        ``(N, H, W)`` the trained model's relevance for ``x`` and ``target``.
    seed : int
        Seed of the re-initialisation.
    last_only : bool
        Explain only the cascade's last step (every layer re-initialised; the same weights, same order and
        seeds): one explainer instead of one per layer (a DenseNet-121 has 121 layers).
    **options
        Passed to :class:`~pathxai.explain.explainer.Explainer`.

    Returns
    -------
    RandomisationResult
    """
    layers, rows = [], []
    steps: Iterable[tuple[str, nn.Module]] = cascading_copies(model, seed)
    if last_only:
        steps = list(steps)[-1:]  # the generator runs to the end: every layer re-initialised
    for name, randomised in steps:
        with Explainer(randomised, method, **options) as explainer:
            rel = explainer(x, target).relevance
        layers.append(name)
        rows.append(map_correlation(reference, rel, kind="spearman", absolute=True))
    if not rows:
        raise ValueError("the model has no convolution or dense layer to randomise")
    return RandomisationResult(layers, np.stack(rows))
