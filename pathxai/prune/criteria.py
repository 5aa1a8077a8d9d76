"""Pruning criteria as Torch-Pruning importances.

Every criterion is a :class:`torch_pruning.importance.Importance`: called with a dependency *group*
(all layers coupled to one set of channels: a convolution, its BatchNorm, the next layer's inputs, and
in residual networks every convolution joined by an addition), it returns one score per channel of the
group; low scores are pruned first. Scores of the coupled Conv2d/Linear layers of a group are summed.

Data-driven criteria (``lrp``, ``ig``, ``gradient``, ``taylor``) score channels on a *reference set*
of labelled patches (a list of ``(inputs, targets)`` batches; the scarce-data setting uses ten patches
per class) with :func:`pathxai.explain.filters.filter_scores`, keeping, per channel, the mean over
reference samples of the absolute per-sample score. Call :meth:`DataImportance.refresh` after the
network changed (the pruning engine does this before each iterative step).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch_pruning as tp
from torch import nn

from pathxai.explain.filters import filter_scores
from pathxai.explain.patterns import fit_model_patterns

__all__ = [
    "CRITERIA",
    "RELEVANCE_MODES",
    "DataImportance",
    "GroupScorer",
    "RandomImportance",
    "ReferenceBatches",
    "WeightNormImportance",
    "make_importance",
]

#: How per-sample channel scores are pooled: mean of absolute values, or mean of signed values.
RELEVANCE_MODES = ("abs", "signed")

#: Reference data: ``(inputs (N, 3, H, W), targets (N,))`` batches, already preprocessed.
ReferenceBatches = Sequence[tuple[torch.Tensor, torch.Tensor]]

_LAYERS = (nn.Conv2d, nn.Linear)


def _is_out_pruning(group: tp.Group, dep: Any) -> bool:
    graph = group._DG
    return bool(graph is not None and graph.is_out_channel_pruning_fn(dep.handler))


class GroupScorer(tp.importance.Importance):
    """Base class: sum per-layer channel scores over the coupled Conv2d/Linear layers of a group.

    Parameters
    ----------
    normalizer
        ``None`` (raw scores), ``"mean"``, ``"max"`` or ``"sum"``: divide each group's scores by that
        statistic, which makes scores of different layers comparable for global pruning.
    """

    #: Registry name, set by subclasses.
    name = "base"

    def __init__(self, normalizer: str | None = None) -> None:
        if normalizer not in (None, "mean", "max", "sum"):
            raise ValueError(f"normalizer must be None, 'mean', 'max' or 'sum', got {normalizer!r}")
        self.normalizer = normalizer

    def layer_scores(self, module: nn.Module, idxs: Sequence[int]) -> torch.Tensor | None:
        """Scores of the given output channels of one layer, or ``None`` to skip the layer."""
        raise NotImplementedError

    def __call__(self, group: tp.Group) -> torch.Tensor:
        """Return one score per channel of ``group`` (length of the root's index list)."""
        n = len(group[0].idxs)
        total = torch.zeros(n, dtype=torch.float64)
        used = 0
        for item in group:
            dep, idxs = item.dep, item.idxs
            module = dep.target.module
            if not isinstance(module, _LAYERS) or not _is_out_pruning(group, dep):
                continue
            root = item.root_idxs
            if root is None or any(r is None for r in root):
                continue
            scores = self.layer_scores(module, list(idxs))
            if scores is None:
                continue
            total.scatter_add_(0, torch.as_tensor(root, dtype=torch.long), scores.detach().double().cpu())
            used += 1
        if used == 0:
            return self.fallback(n)
        return self._normalise(total).float()

    def fallback(self, n: int) -> torch.Tensor:
        """Scores when no scored layer is in the group (all channels equal)."""
        return torch.ones(n)

    def _normalise(self, scores: torch.Tensor) -> torch.Tensor:
        if self.normalizer is None:
            return scores
        if self.normalizer == "mean":
            stat = scores.mean()
        elif self.normalizer == "max":
            stat = scores.max()
        else:
            stat = scores.sum()
        return scores / stat if float(stat) > 0 else scores


class WeightNormImportance(GroupScorer):
    """Lp norm of each filter's weights (Li et al. 2017 with ``p=1``).

    Parameters
    ----------
    p
        Norm degree (1 or 2).
    normalizer
        See :class:`GroupScorer`.
    """

    name = "weight"

    def __init__(self, p: int = 1, normalizer: str | None = None) -> None:
        super().__init__(normalizer)
        if p not in (1, 2):
            raise ValueError(f"p must be 1 or 2, got {p}")
        self.p = p

    @torch.no_grad()
    def layer_scores(self, module: nn.Module, idxs: Sequence[int]) -> torch.Tensor | None:
        """Lp norm of the selected output filters."""
        weight = module.weight
        assert isinstance(weight, torch.Tensor)
        return weight.detach()[list(idxs)].flatten(1).norm(p=self.p, dim=1)


class RandomImportance(GroupScorer):
    """Uniform random scores from a seeded generator (a baseline every criterion must beat).

    Parameters
    ----------
    seed
        Seed of the generator; the same seed gives the same ranking.
    """

    name = "random"

    def __init__(self, seed: int = 0) -> None:
        super().__init__(None)
        self.generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, group: tp.Group) -> torch.Tensor:
        """Random scores, one per channel of the group."""
        return torch.rand(len(group[0].idxs), generator=self.generator)


