"""The viewer's Mitigation tab, headless (AppTest), on a tiny mitigated model built in the test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pathxai.model.testing import save_tiny_model
from pathxai.pipeline.mitigate import mitigate
from pathxai.viewer.catalog import make_roots, scan
from pathxai.viewer.mitigation import compare, read_mitigation
from tests.mitigate.cohort import FAST, PEN, write_cohort, write_report

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"


@pytest.fixture(scope="module")
def mitigated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An output folder with the planted cohort, the original model, its audit and a P-ClArC model."""
    out = tmp_path_factory.mktemp("mitigation_view")
    data = out / "data"
    data.mkdir()
    man = write_cohort(data)
    audit = write_report(out, [PEN])
    model = save_tiny_model(out / "models" / "original")
    mitigate(
        model, man, audit, out / "mitigated", method="clarc-p", settings=FAST, progress=False, reaudit=True
    )
    return {"out": out, "model": model, "manifest": man, "mitigated": out / "mitigated"}


def _app(out: Path, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("PATHXAI_VIEW_DIR", str(out))
    monkeypatch.delenv("PATHXAI_SLIDE_ROOTS", raising=False)
    monkeypatch.setenv("PATHXAI_TILE_PORT", "0")
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    assert not at.exception, at.exception
    return at


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def test_tab_shows_before_after_numbers_and_both_models_heatmaps(mitigated, monkeypatch) -> None:
    doc = json.loads((mitigated["mitigated"] / "mitigation.json").read_text())
    step = doc["steps"][0]
    b, a = step["before"], step["after"]
    at = _app(mitigated["out"], monkeypatch)
    assert at.tabs[3].label == "Mitigation"
    assert at.selectbox(key="mitigated").options == ["mitigated"]
    # the step's numbers, before and after, as in mitigation.json
    metrics = {m.label: m for m in at.metric}
    sens = metrics["stress-test sensitivity"]
    assert sens.value == _fmt(a["stress"]["sensitivity"])
    assert f"(before {_fmt(b['stress']['sensitivity'])})" in sens.proto.delta
    assert metrics["clean held-out AUC"].value == _fmt(a["clean_auc"])
    tables = [d.value for d in at.dataframe]
    summary = next(t for t in tables if "measure" in t.columns)
    row = summary[summary["measure"] == "stress-test flip rate"].iloc[0]
    assert (row["before"], row["after"]) == (_fmt(b["stress"]["flip_rate"]), _fmt(a["stress"]["flip_rate"]))
    reaudit = next(t for t in tables if "finding" in t.columns)
    first = reaudit.iloc[0]
    assert first["finding"] == PEN["id"]
    assert first["severity before"] == b["reaudit"][0]["severity"]
    assert first["severity after"] == a["reaudit"][0]["severity"]
    # no heatmap until asked: they cost LRP passes
    assert not [i for i in at.get("image") if "original" in str(i.proto)]
    n_images = len(at.get("image"))
    at.slider(key="mitigation_n").set_value(2).run()
    at.toggle(key="mitigation_heatmaps").set_value(True).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    captions = [str(i.proto) for i in at.get("image")]
    assert len(at.get("image")) > n_images
    # 2 stress images: clean, stressed, original heatmap, mitigated heatmap each
    assert sum("original: p(tumour)" in c for c in captions) == 2
    assert sum("mitigated: p(tumour)" in c for c in captions) == 2
    assert sum("im8" in c for c in captions) == 1 and sum("im10" in c for c in captions) == 1
    # the recomputed probabilities are those of the stress test
    assert any("match mitigation.json" in c.value for c in at.caption)
    assert not [w for w in at.warning if "mitigation.json" in w.value]


def test_compare_rebuilds_the_stress_test_images_and_probabilities(mitigated) -> None:
    from pathxai.model import load_model_with_card

    cat = scan(make_roots(mitigated["out"]))
    entry = next(m for m in cat.models if m.mitigation_rel)
    doc = read_mitigation(cat, entry)
    comp = compare(cat, entry, doc, 0, 2, load_model_with_card)
    step = doc["steps"][0]
    assert [e.recipient for e in comp.examples] == ["im8", "im10"]
    for e in comp.examples:
        assert e.mask.any() and not e.mask.all()  # a pasted pen stroke, not the whole image
        assert not np.array_equal(e.clean, e.stressed)
        assert (e.clean[~e.mask] == e.stressed[~e.mask]).all()
    for when, heats in (("before", comp.original), ("after", comp.mitigated)):
        np.testing.assert_allclose(
            [h.p_stressed for h in heats], step[when]["stress"]["stressed"][:2], atol=1e-4
        )
        np.testing.assert_allclose(
            [h.p_clean for h in heats], step[when]["stress"]["baseline"][:2], atol=1e-4
        )
        for h, e in zip(heats, comp.examples, strict=True):
            assert h.relevance.shape == e.stressed.shape[:2] and np.isfinite(h.relevance).all()
    # the two models differ on these images (the projection acts)
    assert not np.allclose(comp.original[0].relevance, comp.mitigated[0].relevance)
    assert comp.max_mismatch() < 1e-4


def test_an_older_mitigation_json_without_the_stress_record_gives_the_same_images(
    mitigated, tmp_path
) -> None:
    from pathxai.model import load_model_with_card

    cat = scan(make_roots(mitigated["out"]))
    entry = next(m for m in cat.models if m.mitigation_rel)
    doc = read_mitigation(cat, entry)
    old = {k: v for k, v in doc.items() if k != "data"}
    old["steps"] = [{k: v for k, v in s.items() if k != "stress_images"} for s in doc["steps"]]
    new = compare(cat, entry, doc, 0, 2, load_model_with_card)
    rebuilt = compare(cat, entry, old, 0, 2, load_model_with_card)
    for e_new, e_old in zip(new.examples, rebuilt.examples, strict=True):
        assert e_new.recipient == e_old.recipient and e_new.source == e_old.source
        np.testing.assert_array_equal(e_new.stressed, e_old.stressed)


def test_a_model_folder_without_mitigation_json_gets_a_clear_message(
    mitigated, tmp_path, monkeypatch
) -> None:
    out = tmp_path / "out"
    shutil.copytree(mitigated["model"], out / "plain")
    at = _app(out, monkeypatch)
    msgs = [i.value for i in at.info]
    assert any("No mitigated model" in m and "plain" in m and "mitigation.json" in m for m in msgs)
    assert not at.get("image")


def test_the_original_model_outside_the_roots_is_refused(mitigated, tmp_path, monkeypatch) -> None:
    out = tmp_path / "out"
    shutil.copytree(mitigated["mitigated"], out / "mitigated")
    at = _app(out, monkeypatch)
    assert at.metric  # the numbers of mitigation.json still show
    at.toggle(key="mitigation_heatmaps").set_value(True).run()
    assert not at.exception, at.exception
    assert any("outside the viewer's roots" in e.value for e in at.error)
