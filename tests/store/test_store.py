"""HeatmapStore: partial -> resume -> finalize, schema, refusal of other settings, crash leftovers, lock."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import h5py
import numpy as np
import pytest

from pathxai.errors import OutputLockedError, StoreError
from pathxai.stitch import pyramid, stitch
from pathxai.store import HEATMAP_SCHEMA, HeatmapStore, OutputLock
from pathxai.store.heatmap import final_path, partial_path

ATTRS = {
    "slide": "s.tiff",
    "slide_id": "s",
    "slide_mpp": 0.5,
    "mpp": 1.0,
    "size": 8,
    "stride": 8,
    "canvas_downsample": 2,
    "overlay_mpp": 2.0,
    "min_tissue": 0.25,
    "tissue_settings": {"mpp": 8.0},
    "model_sha256": "ab" * 32,
    "method": "lrp",
    "target_class": 1,
    "window": "count",
}


def _make(path: Path, n: int = 6) -> HeatmapStore:
    m_xy = np.array([(8 * (i % 3), 8 * (i // 3)) for i in range(n)], dtype=np.int64)
    return HeatmapStore.create(
        path,
        coords=m_xy * 2,
        m_coords=m_xy,
        t_index=m_xy // 8,
        tissue=np.ones(n),
        n_classes=2,
        tile_px=4,
        attrs=ATTRS,
    )


def _finalize(store: HeatmapStore, target: Path) -> Path:
    maps = store.tile_relevance()
    canvas, count = stitch(maps, store.m_coords // 2, (8, 12), 4)
    prob, _ = stitch(store.probabilities[:, 1], store.m_coords // 2, (8, 12), 4)
    bands = [("relevance", lv, 0, a) for lv, a in enumerate(pyramid(canvas, 2))]
    bands += [("probability", lv, 0, a) for lv, a in enumerate(pyramid(prob, 2))]
    bands += [("count", 0, 0, count)]
    return store.finalize(target, (8, 12), 2, bands, {"relevance_vmax": 1.5})


def test_roundtrip_and_resume(tmp_path: Path) -> None:
    part, final = partial_path(tmp_path, "s"), final_path(tmp_path, "s")
    rng = np.random.default_rng(0)
    probs = rng.random((6, 2)).astype(np.float32)
    maps = rng.normal(size=(6, 4, 4)).astype(np.float32)
    with _make(part) as st:
        st.write_batch(0, probs[:4], maps[:4], failed=np.array([False, True, False, False]))
        assert HeatmapStore.progress(part) == (4, 6)
        with pytest.raises(StoreError, match="not done"):
            _finalize(st, final)
        with pytest.raises(ValueError, match="outside the store's 6 tiles"):
            st.write_batch(4, probs[:4], maps[:4])
        assert HeatmapStore.progress(part) == (4, 6)  # the refused batch wrote nothing
    assert not final.exists()
    with HeatmapStore.resume(part, ATTRS) as st:
        assert st.done.tolist() == [True] * 4 + [False] * 2
        assert np.isnan(st.probabilities[4:]).all()
        st.write_batch(4, probs[4:], maps[4:])
        _finalize(st, final)
    assert final.exists() and not part.exists()
    with HeatmapStore.open(final) as st:
        assert st.attrs["schema"] == HEATMAP_SCHEMA and st.attrs["status"] == "complete"
        assert st.attrs["relevance_vmax"] == 1.5 and st.tissue_settings == {"mpp": 8.0}
        assert np.array_equal(st.probabilities, probs) and np.array_equal(st.tile_relevance(), maps)
        assert st.failed.tolist() == [False, True, False, False, False, False]
        assert st.n_levels == 3 and st.level_shape(1) == (4, 6) and st.level_shape(2) == (2, 3)
        rel = st.relevance(0)
        assert np.array_equal(rel[:4, :4], maps[0])
        assert np.isnan(rel[4:, :]).all() or np.isfinite(rel).all()  # 6 tiles fill 8x12 exactly
        win = st.region(0, -2, -1, 5, 4)
        assert np.isnan(win[0]).all() and np.isnan(win[:, :2]).all()
        assert np.array_equal(win[1:, 2:], rel[:3, :3])
        assert st.l0_per_pixel(1) == pytest.approx(2 * 2 * 1.0 / 0.5)
        assert st.count().shape == (8, 12)
        with pytest.raises(StoreError, match="no relevance/3"):
            st.relevance(3)
    with h5py.File(final) as h5:  # compressed, chunked per batch
        assert h5["tile_relevance"].compression == "gzip" and h5["relevance/0"].chunks is not None


def test_other_settings_are_refused(tmp_path: Path) -> None:
    part = partial_path(tmp_path, "s")
    _make(part).close()
    for key, value in (
        ("model_sha256", "cd" * 32),
        ("method", "gradient"),
        ("stride", 4),
        ("tissue_settings", {"mpp": 4.0}),
    ):
        with pytest.raises(StoreError, match=key):
            HeatmapStore.resume(part, {**ATTRS, key: value})
    # equal JSON in another key order and an int/float spelling are the same settings
    HeatmapStore.resume(part, {**ATTRS, "mpp": 1, "tissue_settings": {"mpp": 8}}).close()


def test_unreadable_and_foreign_files(tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    with pytest.raises(StoreError, match="unreadable"):
        HeatmapStore.open(bad)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as h5:
        h5.attrs["schema"] = "pathxai.coords/1"
    with pytest.raises(StoreError, match="not a pathxai heatmap store"):
        HeatmapStore.open(other)
    with pytest.raises(StoreError, match="no such"):
        HeatmapStore.open(tmp_path / "missing.h5")


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    part = partial_path(tmp_path, "s")
    _make(part).close()
    with HeatmapStore.open(part) as st, pytest.raises(StoreError, match="read-only"):
        st.write_batch(0, np.zeros((1, 2)), np.zeros((1, 4, 4)))


def _try_lock(directory: str, queue: mp.Queue) -> None:
    try:
        with OutputLock(directory):
            queue.put("acquired")
    except OutputLockedError as exc:
        queue.put(str(exc))


def test_output_lock_excludes_other_processes(tmp_path: Path) -> None:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    with OutputLock(tmp_path):
        p = ctx.Process(target=_try_lock, args=(str(tmp_path), queue))
        p.start()
        p.join(60)
        msg = queue.get(timeout=5)
    assert "in use by pid" in msg and "--out" in msg
    p = ctx.Process(target=_try_lock, args=(str(tmp_path), queue))
    p.start()
    p.join(60)
    assert queue.get(timeout=5) == "acquired"
