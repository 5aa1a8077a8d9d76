"""``PruningPlan``: which channels a criterion keeps, serialisable and re-appliable.

A plan records the criterion, the ratio and schedule, the kept output channels of every pruned layer
(relative to the architecture of the model it was computed on), the channel counts of that
architecture (to refuse models it does not fit), and size/quality metrics before and after.
:meth:`PruningPlan.apply` returns a pruned *copy*; the original model is never modified.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from pathxai.atomic import write_text_atomic
from pathxai.errors import PruneError, read_and_parse
from pathxai.jsonio import dumps_json
from pathxai.model.surgery import apply_channel_plan, prunable_layers, validate_channel_plan
from pathxai.prune.criteria import CRITERIA, DATA_CRITERIA, DataImportance, ReferenceBatches, make_importance
from pathxai.prune.engine import FinetuneFn, GroupFn, check_ratio, prune_model
from pathxai.prune.measure import size_metrics

__all__ = ["PLAN_VERSION", "PruningPlan", "compose_plans", "layer_channels"]

PLAN_VERSION = 1


def layer_channels(model: nn.Module) -> dict[str, int]:
    """Output channels of every Conv2d/Linear layer by name."""
    out: dict[str, int] = {}
    for name, m in prunable_layers(model).items():
        if isinstance(m, nn.Conv2d):
            out[name] = int(m.out_channels)
        elif isinstance(m, nn.Linear):
            out[name] = int(m.out_features)
    return out


def compose_plans(
    outer: Mapping[str, Sequence[int]] | None, inner: Mapping[str, Sequence[int]]
) -> dict[str, list[int]]:
    """Express ``inner`` (relative to a model already pruned by ``outer``) relative to the base.

    Parameters
    ----------
    outer
        Channel plan of the already-pruned model (relative to the base architecture), or ``None``.
    inner
        Kept channels relative to the already-pruned model.

    Returns
    -------
    dict[str, list[int]]
        The combined plan relative to the base architecture.
    """
    outer = outer or {}
    combined = {k: list(v) for k, v in outer.items()}
    for name, kept in inner.items():
        base = outer.get(name)
        combined[name] = list(kept) if base is None else [int(base[i]) for i in kept]
    return combined


def _clean_metrics(metrics: Mapping[str, Any], what: str) -> dict[str, float]:
    if not isinstance(metrics, Mapping):
        raise PruneError(f"pruning plan '{what}' must be an object of numbers")
    out = {}
    for k, v in metrics.items():
        if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(float(v)):
            raise PruneError(f"pruning plan '{what}.{k}' must be a finite number, got {v!r}")
        out[str(k)] = float(v)
    return out


@dataclass(frozen=True)
class PruningPlan:
    """A structured-pruning decision.

    Attributes
    ----------
    criterion
        Name of the criterion (a key of :data:`pathxai.prune.CRITERIA`).
    ratio
        Fraction of channels removed, in ``[0, 1)``.
    channels
        Layer name -> kept output-channel indices (sorted), for the layers that lost channels.
    base_channels
        Output channels of every Conv2d/Linear layer of the model the plan was computed on.
    input_size
        Input side used to trace the network.
    global_pruning, iterative_steps
        How channels were ranked (all groups together or per group) and in how many steps.
    n_reference
        Reference samples the criterion used (0 for data-free criteria).
    seed
        Seed of the run (reference sampling, random criterion).
    metrics_before, metrics_after
        Numbers measured on the model before and after (params, MACs, latency, AUC, ...).
    extra
        Free-form details (e.g. the drift report).
    """

    criterion: str
    ratio: float
    channels: dict[str, list[int]]
    base_channels: dict[str, int]
    input_size: int
    global_pruning: bool = False
    iterative_steps: int = 1
    n_reference: int = 0
    seed: int = 0
    metrics_before: dict[str, float] = field(default_factory=dict)
    metrics_after: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.criterion not in CRITERIA:
            raise PruneError(
                f"pruning plan has unknown criterion {self.criterion!r}; known: {sorted(CRITERIA)}"
            )
        try:
            check_ratio(self.ratio)
        except ValueError as exc:
            raise PruneError(f"invalid pruning plan: {exc}") from exc
        if not isinstance(self.input_size, int) or isinstance(self.input_size, bool) or self.input_size < 1:
            raise PruneError(f"pruning plan 'input_size' must be a positive integer, got {self.input_size!r}")
        if not isinstance(self.iterative_steps, int) or self.iterative_steps < 1:
            raise PruneError(f"pruning plan 'iterative_steps' must be >= 1, got {self.iterative_steps!r}")
        if not isinstance(self.base_channels, Mapping) or not all(
            isinstance(v, int) and v > 0 for v in self.base_channels.values()
        ):
            raise PruneError("pruning plan 'base_channels' must map layer names to positive channel counts")
        if not isinstance(self.channels, Mapping):
            raise PruneError("pruning plan 'channels' must map layer names to kept-channel lists")
        for name, kept in self.channels.items():
            if name not in self.base_channels:
                raise PruneError(f"pruning plan keeps channels of unknown layer {name!r}")
            n = self.base_channels[name]
            if (
                not isinstance(kept, list | tuple)
                or not kept
                or not all(isinstance(i, int) and 0 <= i < n for i in kept)
                or len(set(kept)) != len(kept)
            ):
                raise PruneError(
                    f"pruning plan for layer {name!r} must keep distinct channel indices in 0..{n - 1}"
                )
        _clean_metrics(self.metrics_before, "metrics_before")
        _clean_metrics(self.metrics_after, "metrics_after")

    # ------------------------------------------------------------------ derived numbers
    @property
    def channels_before(self) -> int:
        """Total output channels of the pruned layers' base architecture (all layers)."""
        return int(sum(self.base_channels.values()))

    @property
    def channels_after(self) -> int:
        """Total output channels after pruning."""
        return int(
            sum(len(self.channels[n]) if n in self.channels else c for n, c in self.base_channels.items())
        )

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict."""
        data = dataclasses.asdict(self)
        data["version"] = PLAN_VERSION
        return data

    def to_json(self) -> str:
        """Indented, key-sorted JSON text."""
        return dumps_json(self.to_dict(), indent=2, sort_keys=True)

    def save(self, path: str | Path) -> Path:
        """Write the plan as JSON atomically."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(p, self.to_json())
        return p

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PruningPlan:
        """Rebuild a plan from :meth:`to_dict` output.

        Raises
        ------
        PruneError
            Not an object, wrong version, unknown or missing keys, or invalid content.
        """
        if not isinstance(data, Mapping):
            raise PruneError(f"a pruning plan must be a JSON object, got {type(data).__name__}")
        body = dict(data)
        version = body.pop("version", PLAN_VERSION)
        if version != PLAN_VERSION:
            raise PruneError(f"pruning plan version {version!r} is not supported (expected {PLAN_VERSION})")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise PruneError(f"pruning plan has unknown keys {unknown}")
        required = {"criterion", "ratio", "channels", "base_channels", "input_size"}
        missing = sorted(required - set(body))
        if missing:
            raise PruneError(f"pruning plan lacks keys {missing}")
        channels = body["channels"]
        if isinstance(channels, Mapping):
            body["channels"] = {
                str(k): list(v) if isinstance(v, list | tuple) else v for k, v in channels.items()
            }
        return cls(**body)

    @classmethod
    def from_json(cls, text: str | bytes) -> PruningPlan:
        """Parse :meth:`to_json` output."""
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PruneError(f"pruning plan is not valid JSON ({exc})") from exc
        return cls.from_dict(data)

    @classmethod
    def load(cls, path: str | Path) -> PruningPlan:
        """Read a plan written by :meth:`save`."""
        return read_and_parse(path, cls.from_json, PruneError, "pruning plan")

    # ------------------------------------------------------------------ compute / apply
    @classmethod
    def compute_and_prune(
        cls,
        model: nn.Module,
        criterion: str,
        ratio: float,
        reference_batches: ReferenceBatches | None = None,
        *,
        input_size: int | None = None,
        global_pruning: bool = False,
        iterative_steps: int = 1,
        layer_ratios: Mapping[str, float] | None = None,
        finetune: FinetuneFn | None = None,
        seed: int = 0,
        criterion_options: Mapping[str, Any] | None = None,
        normalizer: str | None = None,
        precomputed_scores: Mapping[str, Any] | None = None,
        on_group: GroupFn | None = None,
    ) -> tuple[PruningPlan, nn.Module]:
        """Rank channels with ``criterion`` and prune a copy of ``model``.

        Parameters
        ----------
        model
            The network (left unchanged).
        criterion
            A key of :data:`~pathxai.prune.CRITERIA`.
        ratio
            Fraction of channels removed, in ``[0, 1)``.
        reference_batches
            Labelled, preprocessed ``(inputs, targets)`` batches for the data-driven criteria.
        input_size
            Input side; default ``model.pathxai_card.input_size``.
        global_pruning, iterative_steps, layer_ratios, finetune, on_group
            See :func:`pathxai.prune.engine.prune_model`.
        seed
            Seed for the ``random`` criterion (recorded in the plan).
        criterion_options
            Extra options for the criterion (``p``, ``ig_steps``, ``composite``).
        normalizer
            Per-group score normalisation for global pruning.
        precomputed_scores
            For data-driven criteria: channel scores by layer name already computed on ``model``
            (:attr:`DataImportance.scores`), reused for the first step (e.g. one attribution pass
            shared by several ratios).

        Returns
        -------
        tuple[PruningPlan, nn.Module]
            The plan (params/MACs before and after in its metrics) and the pruned copy.
        """
        ratio, size = check_ratio(ratio), _input_size(model, input_size)
        options = _criterion_options(criterion, seed, criterion_options, precomputed_scores)
        work = copy.deepcopy(model).eval()
        importance = make_importance(criterion, work, reference_batches, normalizer=normalizer, **options)
        before, base_channels = size_metrics(model, size), layer_channels(model)
        kept = prune_model(
            work,
            importance,
            ratio,
            input_size=size,
            global_pruning=global_pruning,
            iterative_steps=iterative_steps,
            layer_ratios=layer_ratios,
            finetune=finetune,
            on_group=on_group,
        )  # leaves ``work`` in eval mode, as it found it
        plan = cls(
            criterion=criterion,
            ratio=ratio,
            channels=kept,
            base_channels=base_channels,
            input_size=size,
            global_pruning=global_pruning,
            iterative_steps=iterative_steps,
            n_reference=importance.n_reference if isinstance(importance, DataImportance) else 0,
            seed=int(seed),
            metrics_before=before,
            metrics_after=size_metrics(work, size),
        )
        return plan, work

    @classmethod
    def compute(
        cls,
        model: nn.Module,
        criterion: str,
        ratio: float,
        reference_batches: ReferenceBatches | None = None,
        **options: Any,
    ) -> PruningPlan:
        """Compute a plan without modifying ``model`` (see :meth:`compute_and_prune`)."""
        return cls.compute_and_prune(model, criterion, ratio, reference_batches, **options)[0]

    def check_fits(self, model: nn.Module) -> None:
        """Raise :class:`PruneError` unless ``model`` has exactly the plan's base architecture."""
        have = layer_channels(model)
        unknown = sorted(set(self.channels) - set(have))
        if unknown:
            raise PruneError(
                f"pruning plan names layers {unknown[:5]} that the {type(model).__name__} model lacks",
                hint="the plan was computed on another architecture",
            )
        diff = [
            f"{n}: model {have.get(n)} vs plan {c}" for n, c in self.base_channels.items() if have.get(n) != c
        ]
        extra = sorted(set(have) - set(self.base_channels))
        if diff or extra:
            detail = "; ".join(diff[:3]) + (f"; layers not in plan {extra[:3]}" if extra else "")
            raise PruneError(
                f"model does not fit the pruning plan ({detail})",
                hint="apply a plan to the unpruned model it was computed on (same architecture and widths)",
            )

    def apply(self, model: nn.Module) -> nn.Module:
        """Return a pruned copy of ``model`` keeping the plan's channels (``model`` is unchanged).

        Raises
        ------
        PruneError
            The model's architecture differs from the plan's, or the plan contradicts itself.
        """
        self.check_fits(model)
        validate_channel_plan(model, self.channels)
        work = copy.deepcopy(model)
        was_training = work.training
        apply_channel_plan(work, self.channels, self.input_size)
        work.train(was_training)
        return work


def _criterion_options(
    criterion: str,
    seed: int,
    options: Mapping[str, Any] | None,
    precomputed_scores: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Options of :func:`make_importance`: the seed of ``random``, scores computed already.

    Raises
    ------
    ValueError
        ``criterion`` is not a key of :data:`CRITERIA`.
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown pruning criterion {criterion!r}; choose one of {sorted(CRITERIA)}")
    out = dict(options or {})
    if criterion == "random":
        out.setdefault("seed", seed)
    if precomputed_scores is not None and criterion in DATA_CRITERIA:
        out["scores"] = precomputed_scores
    return out


def _input_size(model: nn.Module, input_size: int | None) -> int:
    if input_size is not None:
        if int(input_size) < 1:
            raise ValueError(f"input_size must be positive, got {input_size}")
        return int(input_size)
    card = getattr(model, "pathxai_card", None)
    size = getattr(card, "input_size", None)
    if not isinstance(size, int):
        raise ValueError("input_size is required for a model without a pathxai model card")
    return size
