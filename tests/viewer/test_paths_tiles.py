"""Viewer confinement, deep-zoom tiles and the tile server, on a real tiny heatmap run."""

from __future__ import annotations

import io
import os
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pathxai.render.heatmap import probability_rgba
from pathxai.slide import ArraySlide, open_slide
from pathxai.slide.deepzoom import DeepZoom
from pathxai.store import HeatmapStore
from pathxai.viewer.catalog import make_roots, scan
from pathxai.viewer.paths import ConfinementError, Roots, resolve_under
from pathxai.viewer.server import TileServer, route
from pathxai.viewer.tiles import TileService


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    root = tmp_path / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.txt").write_text("ok")
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, root / "escape.txt")
    os.symlink(root / "sub" / "ok.txt", root / "inside-link.txt")
    os.symlink(tmp_path, root / "dirlink")
    return {"root": root, "outside": outside}


@pytest.mark.parametrize(
    "bad",
    [
        "../secret.txt",
        "sub/../../secret.txt",
        "sub/..\\..\\secret.txt",
        "/etc/passwd",
        "\\etc\\passwd",
        "C:/Windows/win.ini",
        "%2e%2e/secret.txt",
        "..%2fsecret.txt",
        "%252e%252e%252fsecret.txt",
        "sub%2fok.txt",
        "escape.txt",
        "dirlink/secret.txt",
        "sub\x00/ok.txt",
        "",
        "sub",
        "missing.txt",
    ],
)
def test_resolve_under_rejects_escapes(tree: dict[str, Path], bad: str) -> None:
    with pytest.raises(ConfinementError):
        resolve_under(tree["root"], bad)


def test_resolve_under_accepts_files_inside(tree: dict[str, Path]) -> None:
    root = tree["root"].resolve()
    assert resolve_under(tree["root"], "sub/ok.txt") == root / "sub" / "ok.txt"
    assert resolve_under(tree["root"], "./sub//ok.txt") == root / "sub" / "ok.txt"
    assert resolve_under(tree["root"], "inside-link.txt") == root / "sub" / "ok.txt"


def test_roots_locate_slide_refuses_links_out(tree: dict[str, Path]) -> None:
    roots = Roots.make(tree["root"])
    assert roots.locate_slide(tree["root"] / "sub" / "ok.txt") == (0, "sub/ok.txt")
    assert roots.locate_slide(tree["root"] / "escape.txt") is None
    assert roots.locate_slide(tree["outside"]) is None
    with pytest.raises(ConfinementError):
        roots.slide_file(5, "sub/ok.txt")


def test_deepzoom_levels_and_tiles_match_the_slide() -> None:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 255, size=(300, 500, 3), dtype=np.uint8)
    dz = DeepZoom(ArraySlide(pixels, mpp=0.5), tile_size=128, overlap=1)
    assert dz.max_level == 9 and dz.levels[-1].z_width == 500 and dz.levels[0].z_width == 1
    assert (dz.levels[-1].t_cols, dz.levels[-1].t_rows) == (4, 3)
    # full-resolution tile (1, 1): overlap on both sides, exact pixels
    tile = dz.tile(9, 1, 1)
    assert tile.shape == (130, 130, 3)
    np.testing.assert_array_equal(tile, pixels[127:257, 127:257])
    last = dz.tile(9, 3, 2)
    np.testing.assert_array_equal(last, pixels[255:300, 383:500])
    assert 'Width="500"' in dz.dzi() and 'Overlap="1"' in dz.dzi()
    with pytest.raises(ValueError):
        dz.tile(9, 4, 0)
    with pytest.raises(ValueError):
        dz.tile(10, 0, 0)


def test_catalog_finds_the_store_and_its_slide(viewer_run: dict[str, Path]) -> None:
    cat = scan(make_roots(viewer_run["out"]))
    (entry,) = cat.slides
    assert entry.slide_id == "synth" and entry.store_rel == "heatmaps/synth.h5"
    assert entry.slide_loc is not None
    # without the configured slide root, the slide is outside every root: not served
    (viewer_run["out"] / "pathxai-view.json").rename(viewer_run["out"] / "cfg.bak")
    try:
        assert scan(make_roots(viewer_run["out"])).slides[0].slide_loc is None
    finally:
        (viewer_run["out"] / "cfg.bak").rename(viewer_run["out"] / "pathxai-view.json")


