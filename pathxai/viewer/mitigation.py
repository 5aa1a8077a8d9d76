"""A mitigated model folder in the viewer: ``mitigation.json``'s before/after, both models on the same tiles.

``pathxai mitigate --out DIR`` writes a model folder with ``mitigation.json`` beside its card; the
catalogue lists it (:attr:`pathxai.viewer.catalog.ModelEntry.mitigation_rel`). This module reads that
document into tables (:func:`summary_table`, :func:`reaudit_table`) and rebuilds a few of a step's
stress images, the clean held-out images of the other class with the finding's evidence transplanted
(:func:`pathxai.mitigate.examples.stress_examples`), to explain them with the original and the
mitigated model (:func:`compare`). Like every file the viewer shows, the original model, the manifest
and its images must lie under the viewer's roots (the output folder or a slide root).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from pathxai.errors import ConfinementError, PathXAIError
from pathxai.mitigate.examples import ExampleHeat, StressExample, explain_examples, stress_examples
from pathxai.mitigate.report import summary_rows
from pathxai.model import ModelCard
from pathxai.viewer.catalog import Catalog, ModelEntry, read_json

__all__ = [
    "Comparison",
    "MissingMitigation",
    "compare",
    "mitigated_models",
    "read_mitigation",
    "reaudit_table",
    "stress_steps",
    "summary_table",
]

#: Loads a model reference (a folder or ``"default"``) into ``(model, card)``.
ModelLoader = Callable[[str], tuple[nn.Module, ModelCard]]


class MissingMitigation(PathXAIError):
    """A model folder without a readable ``mitigation.json``."""


def mitigated_models(cat: Catalog) -> list[ModelEntry]:
    """The model folders of the catalogue with ``mitigation.json`` beside their card."""
    return [m for m in cat.models if m.mitigation_rel]


def read_mitigation(cat: Catalog, model: ModelEntry) -> dict[str, Any]:
    """The ``mitigation.json`` of a model folder.

    Raises
    ------
    MissingMitigation
        If the folder has no ``mitigation.json`` (not a mitigated model) or it is not a mitigation report.
    """
    if not model.mitigation_rel:
        raise MissingMitigation(
            f"{model.rel} has no mitigation.json: it is not a mitigated model. "
            "`pathxai mitigate --model DIR ... --out NEW` writes one."
        )
    doc = read_json(cat.roots, model.mitigation_rel)
    if not isinstance(doc, dict) or not isinstance(doc.get("steps"), list):
        raise MissingMitigation(
            f"{model.mitigation_rel} is not a pathxai mitigation report (no 'steps' list)"
        )
    return doc


def _num(x: Any) -> str:
    if x is None:
        return "—"
    if isinstance(x, float):
        return f"{x:.3f}"
    return str(x)


def summary_table(step: Mapping[str, Any]) -> list[dict[str, str]]:
    """Rows ``measure / before / after`` of a step (as in ``mitigation.html``)."""
    return [{"measure": n, "before": _num(b), "after": _num(a)} for n, b, a in summary_rows(step)]


def reaudit_table(step: Mapping[str, Any]) -> list[dict[str, str]]:
    """The re-audit's findings before → after: severity and value per finding id (the step's finding first)."""
    before = {str(f.get("id")): f for f in (step.get("before") or {}).get("reaudit", [])}
    after = {str(f.get("id")): f for f in (step.get("after") or {}).get("reaudit", [])}
    ids = sorted(set(before) | set(after), key=lambda i: (i != step.get("finding"), i))
    rows = []
    for i in ids:
        b, a = before.get(i, {}), after.get(i, {})
        rows.append(
            {
                "finding": i,
                "severity before": _num(b.get("severity")),
                "severity after": _num(a.get("severity")),
                "value before": _num(b.get("value")),
                "value after": _num(a.get("value")),
            }
        )
    return rows


def stress_steps(doc: Mapping[str, Any]) -> list[int]:
    """Indices of the steps with a stress test (artifact and stain findings)."""
    return [i for i, s in enumerate(doc.get("steps", [])) if "stress" in (s.get("before") or {})]


def _under_roots(cat: Catalog, raw: str, what: str) -> Path:
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    real = path.resolve()
    if not any(real.is_relative_to(r) for r in cat.roots.slides):
        raise ConfinementError(
            f"the {what} of this mitigation ({raw}) is outside the viewer's roots, so it is not read. "
            "Start the viewer on a folder that holds it, or add `--slide-root DIR`."
        )
    if not real.exists():
        raise PathXAIError(f"the {what} of this mitigation ({raw}) no longer exists")
    return real


@dataclass(frozen=True)
class Comparison:
    """The original and the mitigated model on the same stress images of one step.

    Attributes
    ----------
    examples
        The stress images (clean held-out image of the other class + the evidence).
    original, mitigated
        Each model's relevance and tumour probabilities, one per example.
    recorded
        Per example: the stressed-image tumour probabilities of ``mitigation.json`` (before, after), to
        check that the images shown are those the stress test measured (``None`` where not recorded, or
        where a step of several measured an intermediate model).
    """

    examples: tuple[StressExample, ...]
    original: tuple[ExampleHeat, ...]
    mitigated: tuple[ExampleHeat, ...]
    recorded: tuple[tuple[float | None, float | None], ...]

    def max_mismatch(self) -> float:
        """Largest gap between a recomputed and a recorded stressed probability (0 when none is recorded)."""
        gaps = [
            abs(h.p_stressed - r)
            for heats, col in ((self.original, 0), (self.mitigated, 1))
            for h, rec in zip(heats, self.recorded, strict=True)
            if (r := rec[col]) is not None
        ]
        return max(gaps, default=0.0)


def _recorded(
    step: Mapping[str, Any], examples: Sequence[StressExample], first: bool, last: bool
) -> tuple[Any, ...]:
    """The step's recorded stressed probabilities, per example ``(before, after)``.

    ``before`` is the original model's only for the first step and ``after`` the mitigated model's only
    for the last (each step starts from the previous one's model).
    """

    def at(when: str, i: int) -> float | None:
        if not (first if when == "before" else last):
            return None
        vals = ((step.get(when) or {}).get("stress") or {}).get("stressed") or []
        return float(vals[i]) if i < len(vals) and vals[i] is not None else None

    return tuple((at("before", e.index), at("after", e.index)) for e in examples)


def compare(
    cat: Catalog, model: ModelEntry, doc: Mapping[str, Any], step_index: int, n: int, load: ModelLoader
) -> Comparison:
    """Rebuild ``n`` stress images of step ``step_index`` and explain them with both models (LRP).

    Parameters
    ----------
    cat, model
        The catalogue and the mitigated model folder.
    doc
        Its ``mitigation.json``.
    step_index, n
        Which step (one with a stress test) and how many of its stress images.
    load
        Loads a model folder into ``(model, card)`` (the page passes its cached loader).

    Raises
    ------
    ConfinementError
        If the original model, the manifest or its data root lie outside the viewer's roots.
    PathXAIError
        If a file is missing or unreadable.
    """
    step = doc["steps"][step_index]
    data = doc.get("data") or {}
    manifest = _under_roots(cat, str(doc.get("manifest", "")), "manifest")
    root = _under_roots(cat, str(data.get("data_root") or manifest.parent), "data root")
    original = str(doc.get("model", ""))
    original_ref = "default" if original == "default" else str(_under_roots(cat, original, "original model"))
    net_o, card_o = load(original_ref)
    net_m, card_m = load(str(cat.roots.out / model.rel))
    examples = stress_examples(
        step,
        manifest,
        root,
        float(data.get("mpp") or card_o.mpp),
        n,
        str(data.get("train_split") or "train"),
        str(data.get("test_split") or "test"),
        data.get("native_mpp"),
    )
    return Comparison(
        tuple(examples),
        tuple(explain_examples(net_o, card_o, examples)),
        tuple(explain_examples(net_m, card_m, examples)),
        _recorded(step, examples, step_index == 0, step_index == len(doc["steps"]) - 1),
    )
