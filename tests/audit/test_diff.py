"""The audit diff pairs findings by id: rises, falls, new and gone findings are told apart."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathxai.audit.diff import diff_findings, diff_reports, diff_table, load_report
from pathxai.cli import main
from pathxai.errors import PathXAIError


def _f(id_: str, severity: str, value: float | None, family: str = "dataset") -> dict:
    return {"id": id_, "check": id_.split(":")[0], "family": family, "severity": severity, "value": value}


BEFORE = [
    _f("artifact.relevance:pen:blue", "low", 1.6, "class-correlated"),
    _f("stain.outliers", "medium", 0.16),
    _f("sampling.imbalance", "info", 1.2, "sampling"),
    _f("artifact.prevalence:fold", "info", 0.01),
]
AFTER = [
    _f("artifact.relevance:pen:blue", "high", 3.4, "class-correlated"),
    _f("stain.outliers", "low", 0.09),
    _f("sampling.imbalance", "info", 1.2, "sampling"),
    _f("labels.candidates", "medium", 0.06),
]


def _by_id() -> dict:
    return {c.id: c for c in diff_findings(BEFORE, AFTER)}


def test_severity_rise_fall_same_new_gone() -> None:
    d = _by_id()
    assert d["artifact.relevance:pen:blue"].change == "up"
    assert d["stain.outliers"].change == "down"
    assert d["sampling.imbalance"].change == "same"
    assert d["labels.candidates"].change == "new"
    assert d["artifact.prevalence:fold"].change == "gone"
    assert len(d) == 5


def test_values_and_delta() -> None:
    d = _by_id()
    pen = d["artifact.relevance:pen:blue"]
    assert (pen.severity_before, pen.severity_after) == ("low", "high")
    assert pen.delta == pytest.approx(1.8)
    assert d["labels.candidates"].value_before is None and d["labels.candidates"].delta is None
    assert d["artifact.prevalence:fold"].severity_after is None
    assert d["artifact.prevalence:fold"].value_before == pytest.approx(0.01)
    assert d["sampling.imbalance"].delta == 0.0


def test_no_number_gives_no_delta() -> None:
    (c,) = diff_findings([_f("x", "low", None)], [_f("x", "low", 2.0)])
    assert c.value_before is None and c.delta is None and c.change == "same"


def test_order_puts_rises_first() -> None:
    order = [c.change for c in diff_findings(BEFORE, AFTER)]
    assert order == ["up", "new", "down", "gone", "same"]


def test_identical_audits_have_only_same() -> None:
    assert {c.change for c in diff_findings(BEFORE, BEFORE)} == {"same"}


def test_bad_inputs_refused() -> None:
    with pytest.raises(PathXAIError, match="twice"):
        diff_findings([_f("x", "low", 1.0), _f("x", "high", 2.0)], [])
    with pytest.raises(PathXAIError, match="severity"):
        diff_findings([_f("x", "severe", 1.0)], [_f("x", "low", 1.0)])
    with pytest.raises(PathXAIError, match="no id"):
        diff_findings([{"severity": "low"}], [])


def _report(findings: list, settings: dict | None = None) -> dict:
    return {
        "schema": "pathxai.audit/1",
        "cohort": {"manifest_sha256": "abc", "n_items": 10},
        "model": {"source": "default", "arch": "compact_cnn", "weights_sha256": "w"},
        "summary": {"worst": "medium"},
        "thresholds": {"settings": settings or {"bootstrap": 1000}},
        "findings": findings,
    }


def test_diff_reports_counts_and_notes() -> None:
    doc = diff_reports(_report(BEFORE), _report(AFTER, {"bootstrap": 200}))
    assert doc["counts"] == {"up": 1, "new": 1, "down": 1, "gone": 1, "same": 1}
    assert doc["notes"] == ["the two audits ran with different settings (bootstrap: 1000 → 200)"]
    assert diff_reports(_report(BEFORE), _report(AFTER))["notes"] == []


def test_table_lists_changes() -> None:
    doc = diff_reports(_report(BEFORE), _report(AFTER))
    table = diff_table(doc["changes"], include_same=False)
    assert "low → high" in table and "+1.8" in table
    assert "sampling.imbalance" not in table
    assert "– → medium" in table


def test_cli_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir()
    b.mkdir()
    (a / "report.json").write_text(json.dumps(_report(BEFORE)))
    (b / "report.json").write_text(json.dumps(_report(AFTER)))
    out = tmp_path / "diff.json"
    assert main(["audit-diff", str(a), str(b / "report.json"), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "artifact.relevance:pen:blue" in printed and "up 1" in printed
    assert json.loads(out.read_text())["counts"]["gone"] == 1
    assert main(["audit-diff", str(a), str(tmp_path / "missing")]) == 2


def test_load_report_refuses_non_reports(tmp_path: Path) -> None:
    p = tmp_path / "x.json"
    p.write_text("{}")
    with pytest.raises(PathXAIError, match="findings"):
        load_report(p)
