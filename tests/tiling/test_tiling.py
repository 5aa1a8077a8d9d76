from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pathxai.slide import ArraySlide, open_slide
from pathxai.slide.testing import write_synthetic_slide
from pathxai.store import read_coords, write_coords
from pathxai.tiling import SlideSource, iter_tiles, reuse_freed_memory, tile_slide


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_slide(tmp_path_factory.mktemp("wsi") / "syn.tiff", 2048, 1536, mpp=0.5, levels=3)


def test_iter_tiles_workers_match_in_process(synthetic: Path) -> None:
    with open_slide(synthetic) as s:
        grid, _mask = tile_slide(s, mpp=1.0, size=64, min_tissue=0.5)
    assert 0 < len(grid) < grid.n_cols * grid.n_rows
    a = list(iter_tiles(SlideSource(str(synthetic)), grid, batch_size=16, workers=0))
    b = list(iter_tiles(SlideSource(str(synthetic)), grid, batch_size=16, workers=2, prefetch=3))
    assert [x.start for x in a] == [x.start for x in b] == list(range(0, len(grid), 16))
    np.testing.assert_array_equal(
        np.concatenate([x.pixels for x in a]), np.concatenate([x.pixels for x in b])
    )
    assert sum(len(x) for x in b) == len(grid)
    assert all(x.pixels.shape[1:] == (64, 64, 3) for x in b)


def test_iter_tiles_early_stop_shuts_pool_down(synthetic: Path) -> None:
    with open_slide(synthetic) as s:
        grid, _ = tile_slide(s, mpp=0.5, size=32, min_tissue=0.0)
    gen = iter_tiles(str(synthetic), grid, batch_size=8, workers=2)
    first = next(gen)
    gen.close()  # must not hang nor leak processes
    assert len(first) == 8


def test_iter_tiles_array_slide_in_workers() -> None:
    rng = np.random.default_rng(0)
    arr = ArraySlide(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8), mpp=1.0)
    from pathxai.geometry import build_grid

    grid = build_grid(256, 256, 1.0, 1.0, 64, 32)
    batches = list(iter_tiles(arr, grid, batch_size=5, workers=2))
    pixels = np.concatenate([b.pixels for b in batches])
    for i, s in enumerate(grid.specs):
        np.testing.assert_array_equal(pixels[i], arr._levels[0][s.m_y : s.m_y + 64, s.m_x : s.m_x + 64])


def test_coords_round_trip(synthetic: Path, tmp_path: Path) -> None:
    with open_slide(synthetic) as s:
        grid, _ = tile_slide(s, mpp=1.0, size=64, min_tissue=0.25)
    path = write_coords(tmp_path / "c.h5", grid, {"slide": str(synthetic), "tissue_settings": {"mpp": 8.0}})
    back = read_coords(path)
    assert back.grid.specs == grid.specs
    np.testing.assert_array_equal(back.grid.tissue, grid.tissue)
    assert back.attrs["patch_size"] == 128 and back.attrs["patch_level"] == 0  # CLAM's attributes
    assert not list(tmp_path.glob("*.part*"))


def test_real_slides_tile(cmu_slide: Path, tcga_slide: Path, bracs_slide: Path) -> None:
    for path, mpp in [(cmu_slide, None), (tcga_slide, 0.5), (bracs_slide, 0.25)]:
        with open_slide(path, mpp=mpp) as s:
            grid, _mask = tile_slide(s, mpp=1.0 if mpp != 0.25 else 0.5, size=112, min_tissue=0.25)
        assert len(grid) > 0, path
        batch = next(iter_tiles(SlideSource(str(path), mpp), grid, batch_size=4, workers=0))
        assert batch.pixels.mean() < 235, "tissue tiles are not white"


def test_workers_keep_freed_memory_on_glibc() -> None:
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt tuning applies to glibc only")
    assert reuse_freed_memory() is True  # glibc accepted both settings
    with pytest.raises(ValueError, match="C int"):
        reuse_freed_memory(mmap_threshold=1 << 40)
