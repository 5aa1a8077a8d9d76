"""The colon demo slide shipped as package data: size, resolution, attribution, truth, held-out cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathxai.data.colon import (
    ADENOCARCINOMA_OTHER,
    COLON_DEMO_DIR,
    GLASS,
    LESION,
    NORMAL,
    TRUTH_CODES,
    colon_demo,
)
from pathxai.errors import DataFetchError
from pathxai.slide import open_slide

MAX_BYTES = 3 * 1024 * 1024


def test_files_exist_and_total_at_most_3_mb() -> None:
    demo = colon_demo()
    total = sum(p.stat().st_size for p in COLON_DEMO_DIR.iterdir() if p.is_file())
    assert demo.slide.parent == COLON_DEMO_DIR
    assert 0 < total <= MAX_BYTES, total


def test_slide_opens_with_its_estimated_mpp_and_attribution() -> None:
    demo = colon_demo()
    meta = demo.read_metadata()
    with open_slide(demo.slide) as slide:
        assert slide.mpp == pytest.approx(0.95, rel=1e-3) == meta["mpp"]
        assert slide.resolution.source == "metadata"
        assert slide.dimensions == (meta["width"], meta["height"])
        assert slide.level_count >= 3
        desc = slide.properties.get("tiff.ImageDescription", "")
    for needle in ("EBHI-Seg", "Shi L", "CC BY 4.0", "10.3389/fmed.2023.1114673"):
        assert needle in desc and needle in meta["attribution"]
    assert "ESTIMATE" in desc and "ESTIMATE" in meta["mpp_note"]


def test_truth_map_matches_the_described_images() -> None:
    demo = colon_demo()
    meta = demo.read_metadata()
    truth = demo.read_truth()
    assert truth.shape == (meta["height"], meta["width"])
    assert set(np.unique(truth)) <= set(TRUTH_CODES)
    inside = np.zeros(truth.shape, dtype=bool)
    for im in meta["images"]:
        cell = truth[im["y"] : im["y"] + im["height"], im["x"] : im["x"] + im["width"]]
        inside[im["y"] : im["y"] + im["height"], im["x"] : im["x"] + im["width"]] = True
        if im["tumor"]:
            assert set(np.unique(cell)) <= {LESION, ADENOCARCINOMA_OTHER} and (cell == LESION).mean() > 0.2
        else:
            assert (cell == NORMAL).all()
    assert (truth[~inside] == GLASS).all()
    labels = {im["tumor"] for im in meta["images"]}
    assert labels == {0, 1}  # both classes, of similar area
    n_normal = sum(1 for im in meta["images"] if not im["tumor"])
    assert abs(n_normal - (len(meta["images"]) - n_normal)) <= 2


def test_cases_are_test_split_and_not_in_the_default_models_training() -> None:
    meta = colon_demo().read_metadata()
    assert meta["source_manifest"]["split"] == "test"
    assert sorted({im["case"] for im in meta["images"]}) == meta["cases"]
    from pathxai.model import DEFAULT_MODEL_DIR
    from pathxai.model.io import card_from_file

    trained = set(card_from_file(DEFAULT_MODEL_DIR).training.get("train_patients") or [])
    assert not trained & set(meta["cases"])


@pytest.mark.real_data
def test_mosaic_pixels_and_truth_are_the_ebhi_images_and_masks(ebhi_dir: Path) -> None:
    """Against the shared EBHI-Seg copy: every cell holds its image (JPEG-close) and its lesion mask."""
    demo = colon_demo()
    meta = demo.read_metadata()
    truth = demo.read_truth()
    with open_slide(demo.slide) as slide:
        pixels = slide.read_region((0, 0), (meta["width"], meta["height"]), slide.mpp)
    for im in meta["images"]:
        folder = "Adenocarcinoma" if im["tumor"] else "Normal"
        ys, xs = slice(im["y"], im["y"] + im["height"]), slice(im["x"], im["x"] + im["width"])
        orig = np.asarray(Image.open(ebhi_dir / folder / "image" / im["file"]).convert("RGB"), np.float64)
        err = np.abs(pixels[ys, xs].astype(np.float64) - orig).mean()
        shifted = np.abs(pixels[ys, xs].astype(np.float64) - np.roll(orig, 1, axis=1)).mean()
        assert err < 8 and err < 0.5 * shifted, (im["file"], err, shifted)  # JPEG-close, in place
        if im["tumor"]:
            mask = np.asarray(Image.open(ebhi_dir / folder / "label" / im["file"]).convert("L")) >= 128
            assert np.array_equal(truth[ys, xs] == LESION, mask), im["file"]


def test_missing_file_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DataFetchError, match="colon demo file is missing"):
        colon_demo(tmp_path)
