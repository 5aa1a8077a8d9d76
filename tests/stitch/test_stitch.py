"""Stitching: exact alignment, overlap weighting, NaN outside tiles, band-wise == whole, pyramid."""

from __future__ import annotations

import numpy as np
import pytest

from pathxai.stitch import (
    WINDOWS,
    Stitcher,
    downsample2,
    level_shape,
    n_levels,
    pool_tiles,
    pyramid,
    stitch,
    tile_window,
)


def _tiles_of(image: np.ndarray, size: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut an image into tiles at the target mpp; return maps and m_ origins."""
    h, w = image.shape
    xy = [(x, y) for y in range(0, h - size + 1, stride) for x in range(0, w - size + 1, stride)]
    maps = np.stack([image[y : y + size, x : x + size] for x, y in xy])
    return maps, np.array(xy, dtype=np.int64)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(
    ("size", "stride", "k"), [(32, 32, 1), (32, 16, 1), (32, 8, 4), (64, 48, 8), (32, 32, 4)]
)
def test_ramp_and_constant_survive_stitching(window: str, size: int, stride: int, k: int) -> None:
    h, w = 160, 224
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for image in (np.full((h, w), 3.25), 0.37 * xx - 1.1 * yy + 5.0):
        maps, m_xy = _tiles_of(image, size, stride)
        pooled = pool_tiles(maps, k, "mean").astype(np.float64)
        canvas, count = stitch(pooled, m_xy // k, (h // k, w // k), size // k, window)
        expected = image.reshape(h // k, k, w // k, k).mean(axis=(1, 3))
        covered = count > 0
        # the grid covers the whole image here except a right/bottom remainder
        assert covered[: (h - size) // k + 1, : (w - size) // k + 1].all()
        np.testing.assert_allclose(canvas[covered], expected[covered], rtol=1e-6, atol=1e-5)
        assert np.isnan(canvas[~covered]).all()


def test_pooling_keeps_relevance_mass() -> None:
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(5, 32, 32)).astype(np.float32)
    pooled = pool_tiles(maps, 4, "sum")
    assert pooled.shape == (5, 8, 8)
    np.testing.assert_allclose(pooled.sum(axis=(1, 2)), maps.sum(axis=(1, 2)), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="divide"):
        pool_tiles(maps, 5)


def test_non_overlapping_tiles_are_copied_bit_exactly() -> None:
    rng = np.random.default_rng(1)
    maps = rng.normal(size=(6, 8, 8)).astype(np.float32)
    xy = np.array([(x, y) for y in (0, 8) for x in (0, 8, 16)])
    canvas, _ = stitch(maps, xy, (16, 24), 8, "hann")
    for m, (x, y) in zip(maps, xy, strict=True):
        assert np.array_equal(canvas[y : y + 8, x : x + 8], m)


def test_overlap_is_weighted_mean() -> None:
    a, b = np.full((4, 4), 1.0), np.full((4, 4), 3.0)
    canvas, count = stitch(np.stack([a, b]), np.array([[0, 0], [2, 0]]), (4, 6), 4, "count")
    assert (
        np.allclose(canvas[:, :2], 1.0)
        and np.allclose(canvas[:, 2:4], 2.0)
        and np.allclose(canvas[:, 4:], 3.0)
    )
    assert np.array_equal(count[0], [1, 1, 2, 2, 1, 1])
    wcanvas, _ = stitch(np.stack([a, b]), np.array([[0, 0], [2, 0]]), (4, 6), 4, "hann")
    # window weighting trusts each tile's centre: column 2 is nearer b's border than a's centre
    assert 1.0 < wcanvas[0, 2] < 2.0 < wcanvas[0, 3] < 3.0


def test_scalar_tiles_and_uncovered_nan() -> None:
    canvas, count = stitch([0.2, 0.8], np.array([[0, 0], [4, 4]]), (10, 10), 4)
    assert np.allclose(canvas[:4, :4], 0.2) and np.allclose(canvas[4:8, 4:8], 0.8)
    assert np.isnan(canvas[8:, :]).all() and (count[8:] == 0).all()


def test_bands_equal_whole_canvas() -> None:
    rng = np.random.default_rng(2)
    maps = rng.normal(size=(30, 8, 8))
    xy = np.array([(x, y) for y in range(0, 48, 8) for x in range(0, 40, 8)]) // 2 * 2
    whole, _ = stitch(maps, xy, (60, 50), 8, "triangle")
    rows = []
    for r0 in range(0, 60, 16):
        s = Stitcher(50, min(16, 60 - r0), 8, "triangle", row0=r0)
        s.add_many(xy, maps)
        rows.append(s.result()[0])
    assert np.array_equal(np.vstack(rows), whole, equal_nan=True)
    # a pyramid built band by band (bands at multiples of 2**levels) equals the whole pyramid
    levels = 3
    whole_pyr = pyramid(whole, levels)
    for level in range(1, levels + 1):
        parts = []
        for r0 in range(0, 60, 16):
            band = whole[r0 : r0 + 16]
            for _ in range(level):
                band = downsample2(band)
            parts.append(band)
        assert np.array_equal(np.vstack(parts), whole_pyr[level], equal_nan=True)
        assert whole_pyr[level].shape == level_shape((60, 50), level)


def test_downsample2_is_nan_aware() -> None:
    x = np.array([[1.0, np.nan, 4.0], [3.0, np.nan, np.nan], [np.nan, np.nan, 7.0]], dtype=np.float32)
    d = downsample2(x)
    assert d.shape == (2, 2) and d.dtype == np.float32
    assert d[0, 0] == 2.0 and d[0, 1] == 4.0 and np.isnan(d[1, 0]) and d[1, 1] == 7.0


def test_windows_are_positive_and_levels() -> None:
    for kind in WINDOWS:
        w = tile_window(7, kind)
        assert w.shape == (7, 7) and (w > 0).all() and np.allclose(w, w.T)
    with pytest.raises(ValueError, match="unknown window"):
        tile_window(4, "gauss")
    assert n_levels((300, 1000), 256) == 2 and n_levels((10, 10)) == 0
