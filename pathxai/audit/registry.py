"""The check registry: every audit check registers under its report name (as zennit registers composites).

A check is a function ``(ctx: CheckContext) -> list[BiasFinding]``. Its registered name is the
``check`` it writes into ``report.json`` (``sampling.leakage``); a check that writes several
parameterised names registers its family (``artifact.relevance`` writes ``artifact.relevance:pen:blue``,
``artifact.relevance:fold`` ...). Results that several checks share (stain features, artifact masks,
SpRAy clusters) are computed once per context by :meth:`CheckContext.memo`.

>>> @register_check("demo.count", family="dataset")          # doctest: +SKIP
... def count(ctx): return [graded(ctx.thresholds, ...)]
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from pathxai.audit.cohort import AuditItem
from pathxai.audit.findings import BiasFinding, Family, Thresholds

__all__ = [
    "CHECK_MODULES",
    "CheckContext",
    "RegisteredCheck",
    "check_names",
    "get_check",
    "register_check",
    "run_checks",
]

#: Modules whose import registers the built-in checks, in report order.
CHECK_MODULES = (
    "pathxai.audit.stain",
    "pathxai.audit.artifacts",
    "pathxai.audit.labels",
    "pathxai.audit.sampling",
    "pathxai.audit.spray",
)

T = TypeVar("T")
Predictor = Callable[[Sequence[np.ndarray]], np.ndarray]


@dataclass
class CheckContext:
    """Everything a check may look at, and the results checks share.

    Attributes
    ----------
    items
        The cohort.
    thresholds
        Severity rules and settings.
    seen_in_training
        Item ids the model was trained on (excluded from per-group performance).
    train_split
        Name of the training split in the ``split`` column.
    mask_kind
        What the annotation masks outline, stated in the label findings.
    predict
        ``images -> tumour probabilities`` for the stain-sensitivity check (skipped when ``None``).
    reference
        Reference H&E image for stain normalisation (optional).
    tables
        JSON-ready tables a check leaves for the report (e.g. ``stain_sensitivity``).
    """

    items: Sequence[AuditItem]
    thresholds: Thresholds = field(default_factory=Thresholds)
    seen_in_training: Collection[str] = ()
    train_split: str = "train"
    mask_kind: str = "annotation"
    predict: Predictor | None = None
    reference: np.ndarray | None = None
    tables: dict[str, Any] = field(default_factory=dict)
    _memo: dict[str, Any] = field(default_factory=dict, repr=False)

    def memo(self, key: str, make: Callable[[], T]) -> T:
        """``make()`` once per context under ``key``; later calls return the same object."""
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]  # type: ignore[no-any-return]

    def provide(self, key: str, value: object) -> None:
        """Store a shared result computed elsewhere (e.g. precomputed statistics passed by a caller)."""
        self._memo[key] = value


@dataclass(frozen=True)
class RegisteredCheck:
    """A registered check: its report name, bias family (``None`` when its findings' families vary), module, function."""

    name: str
    family: Family | None
    module: str
    run: Callable[[CheckContext], list[BiasFinding]]


_REGISTRY: dict[str, RegisteredCheck] = {}


def register_check(
    name: str, family: Family | None = None
) -> Callable[[Callable[[CheckContext], list[BiasFinding]]], Callable[[CheckContext], list[BiasFinding]]]:
    """Decorator: register a check function under ``name`` (its ``check`` name in report.json).

    Raises
    ------
    ValueError
        If another function is already registered under ``name``.
    """

    def deco(fn: Callable[[CheckContext], list[BiasFinding]]) -> Callable[[CheckContext], list[BiasFinding]]:
        old = _REGISTRY.get(name)
        if old is not None and (old.module, old.run.__qualname__) != (fn.__module__, fn.__qualname__):
            raise ValueError(f"check {name!r} is already registered by {old.module}")
        _REGISTRY[name] = RegisteredCheck(name, family, fn.__module__, fn)
        return fn

    return deco


def _load_builtin() -> None:
    for mod in CHECK_MODULES:
        importlib.import_module(mod)


def check_names(module: str | None = None) -> list[str]:
    """Registered check names (of one module when given): by :data:`CHECK_MODULES`, then registration order."""
    _load_builtin()
    order = {m: i for i, m in enumerate(CHECK_MODULES)}
    names = [n for n, c in _REGISTRY.items() if module is None or c.module == module]
    # built-in modules in CHECK_MODULES order (whatever order they were imported in), then the others
    return sorted(names, key=lambda n: order.get(_REGISTRY[n].module, len(order)))


def get_check(name: str) -> RegisteredCheck:
    """The registered check ``name``.

    Raises
    ------
    KeyError
        For an unknown name, listing the known ones.
    """
    _load_builtin()
    if name not in _REGISTRY:
        raise KeyError(f"unknown audit check {name!r}; registered: {sorted(_REGISTRY)}")
    return _REGISTRY[name]


def run_checks(
    ctx: CheckContext, names: Sequence[str] | None = None, module: str | None = None
) -> list[BiasFinding]:
    """Run the named checks (default: all registered, or those of ``module``) in order; concatenated findings."""
    if not ctx.items:
        return []
    out: list[BiasFinding] = []
    for name in names if names is not None else check_names(module):
        out += get_check(name).run(ctx)
    return out
