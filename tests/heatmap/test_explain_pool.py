"""Worker processes that read and explain tiles give what the same code gives in this process, in order."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pathxai.heatmap.pool import ExplainPool, ExplainSpec, iter_explained
from pathxai.slide import open_slide
from pathxai.tiling import SlideSource, tile_slide


def _grid(slide_path: Path):  # type: ignore[no-untyped-def]
    with open_slide(slide_path) as slide:
        grid, _ = tile_slide(slide, 1.0, 64, None, 0.25, None)
    return grid


def test_pool_matches_in_process_and_keeps_order(tiny_model: Path, small_slide: Path) -> None:
    grid = _grid(small_slide)
    batch = 8
    starts = list(range(0, len(grid.specs), batch))[::-1]  # any order of batches is kept as asked
    spec = ExplainSpec(str(tiny_model), "lrp", True, 4, threads=1)
    source = SlideSource(str(small_slide))
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # the workers' thread count: same arithmetic, so (near) identical floats
    try:
        local = list(iter_explained(source, grid, starts, batch, spec))
    finally:
        torch.set_num_threads(old)
    with ExplainPool(2, spec) as pool:
        assert pool.wait_ready() >= 0.0
        remote = list(iter_explained(source, grid, starts, batch, spec, pool=pool))
        again = list(iter_explained(source, grid, starts[:2], batch, spec, pool=pool))  # reused pool
    assert [b.start for b in remote] == starts == [b.start for b in local]
    assert [b.start for b in again] == starts[:2]
    for a, b in zip(local, remote, strict=True):
        assert len(a) == len(b) == len(grid.specs[a.start : a.start + batch])
        np.testing.assert_allclose(b.probabilities, a.probabilities, rtol=1e-5, atol=1e-7)
        scale = float(np.abs(a.pooled).max())
        np.testing.assert_allclose(b.pooled, a.pooled, rtol=1e-4, atol=1e-6 * scale)
        assert b.ok.all() and not b.failures and b.read_s > 0 and b.explain_s > 0
    assert b.pooled.shape[1:] == (16, 16)  # 64 px tiles pooled by 4


def test_pool_reports_a_dead_worker(tiny_model: Path) -> None:
    spec = ExplainSpec(str(tiny_model), "lrp", True, 4, threads=1)
    with ExplainPool(1, spec) as pool:
        pool.wait_ready()
        assert not pool.broken
        pool._executor.submit(os._exit, 1)  # a worker killed abruptly (as the OOM killer would)
        deadline = time.monotonic() + 30
        while not pool.broken and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pool.broken


def test_torch_sum_pool_matches_the_numpy_reference() -> None:
    from pathxai.heatmap.pool import _sum_pool
    from pathxai.stitch import pool_tiles

    maps = np.random.default_rng(0).normal(size=(5, 112, 112)).astype(np.float32)
    for k in (1, 2, 4, 8):
        np.testing.assert_allclose(_sum_pool(maps, k), pool_tiles(maps, k, "sum"), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="divide"):
        _sum_pool(maps, 5)


def test_stream_order_interleaves_contiguous_parts_and_keeps_every_batch() -> None:
    from pathxai.heatmap.pool import stream_order

    starts = list(range(0, 16 * 11, 16))
    order = stream_order(starts, 2)
    assert sorted(order) == starts
    assert order[:6] == [0, 80, 16, 96, 32, 112]  # halves: 0..64 and 80..160
    assert stream_order(starts, 1) == starts and stream_order(starts[:3], 2) == starts[:3]
    three = stream_order(starts, 3)
    assert sorted(three) == starts and three[:3] == [0, 48, 112]


def test_coalesce_merges_neighbouring_batches_only() -> None:
    from pathxai.heatmap.pool import ExplainedBatch, coalesce

    def batch(start: int, n: int) -> ExplainedBatch:
        ok = np.ones(n, bool)
        ok[0] = start != 4  # one failed tile
        probs = np.full((n, 2), start, np.float32)
        return ExplainedBatch(start, probs, np.zeros((n, 2, 2), np.float32), ok, () if ok[0] else ("bad",))

    runs = coalesce([batch(8, 4), batch(0, 4), batch(20, 4), batch(4, 4)])
    assert [(r.start, len(r)) for r in runs] == [(0, 12), (20, 4)]
    assert runs[0].probabilities[:, 0].tolist() == [0] * 4 + [4] * 4 + [8] * 4
    assert runs[0].ok.tolist() == [True] * 4 + [False] + [True] * 7 and runs[0].failures == ("bad",)
