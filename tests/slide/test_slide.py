from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathxai.errors import ResolutionError, SlideError
from pathxai.slide import ArraySlide, OpenSlideSlide, TissueSettings, detect_tissue, open_slide, resolve_mpp
from pathxai.slide.testing import write_synthetic_slide


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_slide(tmp_path_factory.mktemp("wsi") / "syn.tiff", 2048, 1536, mpp=0.5, levels=3)


def test_real_cmu_metadata_and_read(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as s:
        assert s.vendor == "aperio"
        assert s.dimensions == (2220, 2967)
        assert s.mpp == pytest.approx(0.499)
        assert s.resolution.source == "metadata"
        assert {"label", "macro", "thumbnail"} <= set(s.associated_images)
        tile = s.read_region((1000, 1000), (224, 224), mpp=1.0)
        assert tile.shape == (224, 224, 3) and tile.dtype == np.uint8
        # tissue in the middle of this slide: not white glass
        assert tile.mean() < 230


def test_real_tcga_has_no_mpp_and_says_so(tcga_slide: Path) -> None:
    with open_slide(tcga_slide) as s:
        assert s.level_count == 2
        assert s.resolution.mpp is None and s.resolution.source == "unknown"
        with pytest.raises(ResolutionError, match="--slide-mpp"):
            _ = s.mpp
    with open_slide(tcga_slide, mpp=0.5) as s:
        assert s.mpp == 0.5 and s.resolution.source == "override"
        # JPEG 2000 decodes: a 2x downsampled read comes from level 1
        assert s.best_level(2.0) == 1
        assert s.read_region((2000, 1500), (128, 128), mpp=1.0).std() > 5


def test_real_bracs_bogus_mpp_rejected_unless_overridden(bracs_slide: Path) -> None:
    with open_slide(bracs_slide) as s:
        assert s.vendor == "generic-tiff"
        assert "implausible" in s.resolution.note
        with pytest.raises(ResolutionError, match="implausible"):
            _ = s.mpp
    with open_slide(bracs_slide, mpp=0.25) as s:
        assert s.mpp == 0.25
        assert s.level_count == 3


def test_resolution_rules() -> None:
    assert resolve_mpp({"openslide.mpp-x": "0.25", "openslide.mpp-y": "0.25"}).mpp == 0.25
    r = resolve_mpp({"openslide.objective-power": "40"})
    assert r.source == "objective-power" and r.mpp == pytest.approx(0.25)
    r = resolve_mpp({"openslide.mpp-x": "1000", "openslide.objective-power": "20"})
    assert r.source == "objective-power" and "implausible" in r.note
    assert resolve_mpp({}).mpp is None
    with pytest.raises(ValueError):
        resolve_mpp({}, override=1000.0)


def test_synthetic_pyramid_level_choice_and_sizes(synthetic: Path) -> None:
    with OpenSlideSlide(synthetic) as s:
        assert s.mpp == pytest.approx(0.5)
        assert s.level_downsamples == (1.0, 2.0, 4.0)
        assert s.best_level(1.0) == 0
        assert s.best_level(3.9) == 1
        assert s.best_level(100) == 2
        out = s.read_region((0, 0), (100, 60), mpp=2.0)
        assert out.shape == (60, 100, 3)
        # outside the blob: white glass
        assert (out[0, 0] > 240).all()


def test_array_slide_matches_openslide_on_same_pixels(synthetic: Path) -> None:
    with OpenSlideSlide(synthetic) as s:
        full = s.read_l0_region(0, 0, 2048, 1536, 2048, 1536)
        arr = ArraySlide(full, mpp=0.5, n_levels=3)
        a = arr.read_region((512, 400), (64, 64), mpp=0.5)
        b = s.read_region((512, 400), (64, 64), mpp=0.5)
        np.testing.assert_array_equal(a, b)
        assert arr.level_count == 3


def test_array_slide_reads_outside_as_white() -> None:
    arr = ArraySlide(np.zeros((10, 10, 3), np.uint8), mpp=1.0)
    out = arr.read_l0_region(5, 5, 10, 10, 10, 10)
    assert (out[:5, :5] == 0).all() and (out[5:, :] == 255).all() and (out[:, 5:] == 255).all()


def test_thumbnail_is_bounded(synthetic: Path) -> None:
    with OpenSlideSlide(synthetic) as s:
        thumb, ds = s.thumbnail(max_side=256)
        assert max(thumb.shape[:2]) == 256
        assert ds == pytest.approx(2048 / 256)


def test_tissue_detection_finds_the_blob(synthetic: Path) -> None:
    with OpenSlideSlide(synthetic) as s:
        mask = detect_tissue(s, TissueSettings(mpp=8.0))
        # blob radius 0.36 of each side -> ellipse area pi * 0.36^2 ~= 0.407 of the slide
        assert mask.fraction == pytest.approx(np.pi * 0.36**2, abs=0.03)
        assert mask.mpp == pytest.approx(1.0, rel=0.01)  # a 1 mm slide gets a finer mask than 8 µm/px


def test_tissue_detection_on_real_cmu(cmu_slide: Path) -> None:
    with open_slide(cmu_slide) as s:
        mask = detect_tissue(s)
        assert 0.25 < mask.fraction < 0.55  # the strip of skin covers about 40% of the scan


def test_no_tissue_on_blank_slide() -> None:
    blank = ArraySlide(np.full((512, 512, 3), 245, np.uint8), mpp=1.0)
    assert detect_tissue(blank).fraction == 0.0


# ---- broken files -----------------------------------------------------------------------
def _png_as_svs(tmp: Path) -> Path:
    p = tmp / "image.svs"
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(p, format="PNG")
    return p


def _truncated_svs(tmp: Path, real: Path) -> Path:
    p = tmp / "truncated.svs"
    data = real.read_bytes()
    p.write_bytes(data[: len(data) // 3])
    return p


def _empty(tmp: Path) -> Path:
    p = tmp / "empty.svs"
    p.write_bytes(b"")
    return p


def _directory(tmp: Path) -> Path:
    p = tmp / "folder.svs"
    p.mkdir()
    return p


@pytest.mark.parametrize(
    ("maker", "message"),
    [
        (_png_as_svs, "it is a PNG image"),
        (_empty, "empty file"),
        (_directory, "is a directory"),
        (lambda tmp: tmp / "missing.svs", "no such file"),
    ],
)
def test_broken_files_raise_slide_error_naming_file(tmp_path: Path, maker, message: str) -> None:
    path = maker(tmp_path)
    with pytest.raises(SlideError, match=message) as info:
        open_slide(path)
    assert str(path) in str(info.value)


def test_truncated_svs_raises_slide_error(tmp_path: Path, cmu_slide: Path) -> None:
    path = _truncated_svs(tmp_path, cmu_slide)
    with pytest.raises(SlideError) as info:
        with open_slide(path) as s:
            s.thumbnail(max_side=512)  # whole-slide read must hit the missing data
    assert str(path) in str(info.value)


def test_unreadable_permissions(tmp_path: Path, cmu_slide: Path) -> None:
    import os

    if os.geteuid() == 0:
        pytest.skip("root reads files regardless of permissions")
    p = tmp_path / "locked.svs"
    shutil.copy(cmu_slide, p)
    p.chmod(0)
    with pytest.raises(SlideError, match="permission denied"):
        open_slide(p)


@pytest.mark.parametrize("compression", ["none", "jpeg"])
def test_subpixel_window_reads_whole_level_pixels_and_resamples_once(
    tmp_path: Path, compression: str
) -> None:
    # A level-0 origin that is not a multiple of 2 falls between two level-1 pixels: the read must take
    # level 1 from a whole pixel and cut the exact sub-pixel box out of it, not let OpenSlide interpolate.
    path = write_synthetic_slide(tmp_path / "s.tiff", 1024, 768, mpp=0.5, levels=2, compression=compression)
    with open_slide(path) as slide:
        level1 = slide.read_l0_region(0, 0, 1024, 768, 512, 384)  # aligned: the level's own pixels
        out = slide.read_l0_region(301.4, 117.2, 278.4, 278.4, 112, 112)  # level 1 at (150.7, 58.6)
    crop = Image.fromarray(np.ascontiguousarray(level1[58:198, 150:291]))
    expect = np.asarray(crop.resize((112, 112), Image.Resampling.BOX, box=(0.7, 0.6, 139.9, 139.8)))
    assert np.abs(out.astype(int) - expect.astype(int)).max() <= 1
    # the box offset matters: ignoring the 0.7 / 0.6 level pixels gives detectably other pixels
    shifted = np.asarray(crop.resize((112, 112), Image.Resampling.BOX, box=(0.0, 0.0, 139.2, 139.2)))
    assert np.abs(out.astype(int) - shifted.astype(int)).mean() > 0.5
