"""The mitigation run: the cohort from a manifest, the per-finding loop, the report and the new card.

:func:`run_targets` acts on every selected finding in turn: it measures the current model
(:func:`pathxai.mitigate.measure.measure`), runs the method, measures the new model the same way and
records the ``before``/``after`` step; a label finding becomes relabelling candidates (and a
fine-tune on the confirmed labels when a person's confirmation file is given).
:func:`mitigation_doc` and :func:`mitigated_card` assemble ``mitigation.json`` and the new model card.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn
from tqdm.auto import tqdm

from pathxai.audit.cohort import AuditItem
from pathxai.errors import ManifestError
from pathxai.manifest import ManifestRecord, read_manifest
from pathxai.mitigate.evidence import Cohort, evidence_of
from pathxai.mitigate.finetune import FinetuneSettings, finetune
from pathxai.mitigate.measure import measure, reaudit_items
from pathxai.mitigate.methods import choose_method, run_method
from pathxai.mitigate.relabel import candidates, read_confirmations, write_candidates
from pathxai.mitigate.select import Target
from pathxai.mitigate.stress import PASS_FLOOR, PASS_RATIO
from pathxai.model.card import ModelCard
from pathxai.model.datasets import load_images
from pathxai.prune.plan import compose_plans

__all__ = [
    "Run",
    "labels_step",
    "load_cohort",
    "mitigated_card",
    "mitigation_doc",
    "run_targets",
    "split_records",
    "step_passed",
]

#: Methods that act in a concept layer (their step records the layer).
LAYER_METHODS = ("clarc-p", "clarc-a", "rr-clarc")


def split_records(
    man_path: str | Path, train_split: str, test_split: str
) -> tuple[list[ManifestRecord], list[ManifestRecord]]:
    """The labelled ``train_split`` and ``test_split`` rows of a manifest.

    Raises
    ------
    ManifestError
        If either split has no labelled row.
    """
    m = read_manifest(man_path)
    recs = [r for r in m.records if r.tumour is not None]
    train = [r for r in recs if r.split == train_split]
    test = [r for r in recs if r.split == test_split]
    if not train or not test:
        raise ManifestError(
            f"the manifest needs '{train_split}' rows (to correct the model on) and clean '{test_split}' rows "
            f"(held-out patients for the stress test and AUC); found {len(train)} and {len(test)}",
            path=m.path,
            hint="set the split column, or pass --train-split / --test-split",
        )
    return train, test


def load_cohort(
    manifest: str | Path,
    data_root: str | Path | None,
    train_split: str,
    test_split: str,
    mpp: float,
    native_mpp: float | None = None,
    progress: bool = True,
) -> Cohort:
    """The training and held-out images of a manifest at ``mpp``, with labels, ids and groups.

    Parameters
    ----------
    manifest, data_root
        The manifest and the directory its paths are relative to (default: the manifest's folder).
    train_split, test_split
        Split values of the training and held-out rows.
    mpp, native_mpp
        The model's µm/px, and that of images whose manifest row has no ``mpp``.
    progress
        Progress bar while loading.
    """
    train, test = split_records(manifest, train_split, test_split)
    root = Path(data_root) if data_root is not None else Path(manifest).parent
    imgs = load_images(train + test, root, mpp, native_mpp, progress)
    n = len(train)
    return Cohort(
        mpp=mpp,
        train=imgs[:n],
        train_labels=[int(r.tumour or 0) for r in train],
        train_ids=[r.id for r in train],
        heldout=imgs[n:],
        heldout_labels=[int(r.tumour or 0) for r in test],
        heldout_ids=[r.id for r in test],
        train_groups={
            "site": [r.site or "" for r in train],
            "scanner": [r.scanner or "" for r in train],
            "patient": [r.group for r in train],
        },
    )


def step_passed(before: dict[str, Any], after: dict[str, Any]) -> bool | None:
    """Whether the stress test passed (``None``: the step has no stress test)."""
    if "stress" not in before:
        return None
    b, a = abs(before["stress"]["sensitivity"]), abs(after["stress"]["sensitivity"])
    return bool(a <= max(PASS_FLOOR, PASS_RATIO * b))


def labels_step(
    target: Target, cohort: Cohort, out: Path, confirm: str | Path | None
) -> tuple[dict[str, Any], Cohort | None]:
    """Write a label finding's relabelling candidates; the relabelled cohort if ``confirm`` is given."""
    rows = candidates(target.finding)
    path = write_candidates(rows, out)
    step: dict[str, Any] = {
        "finding": target.id,
        "check": target.check,
        "method": "relabel",
        "candidates": str(path),
    }
    if confirm is None:
        step["status"] = "awaiting-confirmation"
        step["note"] = (
            f"{len(rows)} relabelling candidates written to {path.name}; no label was changed. Mark the rows "
            "you agree with (confirm = yes) and rerun with --confirm-labels FILE."
        )
        return step, None
    changes = read_confirmations(confirm, cohort.train_ids)
    labels = [changes.get(i, y) for i, y in zip(cohort.train_ids, cohort.train_labels, strict=True)]
    step["status"] = "relabelled"
    step["changed"] = {i: changes[i] for i in sorted(changes)}
    return step, dataclasses.replace(cohort, train_labels=labels)


@dataclass
class Run:
    """The state of a mitigation run: the current model, its card's projection, the steps so far.

    Attributes
    ----------
    model
        The current (latest corrected) model.
    projection
        The card's projection entry (from the last ClArC-P step, else the original card's).
    steps
        Per finding: id, method, before, after, passed (as in ``mitigation.json``).
    changed
        Whether any step changed the model.
    channel_plan
        The card's channel plan (the original card's, composed with every ``prune`` step's).
    """

    model: nn.Module
    projection: dict[str, Any] | None = None
    channel_plan: dict[str, list[int]] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    changed: bool = False


def _progress_bar(desc: str, enabled: bool) -> tuple[Any, Any]:
    bar = tqdm(total=0, desc=desc, disable=not enabled, leave=False)

    def tick(step: int, total: int, loss: float) -> None:
        bar.total = total
        bar.n = step
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.refresh()

    return bar, tick


def _method_step(
    run: Run,
    card: ModelCard,
    cohort: Cohort,
    target: Target,
    items: list[AuditItem],
    method: str,
    layer: str,
    settings: FinetuneSettings,
    progress: bool,
) -> None:
    name = choose_method(method, target)
    evidence = evidence_of(target, cohort)
    bar, tick = _progress_bar(f"mitigate {target.id}: {name}", progress)
    before = measure(run.model, card, cohort, evidence, items)
    outcome = run_method(name, run.model, card, cohort, evidence, layer, settings, tick)
    bar.close()
    after = measure(outcome.model, card, cohort, evidence, items)
    run.model, run.changed = outcome.model, True
    run.projection = outcome.projection or run.projection
    if outcome.channel_plan:
        run.channel_plan = compose_plans(run.channel_plan, outcome.channel_plan)
    step: dict[str, Any] = {}
    if "stress" in before:
        # the images of the stress test (recipient i carries the evidence of source i mod len(sources))
        step["stress_images"] = {
            "recipients": cohort.ids_of_class(1 - target.flagged_class, heldout=True),
            "sources": list(evidence.source_ids),
        }
    run.steps.append(
        {
            "finding": target.id,
            "check": target.check,
            "kind": target.kind,
            "artifact": target.artifact,
            "flagged_class": target.flagged_class,
            "method": name,
            "layer": layer if name in LAYER_METHODS else None,
            "info": outcome.info,
            "before": before,
            "after": after,
            "passed": step_passed(before, after),
            **step,
        }
    )


def run_targets(
    net: nn.Module,
    card: ModelCard,
    cohort: Cohort,
    targets: list[Target],
    out: Path,
    method: str,
    layer: str,
    settings: FinetuneSettings,
    confirm: str | Path | None = None,
    reaudit: bool = True,
    progress: bool = True,
) -> Run:
    """Act on every target in turn, measuring the model before and after each method.

    Parameters
    ----------
    net, card
        The model to correct (not modified) and its card.
    cohort
        Training and held-out images (see :func:`load_cohort`).
    targets
        The findings to act on (:func:`pathxai.mitigate.select.select_findings`).
    out
        Output folder (relabelling candidates are written there).
    method, layer, settings
        Method name (or ``auto``), concept layer of the ClArC methods, fine-tuning settings.
    confirm
        A person's confirmation file for label findings.
    reaudit
        Re-run the finding's checks on the training images before and after.
    progress
        Progress bars.
    """
    items = reaudit_items(cohort) if reaudit else []
    run = Run(model=net, projection=card.projection, channel_plan=card.channel_plan)
    for target in targets:
        if target.kind != "labels":
            _method_step(run, card, cohort, target, items, method, layer, settings, progress)
            continue
        step, relabelled = labels_step(target, cohort, out, confirm)
        if relabelled is not None:
            run.model, hist = finetune(run.model, card, relabelled.train, relabelled.train_labels, settings)
            step["history"] = hist
            cohort, run.changed = relabelled, True
        run.steps.append(step)
    return run


def mitigation_doc(
    run: Run,
    model: str | Path,
    manifest: str | Path,
    audit: str | Path,
    method: str,
    settings: FinetuneSettings,
    data: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The ``mitigation.json`` document of a run (without ``seconds``).

    ``data`` says how the cohort was read (``data_root``, ``train_split``, ``test_split``, ``mpp``,
    ``native_mpp``), so the stress images can be rebuilt (the viewer's mitigation tab does).
    """
    return {
        "status": "mitigated" if run.changed else "awaiting-confirmation",
        "model": str(model),
        "manifest": str(manifest),
        "audit": str(audit),
        **({"data": dict(data)} if data is not None else {}),
        "method": method,
        "settings": settings.to_dict(),
        "pass_rule": f"|after sensitivity| <= max({PASS_FLOOR}, {PASS_RATIO} x |before|)",
        "steps": run.steps,
    }


def mitigated_card(
    run: Run, card: ModelCard, model: str | Path, audit: str | Path, command: str
) -> ModelCard:
    """The corrected model's card: the projection, what was mitigated, the clean AUCs after."""
    summary = [{k: s.get(k) for k in ("finding", "method", "passed")} for s in run.steps]
    for s, entry in zip(run.steps, summary, strict=True):
        if "channels_removed" in (s.get("info") or {}):
            entry["channels_removed"] = s["info"]["channels_removed"]
    return dataclasses.replace(
        card,
        projection=run.projection,
        channel_plan=run.channel_plan,
        training={
            **card.training,
            "mitigation": {"from_model": str(model), "audit": str(audit), "steps": summary},
        },
        metrics={
            **card.metrics,
            "mitigation_clean_auc": [s["after"].get("clean_auc") for s in run.steps if "after" in s],
        },
        command=command or card.command,
    )
