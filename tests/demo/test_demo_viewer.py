"""The viewer on a demo folder: the Models tab compares the original and the pruned model (AppTest)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"


@pytest.fixture
def app(demo_run, monkeypatch: pytest.MonkeyPatch) -> AppTest:
    res = demo_run[0]
    monkeypatch.setenv("PATHXAI_VIEW_DIR", str(res.out))
    monkeypatch.delenv("PATHXAI_SLIDE_ROOTS", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    # the demo folder also holds the colon demo slide: show the demo's main slide
    assert set(at.selectbox(key="slide").options) == {res.slide_id, "ebhi_colon_mosaic"}
    at.selectbox(key="slide").select(res.slide_id).run()
    assert not at.exception, at.exception
    return at


def test_models_tab_shows_plan_drift_and_compares_both_models(app: AppTest, demo_run) -> None:
    res = demo_run[0]
    assert app.selectbox(key="pruned").options == ["models/pruned"]
    report = json.loads((res.out / "models" / "pruned" / "pruning.json").read_text())
    tables = [d.value for d in app.dataframe]
    metrics = next(t for t in tables if "original" in t.columns)
    params = metrics[metrics["metric"] == "params"].iloc[0]
    assert params["original"] == report["plan"]["metrics_before"]["params"]
    assert params["pruned"] == report["plan"]["metrics_after"]["params"] < params["original"]
    assert any("measure" in t.columns for t in tables)  # the drift table
    # select a tile, then compare the two models on it
    app.selectbox[0].select(app.selectbox[0].options[1]).run()
    app.button(key="compare").click().run()
    assert not app.exception, app.exception
    slide, _idx, choice, out = app.session_state["comparison"]
    assert slide == res.slide_id and choice == "models/pruned"
    (rel_o, p_o), (rel_p, p_p) = out["original"], out["pruned"]
    assert rel_o.shape == rel_p.shape == (64, 64)
    assert np.isclose(p_o.sum(), 1, atol=1e-5) and np.isclose(p_p.sum(), 1, atol=1e-5)
    assert not np.allclose(rel_o, rel_p)  # pruning changed the network
    # slide tab: tile + stored heatmap; models tab: original + pruned heatmaps
    assert len(app.get("image")) >= 4


def test_audit_tab_lists_the_demo_findings(app: AppTest, demo_run) -> None:
    res = demo_run[0]
    report = json.loads((res.out / "audit" / "report.json").read_text())
    assert app.selectbox(key="report").options == ["audit/report.json"]
    table = next(d.value for d in app.dataframe if "check" in d.value.columns)
    assert list(table["check"]) == [f["check"] for f in report["findings"]]
