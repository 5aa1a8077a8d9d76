"""Act on an audit finding and prove the shortcut is gone (what ``pathxai mitigate`` calls).

:func:`mitigate` reads a model, its training manifest (``train`` rows to correct on, ``test`` rows as
the clean held-out cases) and an audit report; for every finding it acts on it measures the model
(:func:`pathxai.mitigate.measure.measure`), runs the method, measures the new model the same way,
and finally writes a normal model folder (``model.safetensors`` + ``model_card.json`` saying what was
mitigated and how), ``mitigation.json`` (``before``/``after`` per finding) and ``mitigation.html``.
A label finding only writes ``relabel_candidates.csv`` unless a person's confirmation file is given.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from pathxai.errors import ManifestError
from pathxai.jsonio import write_json
from pathxai.manifest import ManifestRecord, read_manifest
from pathxai.mitigate.cav import default_layer
from pathxai.mitigate.evidence import Cohort, evidence_of
from pathxai.mitigate.finetune import FinetuneSettings, finetune
from pathxai.mitigate.measure import measure, reaudit_items
from pathxai.mitigate.methods import choose_method, run_method
from pathxai.mitigate.relabel import candidates, read_confirmations, write_candidates
from pathxai.mitigate.report import write_html
from pathxai.mitigate.select import Target, read_report, select_findings
from pathxai.mitigate.stress import PASS_FLOOR, PASS_RATIO
from pathxai.model.datasets import load_images
from pathxai.model.io import load_model_with_card, save_model

__all__ = ["FinetuneSettings", "MitigationResult", "mitigate"]

REPORT_FILE = "mitigation.json"


@dataclass(frozen=True)
class MitigationResult:
    """What :func:`mitigate` did.

    Attributes
    ----------
    out
        Output folder.
    status
        ``mitigated`` (a model was written) or ``awaiting-confirmation`` (label candidates only).
    steps
        Per finding: id, method, before, after, passed (as in ``mitigation.json``).
    """

    out: Path
    status: str
    steps: tuple[dict[str, Any], ...] = field(default=())

    @property
    def passed(self) -> bool:
        """Whether every stress-tested finding passed."""
        return all(s.get("passed", True) is not False for s in self.steps)


def _records(
    man_path: str | Path, train_split: str, test_split: str
) -> tuple[list[ManifestRecord], list[ManifestRecord]]:
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


def _cohort(
    train: list[ManifestRecord],
    test: list[ManifestRecord],
    root: Path,
    mpp: float,
    native_mpp: float | None,
    progress: bool,
) -> Cohort:
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


def _passed(before: dict[str, Any], after: dict[str, Any]) -> bool | None:
    if "stress" not in before:
        return None
    b, a = abs(before["stress"]["sensitivity"]), abs(after["stress"]["sensitivity"])
    return bool(a <= max(PASS_FLOOR, PASS_RATIO * b))


def _labels_step(
    target: Target, cohort: Cohort, out: Path, confirm: str | Path | None
) -> tuple[dict[str, Any], Cohort | None]:
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


def mitigate(
    model: str | Path,
    manifest: str | Path,
    audit: str | Path,
    out: str | Path,
    data_root: str | Path | None = None,
    finding: str | None = None,
    method: str = "auto",
    layer: str | None = None,
    settings: FinetuneSettings | None = None,
    train_split: str = "train",
    test_split: str = "test",
    native_mpp: float | None = None,
    confirm_labels: str | Path | None = None,
    reaudit: bool = True,
    command: str = "",
    progress: bool = True,
) -> MitigationResult:
    """Mitigate the audit's findings on a model; write the new model, ``mitigation.json`` and ``.html``.

    Parameters
    ----------
    model
        Model folder (or ``default``) the audit was run with.
    manifest
        Its training manifest: ``train_split`` rows are corrected on, ``test_split`` rows are the
        clean held-out cases of the stress test and the AUC.
    audit
        The audit's output folder (``report.json``) or the report itself.
    out
        Output folder: a model folder plus ``mitigation.json``, ``mitigation.html``.
    data_root
        Directory the manifest paths are relative to (default: the manifest's folder).
    finding
        A finding id or check name; ``None``: all high-severity class-correlated findings.
    method
        ``auto`` or a name of :data:`pathxai.mitigate.METHODS`.
    layer
        Concept layer of the ClArC methods (default: the last feature block).
    settings
        Fine-tuning settings.
    train_split, test_split
        Split values of the training and held-out rows.
    native_mpp
        µm/px of images whose manifest row has no ``mpp``.
    confirm_labels
        A person's confirmation file for label findings (see :mod:`pathxai.mitigate.relabel`).
    reaudit
        Re-run the finding's checks on the training images with the original and the new model.
    command
        The command line, recorded in the card.
    progress
        Progress bars.
    """
    t0 = time.perf_counter()
    st = settings or FinetuneSettings()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    net, card = load_model_with_card(model)
    report = read_report(audit)
    targets = select_findings(report, finding)
    train, test = _records(manifest, train_split, test_split)
    root = Path(data_root) if data_root is not None else Path(manifest).parent
    cohort = _cohort(train, test, root, card.mpp, native_mpp, progress)
    items = reaudit_items(cohort) if reaudit else []
    layer_name = layer or default_layer(net)
    steps: list[dict[str, Any]] = []
    current = net
    projection = card.projection
    changed = False
    for target in targets:
        if target.kind == "labels":
            step, relabelled = _labels_step(target, cohort, out_dir, confirm_labels)
            if relabelled is not None:
                current, hist = finetune(current, card, relabelled.train, relabelled.train_labels, st)
                step["history"] = hist
                cohort, changed = relabelled, True
            steps.append(step)
            continue
        name = choose_method(method, target)
        evidence = evidence_of(target, cohort)
        bar = tqdm(total=0, desc=f"mitigate {target.id}: {name}", disable=not progress, leave=False)

        def tick(step: int, total: int, loss: float, bar: Any = bar) -> None:
            bar.total = total
            bar.n = step
            bar.set_postfix(loss=f"{loss:.3f}")
            bar.refresh()

        before = measure(current, card, cohort, evidence, items)
        outcome = run_method(name, current, card, cohort, evidence, layer_name, st, tick)
        bar.close()
        after = measure(outcome.model, card, cohort, evidence, items)
        current, changed = outcome.model, True
        projection = outcome.projection or projection
        steps.append(
            {
                "finding": target.id,
                "check": target.check,
                "kind": target.kind,
                "artifact": target.artifact,
                "flagged_class": target.flagged_class,
                "method": name,
                "layer": layer_name if name in ("clarc-p", "clarc-a", "rr-clarc") else None,
                "info": outcome.info,
                "before": before,
                "after": after,
                "passed": _passed(before, after),
            }
        )
    status = "mitigated" if changed else "awaiting-confirmation"
    doc: dict[str, Any] = {
        "status": status,
        "model": str(model),
        "manifest": str(manifest),
        "audit": str(audit),
        "method": method,
        "settings": st.to_dict(),
        "pass_rule": f"|after sensitivity| <= max({PASS_FLOOR}, {PASS_RATIO} x |before|)",
        "steps": steps,
        "seconds": time.perf_counter() - t0,
    }
    if changed:
        summary = [{k: s.get(k) for k in ("finding", "method", "passed")} for s in steps]
        new_card = dataclasses.replace(
            card,
            projection=projection,
            training={
                **card.training,
                "mitigation": {"from_model": str(model), "audit": str(audit), "steps": summary},
            },
            metrics={
                **card.metrics,
                "mitigation_clean_auc": [s["after"].get("clean_auc") for s in steps if "after" in s],
            },
            command=command or card.command,
        )
        save_model(current, new_card, out_dir)
    write_json(out_dir / REPORT_FILE, doc)
    write_html(doc, out_dir / "mitigation.html")
    return MitigationResult(out_dir, status, tuple(steps))
