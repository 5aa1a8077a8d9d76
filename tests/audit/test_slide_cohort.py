"""Slide cohorts: thumbnails for the model-free checks, the heatmap stores of ``pathxai heatmap`` for the rest."""

import json

import pytest

from pathxai.errors import AuditError
from pathxai.model import save_model
from pathxai.pipeline.audit import audit
from pathxai.slide.testing import write_synthetic_slide


@pytest.fixture(scope="module")
def slide_cohort(tmp_path_factory, pen_cohort):
    from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide

    tmp = tmp_path_factory.mktemp("slides")
    data = tmp / "data"
    data.mkdir()
    write_synthetic_slide(data / "s1.tiff", 3000, 2000, mpp=0.5, blobs=[(1000, 900, 700, 600)])
    write_synthetic_slide(data / "s2.tiff", 2400, 2400, mpp=0.5, blobs=[(1400, 1200, 700, 700)])
    model = save_model(pen_cohort["net"], pen_cohort["card"], tmp / "model")
    heat = tmp / "heat"
    for sid in ("s1", "s2"):
        heatmap_slide(data / f"{sid}.tiff", heat, HeatmapSettings(model=str(model)), slide_id=sid)
    manifest = tmp / "slides.csv"
    manifest.write_text("id,path,tumor,patient,site\ns1,s1.tiff,1,pa,A\ns2,s2.tiff,0,pb,B\n")
    return {"tmp": tmp, "data": data, "model": model, "heat": heat, "manifest": manifest}


@pytest.mark.real_data
def test_slide_cohort_with_heatmap_stores(slide_cohort):
    c = slide_cohort
    rep = audit(
        c["manifest"], c["data"], model=c["model"], heatmaps=c["heat"], out=c["tmp"] / "out", progress=False
    )
    assert rep.cohort["kind"] == "slide" and rep.cohort["n_with_heatmaps"] == 2
    d = json.loads((c["tmp"] / "out" / "report.json").read_text())
    assert any(f["check"].startswith("artifact.relevance") for f in d["findings"])
    trust = [n for n in d["notes"] if n.startswith("Heatmap trust of ")]  # cited from each store
    assert len(trust) == 2 and all("faithfulness" in n and "x random on" in n for n in trust)
    dims = {"s1": (3000, 2000), "s2": (2400, 2400)}
    regions = [r for f in d["findings"] for r in f["evidence"]["regions"]]
    assert regions
    for r in regions:  # level-0 coordinates of the slide they belong to
        w, h = dims[r["item"]]
        assert 0 <= r["l0_x"] < w and 0 <= r["l0_y"] < h
        assert r["l0_x"] + r["l0_w"] <= w + 2 and r["l0_y"] + r["l0_h"] <= h + 2


@pytest.mark.real_data
def test_slide_cohort_without_heatmaps_notes_the_skip(slide_cohort):
    c = slide_cohort
    rep = audit(c["manifest"], c["data"], model=None, out=c["tmp"] / "free", progress=False)
    assert rep.cohort["n_with_heatmaps"] == 0
    assert any("No --heatmaps" in n for n in rep.notes)
    assert not rep.find("artifact.relevance") and rep.find("stain.outliers")


@pytest.mark.real_data
def test_missing_store_is_a_clear_error(slide_cohort, tmp_path):
    c = slide_cohort
    empty = tmp_path / "noheat"
    empty.mkdir()
    with pytest.raises(AuditError, match="no heatmap store for slide"):
        audit(c["manifest"], c["data"], model=c["model"], heatmaps=empty, out=tmp_path / "o", progress=False)
