"""The demo pipeline end to end on a generated slide with a tiny seeded model (real heatmaps, pruning)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from sklearn.metrics import roc_auc_score

from pathxai.cli import main
from pathxai.data.colon import colon_demo
from pathxai.heatmap.regions import TileRule, tile_truth
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
    roots = json.loads((out / "pathxai-view.json").read_text())["slide_roots"]
    assert roots == [str(res.slide.parent), str(colon_demo().slide.parent)]
    # the viewer can load the original model: it is copied under the output folder
    _, card = load_model_with_card(out / "models" / "original")
    _, orig = load_model_with_card(model)
    assert card.weights_sha256 == orig.weights_sha256


def test_colon_slide_region_auc_is_reported_and_right(demo_run) -> None:
    res, _, _ = demo_run
    region = res.region_auc
    assert region is not None and region["slide_id"] == "ebhi_colon_mosaic"
    summary = json.loads((res.out / "demo.json").read_text())["region_auc"]
    assert summary["probability"] == region["probability"] and "lesion" in summary["rule"]["text"]
    assert summary["cases"] == colon_demo().read_metadata()["cases"]
    full = json.loads(Path(res.outputs["colon_region_auc"]).read_text())
    # recomputed independently: tile labels from the truth map, sklearn's AUC of the stored probabilities
    with HeatmapStore.open(res.outputs["colon_heatmap_h5"]) as store:
        a = store.attrs
        labels = tile_truth(
            colon_demo().read_truth(), store.coords, a["size"] * a["mpp"] / a["slide_mpp"], TileRule()
        )
        prob = store.probabilities[:, a["target_class"]]
    assert full["labels"] == labels.tolist()
    keep = labels >= 0
    assert keep.sum() >= 20 and 0 < labels[keep].sum() < keep.sum()  # both classes present
    p = summary["probability"]
    assert (p["n_tumour"], p["n_non_tumour"]) == (int(labels[keep].sum()), int((labels == 0).sum()))
    assert p["auc"] == pytest.approx(roc_auc_score(labels[keep], prob[keep]))
    assert p["low"] <= p["auc"] <= p["high"]
    assert summary["relevance"] is not None and 0.0 <= summary["relevance"]["auc"] <= 1.0


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
    files = [
        Path(res.outputs[k])
        for k in ("tiles", "heatmap_h5", "pruning_report", "colon_heatmap_h5", "colon_region_auc")
    ]
    before = [os.stat(f).st_mtime_ns for f in files]
    again = run_demo(res.out, slide=res.slide, settings=settings)
    assert [os.stat(f).st_mtime_ns for f in files] == before
    assert again.outputs["heatmap_h5"] == res.outputs["heatmap_h5"]


def test_rerun_replaces_a_stale_region_auc(demo_run) -> None:
    res, settings, _ = demo_run
    path = Path(res.outputs["colon_region_auc"])
    good = json.loads(path.read_text())
    path.write_text(json.dumps({**good, "probability": {**good["probability"], "auc": 2.0}}))
    again = run_demo(res.out, slide=res.slide, settings=settings)
    assert json.loads(path.read_text()) == good
    assert again.region_auc is not None and again.region_auc["probability"]["auc"] != 2.0


def test_cli_demo_prints_outputs_and_viewer_command(demo_run, capsys) -> None:
    res, _, model = demo_run
    code = main(
        ["demo", "--out", str(res.out), "--slide", str(res.slide), "--model", str(model), "--no-audit"]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert f"pathxai view {res.out}" in out and "heatmap_h5" in out
    assert "colon demo slide: region AUC" in out and ">= 50% of its area in a lesion" in out


def test_cli_demo_missing_slide_is_one_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["demo", "--out", str(tmp_path / "o"), "--slide", str(tmp_path / "nope.svs")]) == 2
    assert "no such slide file" in capsys.readouterr().err
