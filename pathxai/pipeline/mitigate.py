"""Act on an audit finding and prove the shortcut is gone (what ``pathxai mitigate`` calls).

:func:`mitigate` reads a model, its training manifest (``train`` rows to correct on, ``test`` rows as
the clean held-out cases) and an audit report; for every finding it acts on it measures the model
(:func:`pathxai.mitigate.measure.measure`), runs the method, measures the new model the same way,
and finally writes a normal model folder (``model.safetensors`` + ``model_card.json`` saying what was
mitigated and how), ``mitigation.json`` (``before``/``after`` per finding) and ``mitigation.html``.
A label finding only writes ``relabel_candidates.csv`` unless a person's confirmation file is given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathxai.jsonio import write_json
from pathxai.mitigate.cav import default_layer
from pathxai.mitigate.finetune import FinetuneSettings
from pathxai.mitigate.report import write_html
from pathxai.mitigate.run import load_cohort, mitigated_card, mitigation_doc, run_targets
from pathxai.mitigate.select import read_report, select_findings
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
    model, audit
        Model folder (or ``default``) the audit was run with; the audit's output folder (``report.json``)
        or the report itself.
    manifest, data_root
        The training manifest (``train_split`` rows are corrected on, ``test_split`` rows are the clean
        held-out cases of the stress test and the AUC) and the root of its paths (default: its folder).
    out
        Output folder: a model folder plus ``mitigation.json``, ``mitigation.html``.
    finding, method
        A finding id or check name (``None``: all high-severity class-correlated findings); ``auto`` or a
        name of :data:`pathxai.mitigate.METHODS`.
    layer, settings
        Concept layer of the ClArC methods (default: the last feature block); fine-tuning settings.
    train_split, test_split, native_mpp
        Split values of the training and held-out rows; µm/px of images whose row has no ``mpp``.
    confirm_labels
        A person's confirmation file for label findings (see :mod:`pathxai.mitigate.relabel`).
    reaudit, command, progress
        Re-run the finding's checks on the training images with the original and the new model; the
        command line, recorded in the card; progress bars.
    """
    t0 = time.perf_counter()
    st = settings or FinetuneSettings()
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    net, card = load_model_with_card(model)
    targets = select_findings(read_report(audit), finding)
    cohort = load_cohort(manifest, data_root, train_split, test_split, card.mpp, native_mpp, progress)
    layer_name = layer or default_layer(net)
    run = run_targets(
        net, card, cohort, targets, out_dir, method, layer_name, st, confirm_labels, reaudit, progress
    )
    data = {
        "data_root": str(Path(data_root) if data_root is not None else Path(manifest).parent),
        "train_split": train_split,
        "test_split": test_split,
        "mpp": card.mpp,
        "native_mpp": native_mpp,
    }
    doc = {
        **mitigation_doc(run, model, manifest, audit, method, st, data),
        "seconds": time.perf_counter() - t0,
    }
    if run.changed:
        save_model(run.model, mitigated_card(run, card, model, audit, command), out_dir)
    write_json(out_dir / REPORT_FILE, doc)
    write_html(doc, out_dir / "mitigation.html")
    return MitigationResult(out_dir, doc["status"], tuple(run.steps))
