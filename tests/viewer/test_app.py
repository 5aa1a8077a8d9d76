"""The viewer page, headless, with Streamlit's AppTest on a real tiny heatmap run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from pathxai.store import HeatmapStore
from pathxai.viewer.paths import file_version

APP = Path(__file__).resolve().parents[2] / "app" / "streamlit_app.py"


@pytest.fixture
def app(viewer_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> AppTest:
    monkeypatch.setenv("PATHXAI_VIEW_DIR", str(viewer_run["out"]))
    monkeypatch.delenv("PATHXAI_SLIDE_ROOTS", raising=False)
    monkeypatch.setenv("PATHXAI_TILE_PORT", "0")
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    return at


def _store(viewer_run: dict[str, Path]) -> dict:
    with HeatmapStore.open(viewer_run["store"]) as s:
        return {"coords": s.coords, "probs": s.probabilities, "attrs": s.attrs}


def test_page_lists_the_slide_and_shows_legend_and_viewer(app: AppTest, viewer_run: dict[str, Path]) -> None:
    assert app.sidebar.selectbox(key="slide").options == ["synth"]
    assert app.sidebar.radio(key="layer").value == "relevance"
    assert app.sidebar.slider(key="opacity").value == 0.6
    assert "lrp" in app.sidebar.selectbox(key="method").options
    assert [e.type for e in app.sidebar].count("image") == 1  # the colour-scale legend
    assert [t.label for t in app.tabs] == ["Slide", "Audit findings", "Models", "Mitigation"]
    # the deep-zoom component gets the slide geometry (confined root + relative path) and the overlay
    args = json.loads(app.get("component_instance")[0].proto.json_args)
    assert args["slide"]["path"] == "synth.tif" and args["slide"]["width"] == 1536
    assert args["overlay"] == {
        "store": "heatmaps/synth.h5",
        "layer": "relevance",
        "v": file_version(viewer_run["store"]),  # the store's version: a replaced store gets new URLs
    }
    assert args["tile_base"].startswith("http://127.0.0.1:")
    assert len(args["tile_base"].rsplit("/", 1)[1]) >= 16  # the tile server's access token
    app.sidebar.radio(key="layer").set_value("probability").run()
    app.sidebar.slider(key="opacity").set_value(0.3).run()
    args = json.loads(app.get("component_instance")[0].proto.json_args)
    assert args["overlay"]["layer"] == "probability" and args["opacity"] == 0.3
    app.sidebar.radio(key="layer").set_value("none").run()
    assert json.loads(app.get("component_instance")[0].proto.json_args)["overlay"] is None


def test_no_folder_configured_gives_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PATHXAI_VIEW_DIR", raising=False)
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    assert not at.exception
    assert "pathxai view DIR" in at.error[0].value


def test_picking_a_tile_shows_its_stored_probability_and_heatmap(app: AppTest, viewer_run) -> None:
    st_ = _store(viewer_run)
    best = int(np.argmax(st_["probs"][:, 1]))
    box = app.selectbox[0]
    assert box.label == "Go to a high-probability tile"
    box.select(best).run()
    assert not app.exception, app.exception
    region = app.session_state["region"]
    assert region["slide"] == "synth" and region["source"] == "list"
    assert region["tile"][:2] == [int(v) for v in st_["coords"][best]]
    assert app.session_state["goto"]["w"] > 0
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["p(tumour)"] == f"{st_['probs'][best, 1]:.3f}"
    assert any(s.value.startswith(f"Tile {best} ") for s in app.subheader)


def test_computing_another_method_on_the_spot(app: AppTest, viewer_run, monkeypatch) -> None:
    # the run's model lives outside the output folder: copy it in so the viewer may load it
    import shutil

    dest = viewer_run["out"] / "models" / "original"
    if not dest.exists():
        shutil.copytree(viewer_run["model"], dest)
    app.selectbox[0].select(app.selectbox[0].options[1]).run()
    app.sidebar.selectbox(key="method").select("gradient").run()
    app.button(key="compute").click().run()
    assert not app.exception, app.exception
    computed = app.session_state["computed"]
    ((_slide, idx, method), (rel, probs)) = next(iter(computed.items()))
    assert method == "gradient" and rel.shape == (64, 64) and np.isfinite(rel).all()
    # the recomputed probabilities equal the stored ones (same model, same pixels)
    stored = _store(viewer_run)["probs"][idx]
    np.testing.assert_allclose(probs, stored, atol=1e-4)


def test_audit_finding_jumps_to_its_region(app: AppTest, viewer_run) -> None:
    report = viewer_run["out"] / "audit" / "report.json"
    report.parent.mkdir(exist_ok=True)
    finding = {
        "family": "dataset",
        "check": "artifact.pen",
        "metric": "pen area fraction",
        "value": 0.2,
        "threshold": 0.05,
        "severity": "medium",
        "message": "pen marks",
        "evidence": {
            "items": ["synth"],
            "regions": [
                {"item": "synth", "l0_x": 600, "l0_y": 400, "l0_w": 200, "l0_h": 100, "label": "pen:blue"}
            ],
        },
    }
    report.write_text(json.dumps({"schema": "pathxai.audit/1", "findings": [finding]}))
    try:
        app.run()
        assert app.dataframe[0].value.shape[0] == 1
        jump = app.selectbox(key="finding")
        jump.select(jump.options[1]).run()
        assert not app.exception, app.exception
        assert app.session_state["goto"]["x"] == 600 and app.session_state["goto"]["h"] == 100
        assert app.session_state["region"]["source"] == "finding"
        assert app.session_state["region"]["x"] == 700
    finally:
        report.unlink()


def test_without_openseadragon_a_static_overview_is_shown(viewer_run, monkeypatch) -> None:
    import pathxai.viewer.page as page

    monkeypatch.setattr(page, "OSD_JS", viewer_run["out"] / "missing.js")
    monkeypatch.setenv("PATHXAI_VIEW_DIR", str(viewer_run["out"]))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert any("OpenSeadragon is not installed" in i.value for i in at.info)
    assert not at.get("component_instance")
    assert len(at.get("image")) >= 1


def test_slide_outside_the_roots_is_not_served(viewer_run, monkeypatch) -> None:
    cfg = viewer_run["out"] / "pathxai-view.json"
    backup = cfg.read_text()
    cfg.write_text(json.dumps({"slide_roots": []}))
    try:
        monkeypatch.setenv("PATHXAI_VIEW_DIR", str(viewer_run["out"]))
        at = AppTest.from_file(str(APP), default_timeout=60)
        at.run()
        assert not at.exception, at.exception
        assert any("outside the viewer's roots" in w.value for w in at.warning)
        assert not at.get("component_instance")
    finally:
        cfg.write_text(backup)
