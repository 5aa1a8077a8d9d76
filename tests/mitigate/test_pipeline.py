"""``pathxai mitigate`` end to end on generated images and a tiny model (no ../shared needed)."""

from __future__ import annotations

import csv
import json

import pytest
import torch

from pathxai.errors import AuditError
from pathxai.mitigate.finetune import FinetuneSettings
from pathxai.mitigate.select import select_findings
from pathxai.model.io import load_model_with_card
from pathxai.model.testing import save_tiny_model
from pathxai.pipeline.mitigate import mitigate
from tests.mitigate.cohort import FAST, PEN, write_cohort, write_report

ASSOC = {
    "id": "artifact.label_association:pen:blue",
    "check": "artifact.label_association:pen:blue",
    "family": "class-correlated",
    "severity": "high",
    "value": 1.0,
    "details": {"prevalence_tumour": 1.0, "prevalence_non_tumour": 0.0},
}
LABELS = {
    "id": "labels.candidates",
    "check": "labels.candidates",
    "family": "class-correlated",
    "severity": "high",
    "value": 0.2,
    "details": {
        "candidates": [{"id": "im1", "label": 1, "tumour_probability": 0.05}, {"id": "im2", "label": 0}]
    },
}


def test_selection_by_default_id_and_check():
    report = {"findings": [ASSOC, PEN, {**LABELS, "severity": "medium"}]}
    picked = select_findings(report)
    assert [t.id for t in picked] == [PEN["id"]]  # one per artifact: the model's relevance finding
    assert picked[0].kind == "artifact" and picked[0].artifact == "pen:blue" and picked[0].flagged_class == 1
    assert select_findings(report, "labels.candidates")[0].kind == "labels"
    with pytest.raises(AuditError, match="no finding"):
        select_findings(report, "artifact.relevance:fold")
    with pytest.raises(AuditError, match="high-severity"):
        select_findings({"findings": [{**LABELS, "severity": "low"}]})


def test_clarc_p_writes_a_loadable_model_with_before_and_after(tmp_path):
    man = write_cohort(tmp_path)
    audit = write_report(tmp_path, [PEN, ASSOC])
    model = save_tiny_model(tmp_path / "model")
    res = mitigate(model, man, audit, tmp_path / "out", method="clarc-p", settings=FAST, progress=False)
    assert res.status == "mitigated"
    doc = json.loads((tmp_path / "out" / "mitigation.json").read_text())
    step = doc["steps"][0]
    assert step["method"] == "clarc-p" and step["finding"] == PEN["id"]
    for when in ("before", "after"):
        assert {"stress", "relevance_on_artifact", "clean_auc", "reaudit"} <= set(step[when])
        assert step[when]["stress"]["n"] == 2  # the clean non-tumour test images
    assert [f["check"] for f in step["after"]["reaudit"]][:1] == ["artifact.relevance:pen:blue"]
    # which images the stress test used, and how the cohort was read (the viewer rebuilds them)
    assert step["stress_images"]["recipients"] == ["im8", "im10"]
    assert step["stress_images"]["sources"] and set(step["stress_images"]["sources"]) <= {
        "im1",
        "im3",
        "im5",
        "im7",
    }
    assert doc["data"]["data_root"] == str(man.parent) and doc["data"]["test_split"] == "test"
    net, card = load_model_with_card(tmp_path / "out")
    assert hasattr(net, "concept_projection")
    assert card.projection is not None and card.projection["method"] == "clarc-p"
    assert card.training["mitigation"]["steps"][0]["finding"] == PEN["id"]
    assert (tmp_path / "out" / "mitigation.html").read_text().count("<img") == 1


def test_label_finding_changes_nothing_without_a_confirmation_file(tmp_path):
    man = write_cohort(tmp_path)
    before = man.read_text()
    audit = write_report(tmp_path, [LABELS])
    model = save_tiny_model(tmp_path / "model")
    res = mitigate(model, man, audit, tmp_path / "out", settings=FAST, progress=False, reaudit=False)
    assert res.status == "awaiting-confirmation"
    assert not (tmp_path / "out" / "model.safetensors").exists()
    assert man.read_text() == before
    cands = list(csv.DictReader((tmp_path / "out" / "relabel_candidates.csv").open()))
    assert [(c["id"], c["suggested_label"], c["confirm"]) for c in cands] == [
        ("im1", "0", ""),
        ("im2", "1", ""),
    ]
    # the person confirms one row only
    confirm = tmp_path / "confirmed.csv"
    cands[0]["confirm"] = "yes"
    with confirm.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(cands[0]))
        w.writeheader()
        w.writerows(cands)
    res = mitigate(
        model,
        man,
        audit,
        tmp_path / "out2",
        settings=FAST,
        progress=False,
        reaudit=False,
        confirm_labels=confirm,
    )
    assert res.status == "mitigated"
    assert res.steps[0]["changed"] == {"im1": 0}
    assert man.read_text() == before  # the manifest itself is never rewritten
    load_model_with_card(tmp_path / "out2")


def test_prune_removes_artifact_channels_and_writes_a_smaller_loadable_model(tmp_path):
    from pathxai.prune.measure import count_params

    man = write_cohort(tmp_path)
    audit = write_report(tmp_path, [PEN, ASSOC])
    model = save_tiny_model(tmp_path / "model")
    original, _ = load_model_with_card(model)
    settings = FinetuneSettings(epochs=1, batch_size=8, stride=64, prune_channels=3)
    res = mitigate(
        model, man, audit, tmp_path / "out", method="prune", settings=settings, progress=False, reaudit=False
    )
    assert res.status == "mitigated"
    step = json.loads((tmp_path / "out" / "mitigation.json").read_text())["steps"][0]
    assert step["method"] == "prune" and step["info"]["channels_removed"] == 3
    assert all(r["score"] > 0 for r in step["info"]["removed"])
    assert "stress" in step["before"] and "stress" in step["after"]
    net, card = load_model_with_card(tmp_path / "out")
    assert count_params(net) < count_params(original)
    assert sum(len(v) for v in card.channel_plan.values()) + 3 == sum(
        m.out_channels for n, m in original.named_modules() if n in card.channel_plan
    )
    assert card.training["mitigation"]["steps"][0]["channels_removed"] == 3
    assert net(torch.zeros(1, 3, card.input_size, card.input_size)).shape == (1, 2)


def test_prune_refuses_non_artifact_findings():
    from pathxai.mitigate.methods import choose_method
    from pathxai.mitigate.select import Target

    with pytest.raises(ValueError, match="cannot act"):
        choose_method("prune", Target("stain.probe.label", "stain.probe.label", "high", 0.9, "stain"))
