"""The demo pipeline end to end on a generated slide with a tiny seeded model (real heatmaps, pruning)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from pathxai.cli import main
from pathxai.model import load_model_with_card
from pathxai.pipeline.demo import run_demo
from pathxai.store import HeatmapStore


def test_demo_writes_every_output(demo_run) -> None:
    res, _, model = demo_run
    out = res.out
    for key in (
        "tiles",
        "tile_grid_png",
        "heatmap_h5",
        "heatmap_tif",
        "heatmap_png",
        "heatmap_geojson",
        "pruned_model",
    ):
        assert Path(res.outputs[key]).exists(), key
    with HeatmapStore.open(res.outputs["heatmap_h5"]) as store:
        assert store.attrs["status"] == "complete" and store.n_tiles > 10
    report = json.loads(Path(res.outputs["audit_report_json"]).read_text())
    assert report["cohort"]["kind"] == "slide" and report["findings"]
    assert Path(res.outputs["audit_report_html"]).is_file()
    summary = json.loads((out / "demo.json").read_text())
    assert summary["slide_id"] == "s1" and summary["timings_s"]["total"] > 0
    assert json.loads((out / "pathxai-view.json").read_text())["slide_roots"] == [str(res.slide.parent)]
    # the viewer can load the original model: it is copied under the output folder
    _, card = load_model_with_card(out / "models" / "original")
    _, orig = load_model_with_card(model)
    assert card.weights_sha256 == orig.weights_sha256


def test_pruned_model_is_smaller_loads_and_reports_drift(demo_run) -> None:
    res, settings, _ = demo_run
    pruned, card = load_model_with_card(res.outputs["pruned_model"])
    report = json.loads(Path(res.outputs["pruning_report"]).read_text())
    plan = report["plan"]
    assert plan["criterion"] == "lrp" and plan["ratio"] == settings.prune_ratio
    assert plan["metrics_after"]["params"] < plan["metrics_before"]["params"]
    assert sum(p.numel() for p in pruned.parameters()) == plan["metrics_after"]["params"]
    drift = report["drift"]
    assert drift["n"] == len(report["data"]["drift_tiles"]) > 0
    assert -1.0 <= drift["pearson"] <= 1.0 and 0.0 <= drift["prediction_agreement"] <= 1.0
    assert not set(report["data"]["reference_tiles"]) & set(report["data"]["drift_tiles"])
    assert card.channel_plan


def test_rerun_skips_finished_steps(demo_run) -> None:
    res, settings, _ = demo_run
    files = [Path(res.outputs[k]) for k in ("tiles", "heatmap_h5", "pruning_report")]
    before = [os.stat(f).st_mtime_ns for f in files]
    again = run_demo(res.out, slide=res.slide, settings=settings)
    assert [os.stat(f).st_mtime_ns for f in files] == before
    assert again.outputs["heatmap_h5"] == res.outputs["heatmap_h5"]


def test_cli_demo_prints_outputs_and_viewer_command(demo_run, capsys) -> None:
    res, _, model = demo_run
    code = main(
        ["demo", "--out", str(res.out), "--slide", str(res.slide), "--model", str(model), "--no-audit"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"pathxai view {res.out}" in out and "heatmap_h5" in out


def test_cli_demo_missing_slide_is_one_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path / "o"), "--slide", str(tmp_path / "nope.svs")]) == 2
    assert "no such slide file" in capsys.readouterr().err
