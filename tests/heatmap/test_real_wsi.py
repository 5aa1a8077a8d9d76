"""End to end on the three real whole-slide files with the default model (mpp quirks handled by overrides)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pathxai.cli import main
from pathxai.slide import open_slide
from pathxai.store import HeatmapStore


@pytest.mark.real_data
@pytest.mark.slow
def test_three_real_wsis_end_to_end(wsi_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from pathxai.model import DEFAULT_MODEL_DIR

    if not (DEFAULT_MODEL_DIR / "model_card.json").is_file():
        pytest.skip("the default model is not installed")
    # TCGA has no mpp in its metadata (a 20x scan: 0.5), BRACS a bogus 1000 (a 40x scan: 0.25)
    manifest = tmp_path / "wsi.csv"
    manifest.write_text(
        "path,slide_mpp\nCMU-1-Small-Region.svs,\nTCGA-CR-7395-01A-01-TS1.svs,0.5\nBRACS_1640_N_3_cropped.tiff,0.25\n"
    )
    out = tmp_path / "out"
    code = main(
        ["heatmap", str(manifest), "--data-root", str(wsi_dir), "--out", str(out), "--batch-size", "32"]
    )
    report = capsys.readouterr().out
    assert code == 0, report
    for stem, mpp in (
        ("CMU-1-Small-Region", 0.499),
        ("TCGA-CR-7395-01A-01-TS1", 0.5),
        ("BRACS_1640_N_3_cropped", 0.25),
    ):
        summary = json.loads((out / f"{stem}.json").read_text())
        assert summary["settings"]["slide_mpp"] == pytest.approx(mpp, rel=1e-2)
        with HeatmapStore.open(out / f"{stem}.h5") as st:
            assert st.attrs["status"] == "complete"
            assert st.n_tiles == summary["n_tiles"]
        with open_slide(out / f"{stem}.tif") as tif:
            assert tif.mpp == pytest.approx(summary["settings"]["overlay_mpp"], rel=1e-3)
    # the two larger slides have tissue tiles; the BRACS crop may be smaller than one tile at the model's mpp
    for stem in ("CMU-1-Small-Region", "TCGA-CR-7395-01A-01-TS1"):
        assert json.loads((out / f"{stem}.json").read_text())["n_tiles"] > 10