class DataImportance(GroupScorer):
    """A criterion computed from filter attributions on a reference set.

    Parameters
    ----------
    model
        The network being pruned (the same object the pruner modifies).
    reference
        Labelled reference batches.
    method
        ``"lrp"``, ``"ig"``, ``"gradient"`` or ``"taylor"`` (see :mod:`pathxai.explain.filters`).
    normalizer
        See :class:`GroupScorer`.
    relevance
        ``"abs"``: a channel's score is the mean over samples of the absolute per-sample score (the
        default); ``"signed"``: the mean of the signed scores (channels whose contribution speaks
        *against* the true class rank lowest and go first).
    scores
        Precomputed channel scores by layer name (e.g. from :attr:`scores` of the same criterion on
        an identical model); the first pruning step then skips the attribution pass.
    **method_options
        Passed to :func:`~pathxai.explain.filters.filter_scores` (e.g. ``composite``, ``ig_steps``).

    Attributes
    ----------
    scores
        Layer name -> mean (absolute or signed) attribution per output channel, for the current network.
    fresh
        Whether :attr:`scores` describe the current network; the pruning engine clears it after
        each step so the next step recomputes.
    """

    def __init__(
        self,
        model: nn.Module,
        reference: ReferenceBatches,
        method: str,
        normalizer: str | None = None,
        scores: Mapping[str, torch.Tensor] | None = None,
        relevance: str = "abs",
        **method_options: Any,
    ) -> None:
        super().__init__(normalizer)
        if not reference:
            raise ValueError(f"criterion {method!r} needs a non-empty reference set")
        if relevance not in RELEVANCE_MODES:
            raise ValueError(f"relevance must be one of {RELEVANCE_MODES}, got {relevance!r}")
        self.relevance = relevance
        self.name = method
        self.model = model
        self.reference = list(reference)
        self.method = method
        self.method_options = method_options
        self.scores: dict[str, torch.Tensor] = {k: v.detach().clone() for k, v in (scores or {}).items()}
        self.fresh = bool(scores)

    @property
    def n_reference(self) -> int:
        """Number of reference samples."""
        return sum(int(x.shape[0]) for x, _ in self.reference)

    def refresh(self) -> None:
        """Recompute every layer's channel scores on the reference set for the current network."""
        was_training = self.model.training
        self.model.eval()
        names = {n: m for n, m in self.model.named_modules() if isinstance(m, _LAYERS)}
        sums: dict[str, torch.Tensor] = {}
        try:
            options = dict(self.method_options)
            if self.method == "pattern_attribution":  # fitted once on all reference inputs
                options["patterns"] = fit_model_patterns(self.model, [x for x, _ in self.reference])
            with torch.enable_grad():
                for inputs, targets in self.reference:
                    per = filter_scores(
                        self.model,
                        inputs,
                        targets,
                        method=self.method,
                        layers=list(names),
                        **options,
                    )
                    for name, value in per.items():
                        value = value.detach().double()
                        part = (value.abs() if self.relevance == "abs" else value).sum(0)
                        sums[name] = part if name not in sums else sums[name] + part
        finally:
            self.model.train(was_training)
        n = self.n_reference
        self.scores = {name: total / n for name, total in sums.items()}
        self.fresh = True

    def layer_scores(self, module: nn.Module, idxs: Sequence[int]) -> torch.Tensor | None:
        """Mean absolute attribution of the selected channels (recomputed if the layer changed)."""
        out = module.out_channels if isinstance(module, nn.Conv2d) else module.out_features
        name = self._name_of(module)
        scores = self.scores.get(name) if name is not None else None
        if scores is None or scores.numel() != out:
            self.refresh()
            scores = self.scores.get(name) if name is not None else None
            if scores is None or scores.numel() != out:
                return None
        return scores[list(idxs)]

    def _name_of(self, module: nn.Module) -> str | None:
        for name, m in self.model.named_modules():
            if m is module:
                return name
        return None


def _data(method: str) -> Callable[..., DataImportance]:
    def make(
        model: nn.Module, reference: ReferenceBatches, normalizer: str | None = None, **opts: Any
    ) -> DataImportance:
        return DataImportance(model, reference, method, normalizer=normalizer, **opts)

    return make


def _weight(
    model: nn.Module, reference: ReferenceBatches | None = None, normalizer: str | None = None, p: int = 1
) -> WeightNormImportance:
    return WeightNormImportance(p=p, normalizer=normalizer)


def _random(
    model: nn.Module, reference: ReferenceBatches | None = None, normalizer: str | None = None, seed: int = 0
) -> RandomImportance:
    return RandomImportance(seed=seed)


#: Criterion constructors by name: ``factory(model, reference, normalizer=None, **options)``.
CRITERIA: dict[str, Callable[..., GroupScorer]] = {
    "lrp": _data("lrp"),
    "ig": _data("ig"),
    "gradient": _data("gradient"),
    "taylor": _data("taylor"),
    "pattern_attribution": _data("pattern_attribution"),
    "weight": _weight,
    "random": _random,
}

#: Criteria that need a reference set.
DATA_CRITERIA = ("lrp", "ig", "gradient", "taylor", "pattern_attribution")


def make_importance(
    name: str,
    model: nn.Module,
    reference: ReferenceBatches | None = None,
    *,
    normalizer: str | None = None,
    **options: Any,
) -> GroupScorer:
    """Build a criterion by name.

    Parameters
    ----------
    name
        A key of :data:`CRITERIA`.
    model
        The network that will be pruned.
    reference
        Reference batches (required by the data-driven criteria).
    normalizer
        Per-group score normalisation (see :class:`GroupScorer`).
    **options
        Criterion options: ``p`` for ``weight``, ``seed`` for ``random``, ``ig_steps``/``composite``
        for the data-driven ones.

    Returns
    -------
    GroupScorer
        The importance.
    """
    if name not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {name!r}; choose one of {sorted(CRITERIA)}")
    if name in DATA_CRITERIA and not reference:
        raise ValueError(f"criterion {name!r} needs reference batches (labelled patches)")
    return CRITERIA[name](model, reference, normalizer=normalizer, **options)
