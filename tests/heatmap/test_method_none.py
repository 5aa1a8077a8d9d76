"""``pathxai heatmap --method none``: probabilities only, no relevance in the store; exports, viewer, audit, resume."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pathxai.cli import main
from pathxai.errors import AuditError, StoreError, StoreMismatchError
from pathxai.export import read_geojson
from pathxai.heatmap.pool import Predictor
from pathxai.heatmap.settings import small_slide as computes_here
from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide
from pathxai.slide import open_slide
from pathxai.stitch import stitch
from pathxai.store import HeatmapStore


def _settings(model: Path, **kw: object) -> HeatmapSettings:
    base: dict[str, object] = {"model": str(model), "batch_size": 16, "workers": 0}
    base.update(kw)
    return HeatmapSettings(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def runs(tiny_model: Path, small_slide: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same slide with LRP and with method none (both in this process)."""
    out = tmp_path_factory.mktemp("none")
    lrp = heatmap_slide(small_slide, out / "lrp", _settings(tiny_model))
    none = heatmap_slide(small_slide, out / "none", _settings(tiny_model, method="none"))
    assert lrp.status == none.status == "done"
    return {"lrp": Path(lrp.outputs["h5"]), "none": Path(none.outputs["h5"]), "out": out}


def test_store_has_probabilities_and_no_relevance(runs: dict[str, Path]) -> None:
    with h5py.File(runs["none"], "r") as h5:
        assert "tile_relevance" not in h5 and "relevance" not in h5
        assert "probability" in h5 and "count" in h5
    with HeatmapStore.open(runs["none"]) as st, HeatmapStore.open(runs["lrp"]) as ref:
        a = st.attrs
        assert a["method"] == "none" and a["status"] == "complete" and "relevance_vmax" not in a
        assert not st.has_relevance and ref.has_relevance
        assert st.n_levels == ref.n_levels and st.level_shape(0) == ref.level_shape(0)
        # the forward pass gives the probabilities LRP's forward pass gives (BN fused there: float noise)
        np.testing.assert_allclose(st.probabilities, ref.probabilities, atol=1e-5)
        np.testing.assert_allclose(st.probability(0), ref.probability(0), atol=1e-5)
        np.testing.assert_array_equal(st.count(), ref.count())
        pcanvas, _ = stitch(st.probabilities[:, 1], st.m_coords // 4, st.level_shape(0), 16)
        np.testing.assert_allclose(st.probability(0), pcanvas, equal_nan=True)
        for read in (st.tile_relevance, lambda: st.relevance(0), lambda: st.region(0, 0, 0, 4, 4)):
            with pytest.raises(StoreError, match="no relevance"):
                read()
        np.testing.assert_array_equal(
            st.region(0, 0, 0, 4, 4, "probability"), ref.region(0, 0, 0, 4, 4, "probability")
        )


def test_exports_and_summary(runs: dict[str, Path]) -> None:
    base = runs["out"] / "none" / "small"
    for ext in ("tif", "png", "geojson", "json"):
        assert base.with_suffix(f".{ext}").is_file(), ext
    summary = json.loads(base.with_suffix(".json").read_text())
    assert summary["relevance_vmax"] is None and summary["has_relevance"] is False
    assert summary["settings"]["method"] == "none"
    feats = read_geojson(base.with_suffix(".geojson"))
    assert all(f["properties"]["classification"]["name"] == "Tumor" for f in feats)
    with open_slide(base.with_suffix(".tif")) as tif, HeatmapStore.open(runs["none"]) as st:
        assert tif.dimensions[::-1] == st.level_shape(0)
    # the overview has one panel (probability) where the LRP run's has two
    w_none = Image.open(base.with_suffix(".png")).width
    w_lrp = Image.open(runs["out"] / "lrp" / "small.png").width
    assert w_none < 0.6 * w_lrp


def test_predictor_matches_the_explainer(tiny_model: Path) -> None:
    import torch

    from pathxai.explain import Explainer
    from pathxai.model import load_model_with_card

    model, _card = load_model_with_card(tiny_model)
    x = torch.randn(5, 3, 64, 64)
    with Explainer(model, "lrp", target_class=1) as ex:
        ref = ex(x).probabilities
    out = Predictor(model, channels_last=True)(x, 1)
    assert out.relevance is None
    np.testing.assert_allclose(out.probabilities, ref, atol=1e-5)


def test_workers_give_the_same_store(
    tiny_model: Path, small_slide: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    res = heatmap_slide(small_slide, tmp_path, _settings(tiny_model, method="none", workers=1, exports=()))
    with HeatmapStore.open(res.outputs["h5"]) as st, HeatmapStore.open(runs["none"]) as ref:
        assert not st.has_relevance
        np.testing.assert_allclose(st.probabilities, ref.probabilities, atol=1e-6)


def test_resume_and_method_guard(
    tiny_model: Path, small_slide: Path, runs: dict[str, Path], tmp_path: Path
) -> None:
    seen: list[int] = []

    def stop_after_two(n: int) -> None:
        seen.append(n)
        if len(seen) == 2:
            raise KeyboardInterrupt

    settings = _settings(tiny_model, method="none", exports=())
    with pytest.raises(KeyboardInterrupt):
        heatmap_slide(small_slide, tmp_path, settings, progress=stop_after_two)
    partial = tmp_path / "small.partial.h5"
    assert HeatmapStore.progress(partial)[0] == 32
    with HeatmapStore.open(partial) as st:
        assert not st.has_relevance and st.n_levels == 0
    # an LRP run does not continue (or throw away) the probability-only partial store
    with pytest.raises(StoreMismatchError):
        heatmap_slide(small_slide, tmp_path, _settings(tiny_model, exports=()))
    res = heatmap_slide(small_slide, tmp_path, settings)
    assert res.status == "done" and res.summary["resumed"] is True
    with HeatmapStore.open(res.outputs["h5"]) as st, HeatmapStore.open(runs["none"]) as ref:
        np.testing.assert_array_equal(st.probabilities, ref.probabilities)
        np.testing.assert_array_equal(st.probability(0), ref.probability(0), strict=False)


def test_write_batch_requires_relevance_only_where_kept(tmp_path: Path) -> None:
    geo = {"coords": np.zeros((2, 2)), "m_coords": np.zeros((2, 2)), "t_index": np.zeros((2, 2))}
    none = HeatmapStore.create(
        tmp_path / "a.h5", **geo, tissue=np.ones(2), n_classes=2, tile_px=None, attrs={}
    )
    with none:
        none.write_batch(0, np.full((2, 2), 0.5), None)
        assert none.done.all()
    lrp = HeatmapStore.create(tmp_path / "b.h5", **geo, tissue=np.ones(2), n_classes=2, tile_px=4, attrs={})
    with lrp, pytest.raises(ValueError, match="relevance maps"):
        lrp.write_batch(0, np.full((2, 2), 0.5), None)


def test_viewer_offers_what_the_store_has(runs: dict[str, Path]) -> None:
    from pathxai.viewer.region import read_tile
    from pathxai.viewer.tiles import LAYERS, store_layers, store_vmax

    with HeatmapStore.open(runs["none"]) as st, HeatmapStore.open(runs["lrp"]) as ref:
        assert store_layers(st.attrs) == ("probability",) and store_layers(ref.attrs) == LAYERS
        assert store_vmax(st) == 1.0
        view = read_tile(st, st.attrs["slide"], 0)
        assert view.tile_relevance is None and view.method == "none"
        assert read_tile(ref, ref.attrs["slide"], 0).tile_relevance is not None


def test_viewer_tile_server_refuses_the_missing_layer(runs: dict[str, Path]) -> None:
    from pathxai.viewer.catalog import make_roots
    from pathxai.viewer.server import route
    from pathxai.viewer.tiles import TileService

    svc = TileService(make_roots(runs["out"]))
    try:
        status, _, body = route(svc, "/tok/overlay/tile/8/0_0.png?store=none/small.h5&layer=relevance", "tok")
        assert status == 404 and b"no relevance" in body
        status, ctype, _ = route(
            svc, "/tok/overlay/tile/8/0_0.png?store=none/small.h5&layer=probability", "tok"
        )
        assert status == 200 and ctype == "image/png"
    finally:
        svc.close()


def test_audit_says_the_store_has_no_relevance(runs: dict[str, Path]) -> None:
    from pathxai.audit.heat import heat_from_store

    with pytest.raises(AuditError, match="no relevance") as info:
        heat_from_store(runs["out"] / "none", "small", (10, 10), 8.0, 0.5, None)
    assert "--method lrp" in str(info.value.hint)
    heat = heat_from_store(runs["out"] / "lrp", "small", (10, 10), 8.0, 0.5, None)
    assert heat.relevance.shape == (10, 10)


def test_cli_accepts_none_and_lists_it(
    tiny_model: Path, small_slide: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cli"
    rc = main(
        [
            "heatmap",
            str(small_slide),
            "--model",
            str(tiny_model),
            "--method",
            "none",
            "--out",
            str(out),
            "--workers",
            "0",
        ]
    )
    assert rc == 0
    with HeatmapStore.open(out / "small.h5") as st:
        assert st.attrs["method"] == "none" and not st.has_relevance
    assert (
        main(
            ["heatmap", str(small_slide), "--model", str(tiny_model), "--method", "bogus", "--out", str(out)]
        )
        == 2
    )
    assert "none" in capsys.readouterr().err.split("valid:")[-1]


def test_small_slides_are_computed_in_process(tiny_model: Path, small_slide: Path) -> None:
    from pathxai.heatmap.settings import IN_PROCESS_TILES, TileGeometry
    from pathxai.model import load_model_with_card

    card = load_model_with_card(tiny_model)[1]
    auto = HeatmapSettings(model=str(tiny_model))
    with open_slide(small_slide) as slide:  # 800 x 600 px at 1 µm/px: 13 x 10 = 130 grid tiles of 64 px
        geometry = TileGeometry.of(auto, card)
        assert computes_here(auto, slide, geometry)
        assert not computes_here(HeatmapSettings(model=str(tiny_model), workers=2), slide, geometry)
        fine = TileGeometry(geometry.mpp / 2, geometry.size, geometry.size, 4)  # 4x the tiles: 520
        assert 520 > IN_PROCESS_TILES and not computes_here(auto, slide, fine)
        assert computes_here(HeatmapSettings(model=str(tiny_model), method="none"), slide, fine)
