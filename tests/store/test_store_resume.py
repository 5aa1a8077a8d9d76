"""store.resume: which old store a run reuses, continues, refuses (typed) or starts over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pathxai.errors import StoreMismatchError
from pathxai.geometry import Grid, TileSpec
from pathxai.store.heatmap import partial_path
from pathxai.store.resume import find_complete, open_run

from .test_store import ATTRS, _finalize


def _grid(n: int = 6) -> Grid:
    """The tiles of test_store's stores: 8 px at 1 µm/px on a 48 x 32 px slide at 0.5 µm/px."""
    specs = tuple(
        TileSpec(i % 3, i // 3, 8 * (i % 3), 8 * (i // 3), 8, 16 * (i % 3), 16 * (i // 3), 16, 16, 1.0)
        for i in range(n)
    )
    return Grid(48, 32, 0.5, 1.0, 8, 8, specs, tissue=np.ones(n))


def test_a_matching_partial_store_is_continued_and_a_complete_one_reused(tmp_path: Path) -> None:
    grid = _grid()
    first = open_run(tmp_path, "s", grid, ATTRS, n_classes=2, tile_px=4, batch_size=2)
    assert not first.resumed
    first.store.write_batch(0, np.full((2, 2), 0.5), np.ones((2, 4, 4)))
    first.store.close()
    again = open_run(tmp_path, "s", grid, ATTRS, n_classes=2, tile_px=4, batch_size=2)
    assert again.resumed and again.store.done.tolist() == [True, True, False, False, False, False]
    assert find_complete(tmp_path, "s", ATTRS) is None
    again.store.write_batch(2, np.full((4, 2), 0.5), np.ones((4, 4, 4)))
    final = _finalize(again.store, tmp_path / "s.h5")
    partial_path(tmp_path, "s").write_bytes(b"left by a kill between rename and unlink")
    assert find_complete(tmp_path, "s", ATTRS) == final
    assert not partial_path(tmp_path, "s").exists()


def test_another_slide_other_settings_or_other_tiles_raise_the_typed_error(tmp_path: Path) -> None:
    grid, attrs = _grid(), {**ATTRS, "slide_fingerprint": "a"}
    open_run(tmp_path, "s", grid, attrs, n_classes=2, tile_px=4, batch_size=2).store.close()
    for expected, g in (
        ({**attrs, "slide_fingerprint": "b"}, grid),  # same file name, other content
        ({**attrs, "method": "gradient"}, grid),
        (attrs, _grid(5)),
    ):
        with pytest.raises(StoreMismatchError):
            open_run(tmp_path, "s", g, expected, n_classes=2, tile_px=4, batch_size=2)
        assert partial_path(tmp_path, "s").exists()  # never thrown away
    # a byte-identical copy under another path is the same slide
    copy = {**attrs, "slide": "elsewhere/s.tiff"}
    run = open_run(tmp_path, "s", grid, copy, n_classes=2, tile_px=4, batch_size=2)
    assert run.resumed
    run.store.close()


def test_an_unreadable_partial_store_is_started_over(tmp_path: Path) -> None:
    partial_path(tmp_path, "s").write_bytes(b"not hdf5")
    run = open_run(tmp_path, "s", _grid(), ATTRS, n_classes=2, tile_px=4, batch_size=2)
    assert not run.resumed and run.store.n_tiles == 6
    run.store.close()
