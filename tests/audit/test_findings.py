import json

import pytest

from pathxai.audit.findings import AuditReport, BiasFinding, Region, SeverityRule, Thresholds, sort_findings
from pathxai.errors import AuditError


def test_severity_rule_grades_both_directions():
    up = SeverityRule(low=1, medium=2, high=3)
    assert up.grade(0.5) == ("info", None)
    assert up.grade(2.5) == ("medium", 2.0)
    assert up.grade(3) == ("high", 3.0)
    assert up.grade(None) == ("info", None)
    assert up.grade(float("nan")) == ("info", None)
    down = SeverityRule(low=0.8, medium=0.6, high=0.4, direction="below")
    assert down.grade(0.7) == ("low", 0.8)
    assert down.grade(0.1) == ("high", 0.4)
    capped = SeverityRule(low=1, medium=2, high=3, cap="medium")
    assert capped.grade(10) == ("medium", 2.0)


def test_thresholds_override_and_errors(tmp_path):
    th = Thresholds.from_mapping(
        {"rules": {"stain.probe.label": {"high": 0.95}}, "settings": {"alpha": 0.05}}
    )
    assert th.rule("stain.probe.label").high == 0.95
    assert th.rule("stain.probe.label").medium == Thresholds().rule("stain.probe.label").medium
    assert th.rule("artifact.relevance:pen:blue") is th.rules["artifact.relevance"]
    assert th.setting("alpha") == 0.05
    with pytest.raises(AuditError, match="unknown check"):
        Thresholds.from_mapping({"rules": {"nope": {}}})
    with pytest.raises(AuditError, match="must be a number"):
        Thresholds.from_mapping({"rules": {"stain.outliers": {"low": "x"}}})
    with pytest.raises(AuditError, match="unknown setting"):
        Thresholds.from_mapping({"settings": {"nope": 1}})
    bad = tmp_path / "t.json"
    bad.write_text("{not json")
    with pytest.raises(AuditError, match="not readable JSON"):
        Thresholds.from_json(bad)
    with pytest.raises(AuditError, match="not found"):
        Thresholds.from_json(tmp_path / "missing.json")


def test_finding_validation_and_report_schema():
    with pytest.raises(ValueError):
        BiasFinding("nonsense", "x", "m", 1.0, None, "info")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        BiasFinding("dataset", "x", "m", 1.0, None, "critical")  # type: ignore[arg-type]
    f1 = BiasFinding("dataset", "a", "m", 0.1, None, "info")
    f2 = BiasFinding(
        "sampling",
        "b",
        "m",
        float("inf"),
        1.0,
        "high",
        regions=(Region("img1", 1, 2, 3, 4, "pen"),),
        items=("img1",),
    )
    ordered = sort_findings([f1, f2])
    assert ordered[0] is f2
    rep = AuditReport(findings=ordered, cohort={"n_items": 1}, model={}, thresholds=Thresholds())
    d = json.loads(json.dumps(rep.to_dict(), allow_nan=False))
    assert d["schema"] == "pathxai.audit/1"
    assert d["summary"]["worst"] == "high" and d["summary"]["counts"]["high"] == 1
    top = d["findings"][0]
    assert set(top) >= {"family", "check", "metric", "value", "threshold", "severity", "evidence"}
    assert top["value"] is None  # inf is not JSON
    assert top["evidence"]["regions"][0] == {
        "item": "img1",
        "l0_x": 1,
        "l0_y": 2,
        "l0_w": 3,
        "l0_h": 4,
        "label": "pen",
        "score": None,
    }
    assert "stain.probe.label" in d["thresholds"]["rules"]
