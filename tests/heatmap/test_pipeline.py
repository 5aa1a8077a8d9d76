"""The slide heatmap pipeline end to end on generated slides with a tiny saved model (real zennit/h5py/OpenSlide)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile

from pathxai.cli import main
from pathxai.errors import OutputLockedError, StoreError
from pathxai.export import read_geojson
from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_batch, heatmap_slide
from pathxai.slide import open_slide
from pathxai.slide.testing import write_synthetic_slide
from pathxai.stitch import pool_tiles, stitch
from pathxai.store import HeatmapStore, OutputLock


def _settings(model: Path, **kw: object) -> HeatmapSettings:
    base: dict[str, object] = {"model": str(model), "batch_size": 16, "workers": 0}
    base.update(kw)
    return HeatmapSettings(**base)  # type: ignore[arg-type]


def _arrays(h5: Path) -> dict[str, np.ndarray]:
    with HeatmapStore.open(h5) as st:
        return {
            "probabilities": st.probabilities,
            "tile_relevance": st.tile_relevance(),
            "relevance": st.relevance(0),
            "probability": st.probability(0),
            "relevance_top": st.relevance(st.levels),
            "count": st.count(),
        }


def _assert_same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key], equal_nan=True), key


def test_slide_outputs_are_exact(tiny_model: Path, small_slide: Path, tmp_path: Path) -> None:
    from pathxai.explain import Explainer
    from pathxai.model import load_model_with_card, preprocess

    res = heatmap_slide(small_slide, tmp_path, _settings(tiny_model, workers=1))
    assert res.status == "done"
    for ext in ("h5", "tif", "png", "geojson", "json"):
        assert Path(res.outputs[ext]).is_file(), ext
    assert not list(tmp_path.glob("*.partial.h5")) and not list(tmp_path.glob(".*part*"))
    summary = json.loads(Path(res.outputs["json"]).read_text())
    assert summary["n_tiles"] > 30 and summary["n_failed_tiles"] == 0 and summary["timings"]["total_s"] > 0
    with HeatmapStore.open(res.outputs["h5"]) as st:
        a = st.attrs
        assert a["status"] == "complete" and a["overlay_mpp"] == 4.0 and a["canvas_downsample"] == 4
        assert a["size"] == 64 and a["mpp"] == 1.0 and a["slide_mpp"] == pytest.approx(0.5)
        maps, m_xy, probs = st.tile_relevance(), st.m_coords, st.probabilities
        # the canvas is exactly the stitched tile maps at m/k
        canvas, _ = stitch(maps, m_xy // 4, st.level_shape(0), 16)
        assert np.allclose(st.relevance(0), canvas, equal_nan=True, rtol=1e-6, atol=1e-9)
        pcanvas, _ = stitch(probs[:, 1], m_xy // 4, st.level_shape(0), 16)
        assert np.allclose(st.probability(0), pcanvas, equal_nan=True)
        # independent check of a few tiles: read -> preprocess -> explain -> pool
        model, card = load_model_with_card(tiny_model)
        coords = st.coords
        with open_slide(small_slide) as slide, Explainer(model, "lrp", target_class=1) as ex:
            # the first batch, read tile by tile without the tiling module, explained as one batch
            px = np.stack([slide.read_l0_region(int(x), int(y), 128, 128, 64, 64) for x, y in coords[:16]])
            e = ex(preprocess(px, card))
        np.testing.assert_allclose(
            pool_tiles(e.relevance, 4), maps[:16], rtol=1e-4, atol=1e-6 * np.abs(maps).max()
        )
        np.testing.assert_allclose(e.probabilities, probs[:16], atol=1e-6)
        assert a["relevance_vmax"] > 0
    with open_slide(res.outputs["tif"]) as tif:
        assert tif.mpp == pytest.approx(4.0, rel=1e-3)
        assert tif.dimensions[::-1] == canvas.shape
    feats = read_geojson(res.outputs["geojson"])
    assert all(f["properties"]["classification"]["name"] in ("Tumor", "High relevance") for f in feats)
    # rerun: complete store with the same settings is skipped, outputs unchanged
    before = Path(res.outputs["h5"]).read_bytes()
    again = heatmap_slide(small_slide, tmp_path, _settings(tiny_model))
    assert again.status == "skipped" and Path(res.outputs["h5"]).read_bytes() == before
    # killed after the store was renamed into place but before the exports / partial clean-up:
    Path(res.outputs["png"]).unlink()
    (tmp_path / "small.partial.h5").write_bytes(b"leftover")
    again = heatmap_slide(small_slide, tmp_path, _settings(tiny_model))
    assert again.status == "skipped" and Path(res.outputs["png"]).is_file()
    assert not (tmp_path / "small.partial.h5").exists() and Path(res.outputs["h5"]).read_bytes() == before


class _Stop(Exception):
    pass


def test_interrupted_run_resumes_identically(tiny_model: Path, small_slide: Path, tmp_path: Path) -> None:
    ref = heatmap_slide(small_slide, tmp_path / "ref", _settings(tiny_model, exports=()))
    seen = []

    def stop_after_two(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        heatmap_slide(
            small_slide, tmp_path / "run", _settings(tiny_model, exports=()), progress=stop_after_two
        )
    assert not (tmp_path / "run" / "small.h5").exists()
    assert HeatmapStore.progress(tmp_path / "run" / "small.partial.h5")[0] == 32
    # a resumed run with another batch size keeps the stored batch boundaries
    res = heatmap_slide(small_slide, tmp_path / "run", _settings(tiny_model, exports=(), batch_size=7))
    assert res.status == "done" and res.summary["resumed"] is True
    _assert_same(_arrays(Path(ref.outputs["h5"])), _arrays(Path(res.outputs["h5"])))


def test_overlap_and_settings_guard(tiny_model: Path, small_slide: Path, tmp_path: Path) -> None:
    s = _settings(tiny_model, stride=32, window="hann", exports=("geojson",))
    res = heatmap_slide(small_slide, tmp_path, s)
    with HeatmapStore.open(res.outputs["h5"]) as st:
        assert st.attrs["stride"] == 32 and st.count().max() > 1.0
        canvas, _ = stitch(st.tile_relevance(), st.m_coords // 4, st.level_shape(0), 16, "hann")
        assert np.allclose(st.relevance(0), canvas, equal_nan=True, rtol=1e-6, atol=1e-9)
    with pytest.raises(StoreError, match=r"other settings.*method"):
        heatmap_slide(
            small_slide, tmp_path, _settings(tiny_model, stride=32, window="hann", method="gradient")
        )
    res2 = heatmap_slide(
        small_slide, tmp_path, _settings(tiny_model, method="gradient", overwrite=True, exports=())
    )
    assert res2.status == "done"
    with HeatmapStore.open(res2.outputs["h5"]) as st:
        assert st.attrs["method"] == "gradient" and st.attrs["stride"] == 64
    assert not (tmp_path / "small.geojson").exists()  # stale exports of the replaced run are gone
    with pytest.raises(ValueError, match="divisible"):
        heatmap_slide(small_slide, tmp_path / "x", _settings(tiny_model, size=66))


def _corrupt_one_tile(path: Path, page: int) -> None:
    with tifffile.TiffFile(path) as tif:
        p = tif.pages[page]
        offsets, counts = p.dataoffsets, p.databytecounts
        nx = -(-p.imagewidth // p.tilewidth)
        ny = -(-p.imagelength // p.tilelength)
        i = (ny // 2) * nx + nx // 2  # the centre tile: tissue
        off, n = offsets[i], counts[i]
    with open(path, "r+b") as fh:
        fh.seek(off + 2)  # keep the SOI marker, wreck the rest
        fh.write(b"\x00\xff" * ((n - 2) // 2))


def test_batch_cli_reports_failures_and_corrupt_tiles(
    tiny_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    write_synthetic_slide(data / "good.tiff", 1200, 900, mpp=0.5)
    corrupt = write_synthetic_slide(data / "corrupt.tiff", 1200, 900, mpp=0.5, tile=128)
    _corrupt_one_tile(corrupt, 0)  # tiles at --mpp 0.5 read level 0; tissue and exports read coarser levels
    (data / "broken.svs").write_text("this is not a slide")
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label\ngood.tiff,0\nbroken.svs,1\ncorrupt.tiff,0\n")
    out = tmp_path / "out"
    code = main(
        [
            "heatmap",
            str(manifest),
            "--data-root",
            str(data),
            "--model",
            str(tiny_model),
            "--workers",
            "0",
            "--batch-size",
            "16",
            "--mpp",
            "0.5",
            "--exports",
            "png",
            "--out",
            str(out),
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "broken" in captured.out and "1 of 3 slide(s) failed" in captured.out
    failures = json.loads((out / "failures.json").read_text())
    assert failures["n_failed"] == 1 and failures["failures"][0]["slide_id"] == "broken"
    assert "not a whole-slide image" in failures["failures"][0]["error"]
    assert (out / "good.h5").is_file() and (out / "good.png").is_file() and not (out / "broken.h5").exists()
    summary = json.loads((out / "corrupt.json").read_text())
    assert summary["n_failed_tiles"] >= 1 and summary["failure_messages"]
    with HeatmapStore.open(out / "corrupt.h5") as st:
        bad = st.failed
        assert (
            bad.any() and np.isnan(st.probabilities[bad]).all() and np.isfinite(st.probabilities[~bad]).all()
        )
    # path escaping the data root is refused clearly
    (tmp_path / "esc.csv").write_text("path\n../good.tiff\n")
    assert (
        main(
            [
                "heatmap",
                str(tmp_path / "esc.csv"),
                "--data-root",
                str(data),
                "--model",
                str(tiny_model),
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "escape" in capsys.readouterr().err


def test_locked_output_directory(tiny_model: Path, small_slide: Path, tmp_path: Path) -> None:
    with OutputLock(tmp_path), pytest.raises(OutputLockedError, match="in use"):
        heatmap_batch([small_slide], tmp_path, _settings(tiny_model))


def test_duplicate_stems_get_unique_ids(tiny_model: Path, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = write_synthetic_slide(tmp_path / "a" / "s.tiff", 700, 500, mpp=0.5)
    b = write_synthetic_slide(tmp_path / "b" / "s.tiff", 700, 500, mpp=0.5)
    batch = heatmap_batch([a, b], tmp_path / "out", _settings(tiny_model, exports=()))
    assert [r.slide_id for r in batch.results] == ["s", "s-2"] and not batch.failed


def test_missing_dask_is_a_clear_error(
    tiny_model: Path,
    small_slide: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    code = main(
        ["heatmap", str(small_slide), "--model", str(tiny_model), "--dask", "local", "--out", str(tmp_path)]
    )
    assert code == 2
    assert "pip install 'pathxai[dask]'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "bad",
    [
        {"exports": ("pdf",)},
        {"workers": -1},
        {"batch_size": 0},
        {"canvas_downsample": 0},
        {"window": "gauss"},
    ],
)
def test_settings_refuse_bad_values(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        HeatmapSettings(**bad)  # type: ignore[arg-type]


def test_settings_workers_default_to_the_cores() -> None:
    from pathxai.pipeline.heatmap import default_workers

    assert HeatmapSettings().n_workers == default_workers() >= 1
    assert HeatmapSettings(workers=0).n_workers == 0 and HeatmapSettings(workers=3).n_workers == 3


def test_cli_refuses_unknown_export(
    tmp_path: Path, small_slide: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["heatmap", str(small_slide), "--out", str(out), "--exports", "pdf"]) == 2
    assert "unknown exports ['pdf']" in capsys.readouterr().err
    assert not out.exists()
