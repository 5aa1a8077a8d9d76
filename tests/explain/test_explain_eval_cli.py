"""``pathxai explain-eval`` end to end on a small constructed manifest (images, gland-like masks)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathxai.cli import main
from pathxai.explain.eval_patches import stream_patches
from pathxai.manifest import read_manifest
from pathxai.model.io import card_from_file, resolve_model_path

GROUPS = ("faithfulness", "randomisation", "localisation", "robustness", "complexity")


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """Three 240 px H&E-coloured images at 1.24 µm/px with a disc mask each; two tumour, one not."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:240, :240]
    rows = ["id,path,tumor,mpp,mask_path"]
    for i in range(3):
        base = np.array([200, 120, 190]) + rng.integers(-30, 30, size=(240, 240, 3))
        disc = (yy - 120) ** 2 + (xx - 80 - 40 * i) ** 2 < 70**2
        base[disc] = np.array([120, 60, 150]) + rng.integers(-20, 20, size=(int(disc.sum()), 3))
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(tmp_path / f"im{i}.png")
        Image.fromarray((disc * 255).astype(np.uint8)).save(tmp_path / f"im{i}_mask.png")
        rows.append(f"im{i},im{i}.png,{int(i < 2)},1.24,im{i}_mask.png")
    path = tmp_path / "m.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_stream_patches_spreads_and_carries_masks(manifest: Path) -> None:
    card = card_from_file(resolve_model_path("default")[1])
    recs = list(read_manifest(manifest).records)
    patches = list(stream_patches(recs, manifest.parent, card, max_patches=5, min_tissue=0.0))
    size = card.input_size
    assert len(patches) == 5
    assert max(sum(p.image_id == r.id for p in patches) for r in recs) == 2  # ceil(5 / 3) per image
    assert all(p.pixels.shape == (size + 1, size + 1, 3) for p in patches)
    assert all(p.mask is not None and p.mask.shape == (size, size) and p.mask.any() for p in patches)


def test_cli_writes_json_and_html(manifest: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code = main(
        [
            "explain-eval",
            "--model",
            "default",
            "--manifest",
            str(manifest),
            "--methods",
            "lrp,gradient_x_input",
            "--max-patches",
            "4",
            "--batch-size",
            "3",
            "--steps",
            "4",
            "--randomisation-patches",
            "2",
            "--min-tissue",
            "0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert "recommended default:" in capsys.readouterr().out
    result = json.loads((out / "explain_eval.json").read_text())
    assert set(result["methods"]) == {"lrp", "gradient_x_input"}
    for m in result["methods"].values():
        for group in GROUPS:
            assert m[group], group
            for summary in m[group].values():
                assert set(summary) == {"mean", "ci_low", "ci_high", "n"}
        assert m["faithfulness"]["morf_ratio"]["n"] == 4
        assert m["randomisation"]["cascading_spearman_full"]["n"] == 2
    assert "axiomatic" in result["methods"]["lrp"]
    assert result["recommendation"]["method"] in (None, "lrp", "gradient_x_input")
    assert "mask_path" in result["provenance"]["mask_meaning"]
    page = (out / "explain_eval.html").read_text()
    assert "data:image/png;base64," in page and "faithfulness" in page
