"""Direct TIFF tile decoding gives OpenSlide's pixels, byte for byte, and fails as clearly."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pathxai.errors import SlideError
from pathxai.slide import OpenSlideSlide, open_slide
from pathxai.slide.testing import write_synthetic_slide
from pathxai.slide.tiff_tiles import TiffTileReader


def _windows(slide: OpenSlideSlide, level: int, n: int, seed: int) -> list[tuple[int, int, int, int]]:
    """Random level windows, some hanging over the level's edges, at whole level pixels."""
    rng = random.Random(seed)
    w_l, h_l = slide.level_dimensions[level]
    out = []
    for _ in range(n):
        w, h = rng.randint(1, min(300, w_l)), rng.randint(1, min(300, h_l))
        out.append((rng.randint(-40, w_l - w // 2), rng.randint(-40, h_l - h // 2), w, h))
    return out


def _assert_same_pixels(path: Path, levels: tuple[int, ...], n: int = 12, mpp: float | None = None) -> None:
    with OpenSlideSlide(path, mpp=mpp) as direct, OpenSlideSlide(path, mpp=mpp, decoder="openslide") as ref:
        assert set(levels) <= set(direct.decoded_levels)
        assert ref.decoded_levels == ()
        for level in levels:
            d = direct.level_downsamples[level]
            # OpenSlide starts a level read at l0 / downsample: compare where that is a whole pixel
            windows = _windows(direct, level, n, seed=level) if d == int(d) else [(0, 0, 200, 150)]
            for x, y, w, h in windows:
                a = direct._read_level(level, round(x * d), round(y * d), w, h)
                b = ref._read_level(level, round(x * d), round(y * d), w, h)
                assert a.shape == b.shape == (h, w, 3)
                assert np.array_equal(a, b), (
                    f"level {level} window {(x, y, w, h)}: max diff {np.abs(a.astype(int) - b).max()}"
                )


@pytest.mark.parametrize("compression", ["jpeg", "zlib", "none"])
def test_generated_pyramid_every_level_identical_to_openslide(tmp_path: Path, compression: str) -> None:
    path = write_synthetic_slide(tmp_path / "s.tiff", 1500, 1100, mpp=0.5, levels=3, compression=compression)
    _assert_same_pixels(path, (0, 1, 2))


def test_real_aperio_jpeg_identical_to_openslide(cmu_slide: Path) -> None:
    _assert_same_pixels(cmu_slide, (0,), n=20)


def test_real_aperio_jpeg2000_identical_to_openslide(tcga_slide: Path) -> None:
    _assert_same_pixels(tcga_slide, (0, 1), mpp=0.5)


def test_real_generic_tiff_identical_to_openslide(bracs_slide: Path) -> None:
    _assert_same_pixels(bracs_slide, (0, 1, 2), mpp=0.25)


def test_tiles_pipeline_reads_identical_on_a_generated_slide(tmp_path: Path) -> None:
    # what the heatmap pipeline reads: sub-pixel windows resampled to the model's tile size
    path = write_synthetic_slide(tmp_path / "s.tiff", 2000, 1500, mpp=0.5, levels=3)
    with open_slide(path) as direct, open_slide(path, decoder="openslide") as ref:
        for x, y in [(301.4, 117.2), (0.0, 0.0), (1799.9, 1299.5), (-20.5, 640.25)]:
            a = direct.read_l0_region(x, y, 278.4, 278.4, 112, 112)
            b = ref.read_l0_region(x, y, 278.4, 278.4, 112, 112)
            assert np.array_equal(a, b)


def test_decoder_choice_and_what_stays_with_openslide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_synthetic_slide(tmp_path / "s.tiff", 600, 400, mpp=0.5, levels=2)
    with open_slide(path) as s:
        assert s.decoded_levels == (0, 1)
    monkeypatch.setenv("PATHXAI_DECODER", "openslide")
    with open_slide(path) as s:
        assert s.decoded_levels == ()
    monkeypatch.setenv("PATHXAI_DECODER", "fast")
    with pytest.raises(SlideError, match=r"unknown pixel decoder 'fast'.*PATHXAI_DECODER"):
        open_slide(path)
    # vendors whose files are more than plain tiled pages are never decoded here
    assert TiffTileReader.for_levels(path, "hamamatsu", [(600, 400), (300, 200)]) is None
    # a level with no page of its size stays with OpenSlide
    reader = TiffTileReader.for_levels(path, "generic-tiff", [(600, 400), (301, 200)])
    assert reader is not None and reader.has_level(0) and not reader.has_level(1)
    reader.close()


def test_cache_stays_within_its_budget(tmp_path: Path) -> None:
    path = write_synthetic_slide(tmp_path / "s.tiff", 2048, 1536, mpp=0.5, levels=1, tile=128)
    budget = 10 * 128 * 128 * 3
    reader = TiffTileReader.for_levels(path, "generic-tiff", [(2048, 1536)], cache_bytes=budget)
    assert reader is not None
    try:
        whole = reader.read(0, 0, 0, 2048, 1536)  # 192 tiles through a 10-tile cache
        assert 0 < reader.cached_bytes <= budget
        again = reader.read(0, 100, 900, 700, 500)  # evicted tiles decode again, to the same pixels
        assert np.array_equal(again, whole[900:1400, 100:800])
    finally:
        reader.close()


def test_concurrent_reads_from_threads_are_consistent(tmp_path: Path) -> None:
    path = write_synthetic_slide(tmp_path / "s.tiff", 2048, 1536, mpp=0.5, levels=1, tile=128)
    with open_slide(path) as s:
        windows = [(x, y, 300, 200) for x in range(0, 1800, 170) for y in range(0, 1300, 190)]
        expected = [s._read_level(0, *w) for w in windows]
    with open_slide(path) as s, ThreadPoolExecutor(4) as ex:
        got = list(ex.map(lambda w: s._read_level(0, *w), windows))
    assert all(np.array_equal(a, b) for a, b in zip(got, expected, strict=True))


def test_corrupt_tile_raises_slide_error_naming_file(tmp_path: Path) -> None:
    path = write_synthetic_slide(tmp_path / "s.tiff", 1024, 768, mpp=0.5, levels=1)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        offset, count = page.dataoffsets[5], page.databytecounts[5]  # row 1, column 1 of 256 px tiles
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00" * count)
    with open_slide(path) as s:
        assert s.decoded_levels == (0,)
        s.read_l0_region(0, 0, 200, 200, 200, 200)  # intact tiles still read
        with pytest.raises(SlideError, match="cannot decode TIFF tile 5 of level 0") as info:
            s.read_l0_region(300, 300, 100, 100, 100, 100)
    assert str(path) in str(info.value)


def test_sparse_tile_reads_white_like_openslide(tmp_path: Path) -> None:
    # a tile with byte count 0 (nothing scanned there) is transparent in OpenSlide, white for us
    path = write_synthetic_slide(tmp_path / "s.tiff", 1024, 768, mpp=0.5, levels=1)
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["TileByteCounts"]
        offset, item = tag.valueoffset, tag.valuebytecount // tag.count
    with open(path, "r+b") as fh:
        fh.seek(offset + 5 * item)  # tile 5: row 1, column 1 of 256 px tiles
        fh.write(b"\x00" * item)
    with open_slide(path) as direct, open_slide(path, decoder="openslide") as ref:
        a = direct._read_level(0, 200, 200, 400, 400)
        assert np.array_equal(a, ref._read_level(0, 200, 200, 400, 400))
    assert (a[56:312, 56:312] == 255).all() and (a[:56] != 255).any()
