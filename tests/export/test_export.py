"""Exports and rendering: GeoJSON round trip, pyramidal TIFF through OpenSlide, PNG, colour scaling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import draw

from pathxai.errors import StoreError
from pathxai.export import mask_features, read_geojson, write_geojson, write_png, write_pyramid_tiff
from pathxai.render.heatmap import blend, overview_image, probability_rgba, relevance_rgba, robust_vmax
from pathxai.slide import open_slide


def _rasterize(features: list[dict], shape: tuple[int, int], l0_per_pixel: float) -> np.ndarray:
    out = np.zeros(shape, dtype=bool)
    for f in features:
        rings = f["geometry"]["coordinates"]
        for i, ring in enumerate(rings):
            xy = np.asarray(ring) / l0_per_pixel - 0.5  # back to pixel-centre indices
            rr, cc = draw.polygon(xy[:, 1], xy[:, 0], shape)
            out[rr, cc] = i == 0  # holes clear
    return out


def test_geojson_roundtrip_in_level0_coordinates(tmp_path: Path) -> None:
    mask = np.zeros((60, 80), dtype=bool)
    rr, cc = draw.disk((20, 20), 12)
    mask[rr, cc] = True
    mask[35:55, 40:75] = True
    mask[42:48, 50:60] = False  # a hole
    mask[2, 70] = True  # a speck below min_area
    f = 16.0
    feats = mask_features(mask, f, "Tumor", (200, 0, 0), values=mask.astype(float), min_area_px=4)
    assert len(feats) == 2
    path = write_geojson(tmp_path / "r.geojson", feats, properties={"slide": "x"})
    back = read_geojson(path)
    doc = json.loads(path.read_text())
    assert doc["type"] == "FeatureCollection" and doc["properties"]["slide"] == "x"
    assert {b["properties"]["classification"]["name"] for b in back} == {"Tumor"}
    rect = next(b for b in back if len(b["geometry"]["coordinates"]) == 2)  # the one with a hole
    xs = np.concatenate([np.asarray(r)[:, 0] for r in rect["geometry"]["coordinates"]])
    ys = np.concatenate([np.asarray(r)[:, 1] for r in rect["geometry"]["coordinates"]])
    # the rectangle spans canvas pixels 40..74 x 35..54: level-0 edges at 40*f .. 75*f (half-pixel contour)
    assert xs.min() == pytest.approx(40 * f, abs=f) and xs.max() == pytest.approx(75 * f, abs=f)
    assert ys.min() == pytest.approx(35 * f, abs=f) and ys.max() == pytest.approx(55 * f, abs=f)
    raster = _rasterize(back, mask.shape, f)
    truth = mask.copy()
    truth[2, 70] = False
    iou = (raster & truth).sum() / (raster | truth).sum()
    assert iou > 0.9
    for b in back:
        assert b["properties"]["objectType"] == "annotation"
        ring = np.asarray(b["geometry"]["coordinates"][0])
        assert np.array_equal(ring[0], ring[-1])


def test_read_geojson_rejects_garbage(tmp_path: Path) -> None:
    bad = tmp_path / "bad.geojson"
    bad.write_text("{not json")
    with pytest.raises(StoreError, match="GeoJSON"):
        read_geojson(bad)
    bad.write_text(json.dumps({"type": "FeatureCollection", "features": [{"geometry": {"type": "Point"}}]}))
    with pytest.raises(StoreError, match="Polygon"):
        read_geojson(bad)


def test_pyramid_tiff_opens_in_openslide(tmp_path: Path) -> None:
    shapes = [(600, 900), (300, 450), (150, 225)]
    yy, xx = np.mgrid[0:600, 0:900]
    level0 = np.stack([(xx % 256), (yy % 256), np.full_like(xx, 128)], axis=-1).astype(np.uint8)

    def tile_fn(level: int, y: int, x: int, h: int, w: int) -> np.ndarray:
        s = 2**level
        return np.ascontiguousarray(level0[::s, ::s][y : y + h, x : x + w])

    path = write_pyramid_tiff(tmp_path / "o.tif", shapes, tile_fn, mpp=4.0, compression="zlib")
    with open_slide(path) as slide:
        assert slide.vendor == "generic-tiff"
        assert slide.level_dimensions == ((900, 600), (450, 300), (225, 150))
        assert slide.mpp == pytest.approx(4.0, rel=1e-3)
        region = slide.read_l0_region(256, 100, 300, 200, 300, 200)
        assert np.array_equal(region, level0[100:300, 256:556])
    jpeg = write_pyramid_tiff(tmp_path / "j.tif", shapes[:1], tile_fn, mpp=4.0)
    with open_slide(jpeg) as slide:
        assert slide.level_count == 1
    assert not list(tmp_path.glob(".*part*"))


def test_colour_scaling_and_blend(tmp_path: Path) -> None:
    rel = np.array([[np.nan, -2.0, 0.0], [1.0, 2.0, 1000.0]], dtype=np.float32)
    vmax = robust_vmax(rel, 80)
    assert 2.0 <= vmax < 1000.0
    rgba = relevance_rgba(rel, 2.0)
    assert rgba[0, 0, 3] == 0 and rgba[0, 2, 3] == 0 and rgba[1, 1, 3] == 255
    assert rgba[0, 1, 2] > rgba[0, 1, 0] and rgba[1, 1, 0] > rgba[1, 1, 2]  # blue negative, red positive
    assert robust_vmax(np.full(3, np.nan)) > 0
    prob = probability_rgba(np.array([[np.nan, 0.0, 1.0]]))
    assert prob[0, 0, 3] == 0 and prob[0, 1, 3] == 255
    base = np.full((2, 3, 3), 100, np.uint8)
    out = blend(base, rgba, 1.0)
    assert np.array_equal(out[0, 0], [100, 100, 100]) and np.array_equal(out[1, 1], rgba[1, 1, :3])
    rgb = overview_image(
        np.full((40, 60, 3), 230, np.uint8), np.random.default_rng(0).random((10, 15)), rel, 2.0
    )
    png = write_png(tmp_path / "o.png", rgb)
    img = np.asarray(Image.open(png))
    assert img.shape[1] == 2 * 60 + 30 and img.shape[2] == 3


def test_simplify_chain_is_skimage_approximate_polygon() -> None:
    from scipy import ndimage
    from skimage.measure import approximate_polygon, find_contours

    from pathxai.export.geojson import simplify_chain

    rng = np.random.default_rng(0)
    n = 0
    for _ in range(40):
        m = np.zeros((40, 40))
        m[5:35, 5:35] = rng.random((30, 30)) > 0.4
        for c in find_contours(ndimage.binary_opening(m).astype(float), 0.5, fully_connected="high"):
            for tol in (0.0, 0.5, 1.0, 2.0):
                np.testing.assert_array_equal(simplify_chain(c, tol), approximate_polygon(c, tol))
                n += 1
    assert n > 100