def test_overlay_tiles_align_with_the_canvas(viewer_run: dict[str, Path]) -> None:
    roots = make_roots(viewer_run["out"])
    svc = TileService(roots)
    try:
        geom = svc.overlay_geometry("heatmaps/synth.h5")
        top = geom.max_level
        with HeatmapStore.open(viewer_run["store"]) as store:
            pp = store.l0_per_pixel(0)
            prob = store.probability(0)
            coords = store.coords
            probs = store.probabilities
        # the full-resolution overlay tile at the first tissue tile's centre shows that tile's probability
        size_l0 = float(pp) * 16  # 64 px tiles, canvas downsample 4 -> 16 canvas px per tile
        x, y = coords[int(np.argmax(probs[:, 1]))] + size_l0 / 2
        col, row = int(x // 254), int(y // 254)
        rgba = svc.overlay_tile_rgba("heatmaps/synth.h5", "probability", top, col, row)
        bx, by, _, _ = geom.tile_bounds(top, col, row)
        px = rgba[int(y) - by, int(x) - bx]
        assert px[3] == 255  # opaque where there is tissue
        expected = prob[int(y // pp), int(x // pp)]
        assert np.isfinite(expected)
        np.testing.assert_array_equal(px, probability_rgba(np.array([[expected]]))[0, 0])
        # glass (slide corner) is transparent in both layers
        for layer in ("relevance", "probability"):
            corner = svc.overlay_tile_rgba("heatmaps/synth.h5", layer, top, 0, 0)
            assert corner[0, 0, 3] == 0
        png = svc.overlay_tile("heatmaps/synth.h5", "relevance", top - 2, 0, 0)
        assert Image.open(io.BytesIO(png)).mode == "RGBA"
    finally:
        svc.close()


def test_route_confines_and_serves(viewer_run: dict[str, Path]) -> None:
    roots = make_roots(viewer_run["out"])
    svc = TileService(roots)
    cat = scan(roots)
    root_i, rel = cat.slides[0].slide_loc  # type: ignore[misc]
    try:
        status, ctype, body = route(svc, f"/tok/slide/tile/11/0_0.jpeg?root={root_i}&path={rel}", "tok")
        assert status == 200 and ctype == "image/jpeg"
        with open_slide(viewer_run["slide"]) as s:
            assert Image.open(io.BytesIO(body)).size == (255, 255) and s.dimensions == (1536, 1024)
        for bad in (
            f"/tok/slide/tile/11/0_0.jpeg?root={root_i}&path=../out/heatmaps/synth.h5",
            f"/tok/slide/tile/11/0_0.jpeg?root={root_i}&path=%2E%2E%2Fsecret",
            f"/tok/slide/tile/11/0_0.jpeg?root={root_i}&path=%252e%252e%252fsecret",
            f"/tok/slide/tile/11/0_0.jpeg?root={root_i}&path=/etc/passwd",
            "/tok/overlay/tile/11/0_0.png?store=../../etc/passwd&layer=relevance",
            "/tok/overlay/tile/11/0_0.png?store=%2Fetc%2Fpasswd&layer=relevance",
            # a valid request without the right token
            f"/slide/tile/11/0_0.jpeg?root={root_i}&path={rel}",
            f"/other/slide/tile/11/0_0.jpeg?root={root_i}&path={rel}",
            f"/tok%2F/slide/tile/11/0_0.jpeg?root={root_i}&path={rel}",
        ):
            assert route(svc, bad, "tok")[0] == 403, bad
        assert route(svc, "/tok/overlay/tile/11/0_0.png?store=heatmaps/synth.h5&layer=evil", "tok")[0] == 400
        assert route(svc, "/tok/../../etc/passwd", "tok")[0] == 404
        assert route(svc, "/../../etc/passwd", "tok")[0] == 403
        assert route(svc, "/tok/slide/info?root=0", "tok")[0] == 400
        assert route(svc, "/health", "tok")[0] == 200
    finally:
        svc.close()


def test_tile_server_binds_localhost_and_serves_over_http(viewer_run: dict[str, Path]) -> None:
    roots = make_roots(viewer_run["out"])
    server = TileServer(TileService(roots))
    try:
        assert server.host == "127.0.0.1"
        base = server.url.rsplit("/", 1)[0]
        with urllib.request.urlopen(f"{base}/health", timeout=5) as resp:
            assert resp.read() == b"ok"
            assert resp.headers["X-Content-Type-Options"] == "nosniff"
        url = f"{server.url}/overlay/tile/5/0_0.png?store=heatmaps/synth.h5&layer=probability"
        with urllib.request.urlopen(url, timeout=10) as resp:
            assert resp.headers["Content-Type"] == "image/png"
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(
                f"{server.url}/overlay/tile/5/0_0.png?store=..%2F..%2Fx&layer=relevance", timeout=5
            )
        assert err.value.code == 403
    finally:
        server.close()


def test_replaced_store_is_served_fresh_not_from_the_open_one(
    tmp_path: Path, viewer_run: dict[str, Path]
) -> None:
    """``heatmap --overwrite`` while the viewer runs: the tile server reopens the new store and the
    catalogue gives the overlay URLs a new version, so browsers do not reuse cached tiles (issue 21)."""
    from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_slide

    out = tmp_path / "out"
    first = HeatmapSettings(model=str(viewer_run["model"]), workers=0, batch_size=16, exports=())
    heatmap_slide(viewer_run["slide"], out, first)
    roots = make_roots(out)
    svc = TileService(roots)
    try:
        v1 = scan(roots).slides[0].store_version
        top = svc.overlay_geometry("synth.h5").max_level
        old = svc.overlay_tile_rgba("synth.h5", "relevance", top - 1, 0, 0)
        second = HeatmapSettings(
            model=str(viewer_run["model"]),
            workers=0,
            batch_size=16,
            exports=(),
            method="gradient",
            overwrite=True,
        )
        heatmap_slide(viewer_run["slide"], out, second)
        entry = scan(roots).slides[0]
        assert entry.attrs["method"] == "gradient" and entry.store_version != v1
        served = svc.overlay_tile_rgba("synth.h5", "relevance", top - 1, 0, 0)
        fresh = TileService(roots)
        try:
            expected = fresh.overlay_tile_rgba("synth.h5", "relevance", top - 1, 0, 0)
        finally:
            fresh.close()
        assert not np.array_equal(old, expected)  # the two methods draw different maps
        np.testing.assert_array_equal(served, expected)
    finally:
        svc.close()
