from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from pathxai.geometry import build_grid, l0_to_m, m_to_l0, n_positions, tissue_fractions

mpps = st.sampled_from([0.2275, 0.25, 0.499, 0.5, 0.62005, 1.0])
targets = st.sampled_from([0.5, 1.0, 1.24, 2.0])


@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(300, 5000),
    h=st.integers(300, 5000),
    slide_mpp=mpps,
    mpp=targets,
    size=st.sampled_from([32, 64, 112, 224]),
    overlap=st.sampled_from([0, 0.25, 0.5]),
)
def test_tiles_stay_inside_and_cover_slide(w, h, slide_mpp, mpp, size, overlap) -> None:
    stride = max(1, int(size * (1 - overlap)))
    grid = build_grid(w, h, slide_mpp, mpp, size, stride)
    assert len(grid) == grid.n_cols * grid.n_rows
    for s in grid.specs:
        assert 0 <= s.l0_x and 0 <= s.l0_y
        assert s.l0_x + s.l0_w <= w and s.l0_y + s.l0_h <= h
        # the level-0 window is the image of the target window, within half a level-0 pixel
        assert abs(s.l0_x - m_to_l0(s.m_x, grid.scale)) <= 0.5
        assert abs(s.l0_w - size * grid.scale) <= 1.0
    # coverage: every target pixel up to the last full tile belongs to some tile
    if len(grid):
        covered_w = (grid.n_cols - 1) * stride + size
        assert grid.m_width - covered_w < stride


@settings(max_examples=100, deadline=None)
@given(m=st.integers(0, 10**6), slide_mpp=mpps, mpp=targets)
def test_frames_round_trip(m, slide_mpp, mpp) -> None:
    scale = mpp / slide_mpp
    assert round(l0_to_m(m_to_l0(m, scale), scale)) == m
    assert abs(l0_to_m(m_to_l0(m, scale), scale) - m) < 1e-6


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    size=st.sampled_from([16, 32, 48]),
    min_tissue=st.sampled_from([0.01, 0.25, 0.5]),
)
def test_kept_tiles_cover_the_tissue_mask(seed, size, min_tissue) -> None:
    rng = np.random.default_rng(seed)
    mask = np.zeros((64, 80), bool)
    y, x = rng.integers(0, 48), rng.integers(0, 60)
    mask[y : y + rng.integers(4, 16), x : x + rng.integers(4, 20)] = True
    # slide at 1 mpp, mask at 4 mpp, tiles at 1 mpp
    grid = build_grid(320, 256, 1.0, 1.0, size, size, mask, 4.0, min_tissue)
    frac = tissue_fractions(mask, 4.0, grid.m_coords(), size, 1.0)
    np.testing.assert_allclose(frac, grid.tissue, rtol=1e-6)
    assert (grid.tissue >= min_tissue).all()
    # every mask pixel inside the tiled area lies in a kept tile, unless its tile had too little tissue
    full = build_grid(320, 256, 1.0, 1.0, size, size, mask, 4.0, 0.0)
    kept = {(s.t_col, s.t_row) for s in grid.specs}
    t = size // 4  # tile side in mask pixels
    for ys, xs in zip(*np.nonzero(mask), strict=True):
        col, row = xs // t, ys // t
        if col >= full.n_cols or row >= full.n_rows:
            continue  # beyond the last whole tile
        frac = mask[row * t : (row + 1) * t, col * t : (col + 1) * t].mean()
        assert ((col, row) in kept) == (frac >= min_tissue)


def test_n_positions() -> None:
    assert n_positions(100, 100, 50) == 1
    assert n_positions(99, 100, 50) == 0
    assert n_positions(250, 100, 50) == 4
