"""Plain strip TIFFs (Kather 2016 tiles, 16-bit RGB) open as images, not as "corrupt" slides."""

from __future__ import annotations

import contextlib
import csv
import io
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathxai.cli import main
from pathxai.errors import SlideError
from pathxai.slide import ArraySlide, OpenSlideSlide, is_plain_image, open_slide
from pathxai.slide.plain_tiff import is_plain_tiff, to_rgb8
from pathxai.slide.testing import write_synthetic_slide

REPO = Path(__file__).resolve().parents[2]


def _rgb(h: int = 150, w: int = 150, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _read(path: Path, mpp: float | None = 0.5) -> np.ndarray:
    with open_slide(path, mpp=mpp) as s:
        w, h = s.dimensions
        return s.read_l0_region(0, 0, w, h, w, h)


def _info(path: Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["info", str(path)])
    return code, out.getvalue(), err.getvalue()


def test_packbits_strip_tiff_like_kather_opens_with_exact_pixels(tmp_path: Path) -> None:
    rgb = _rgb()
    p = tmp_path / "tile.tif"
    tifffile.imwrite(p, rgb, photometric="rgb", compression="packbits", rowsperstrip=18, resolution=(72, 72))
    assert is_plain_tiff(p) and is_plain_image(p)
    with open_slide(p) as s:
        assert isinstance(s, ArraySlide) and s.dimensions == (150, 150)
        assert s.resolution.mpp is None and "implausible" in s.resolution.note  # 72 dpi is no scan
    assert np.array_equal(_read(p), rgb)
    code, out, err = _info(p)
    assert code == 0 and "150 x 150" in out and "corrupt" not in out + err


@pytest.mark.parametrize("compression", [None, "zlib", "lzw"])
def test_16bit_rgb_strip_tiff_scaled_over_the_full_range(tmp_path: Path, compression: str | None) -> None:
    rgb16 = np.random.default_rng(1).integers(0, 65536, (40, 50, 3)).astype(np.uint16)
    rgb16[0, 0] = (0, 65535, 32768)
    p = tmp_path / "rgb16.tif"
    tifffile.imwrite(p, rgb16, photometric="rgb", compression=compression, rowsperstrip=7)
    px = _read(p)
    assert np.array_equal(px, np.rint(rgb16 * (255 / 65535)).astype(np.uint8))
    assert tuple(px[0, 0]) == (0, 255, 128)
    assert _info(p)[0] == 0


def test_12bit_data_in_16bit_samples_uses_the_declared_maximum(tmp_path: Path) -> None:
    rgb12 = np.random.default_rng(2).integers(0, 4096, (20, 30, 3)).astype(np.uint16)
    p = tmp_path / "rgb12.tif"
    tifffile.imwrite(p, rgb12, photometric="rgb", extratags=[(281, "H", 1, 4095, False)])
    assert np.array_equal(_read(p), np.rint(rgb12 * (255 / 4095)).astype(np.uint8))


def test_dim_16bit_image_is_not_stretched(tmp_path: Path) -> None:
    p = tmp_path / "dim.tif"
    tifffile.imwrite(p, np.full((10, 10, 3), 1000, np.uint16), photometric="rgb")
    assert (_read(p) == 4).all()  # 1000/65535*255, not stretched to white


def test_dim_16bit_png_is_not_stretched_either(tmp_path: Path) -> None:
    Image.fromarray(np.full((6, 6), 1000, np.uint16)).save(tmp_path / "dim.png")
    assert (_read(tmp_path / "dim.png") == 4).all()


def test_gray_palette_alpha_and_min_is_white(tmp_path: Path) -> None:
    g = np.arange(64, dtype=np.uint8).reshape(8, 8) * 4
    tifffile.imwrite(tmp_path / "g.tif", g, photometric="minisblack")
    assert np.array_equal(_read(tmp_path / "g.tif"), np.repeat(g[..., None], 3, axis=2))
    tifffile.imwrite(tmp_path / "w.tif", g, photometric="miniswhite")
    assert np.array_equal(_read(tmp_path / "w.tif")[..., 0], 255 - g)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[2:6, 2:6] = (120, 40, 150, 255)
    tifffile.imwrite(tmp_path / "a.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    px = _read(tmp_path / "a.tif")
    assert (px[0, 0] == 255).all() and tuple(px[3, 3]) == (120, 40, 150)
    Image.fromarray(_rgb(16, 16)).convert("P").save(tmp_path / "p.tif")
    with Image.open(tmp_path / "p.tif") as im:
        want = np.asarray(im.convert("RGB"))
    assert np.array_equal(_read(tmp_path / "p.tif"), want)


def test_float_strip_tiff_is_an_unsupported_format(tmp_path: Path) -> None:
    p = tmp_path / "f.tif"
    tifffile.imwrite(p, np.zeros((8, 8, 3), np.float32), photometric="rgb")
    with pytest.raises(SlideError, match=r"unsupported pixel format.*float32") as exc:
        open_slide(p)
    assert "8-bit" in str(exc.value)


def test_truncated_strip_tiff_says_truncated(tmp_path: Path) -> None:
    p = tmp_path / "tile.tif"
    tifffile.imwrite(p, _rgb(), photometric="rgb", rowsperstrip=18)  # directory before the pixels
    p.write_bytes(p.read_bytes()[:30_000])
    assert is_plain_tiff(p)
    with pytest.raises(SlideError, match="truncated"):
        open_slide(p)
    code, _, err = _info(p)
    assert code == 2 and "truncated" in err and "Traceback" not in err


def test_resolution_tags_in_centimetres_are_used_when_plausible(tmp_path: Path) -> None:
    p = tmp_path / "cm.tif"
    tifffile.imwrite(
        p, _rgb(20, 20), photometric="rgb", resolution=(20_000, 20_000), resolutionunit="CENTIMETER"
    )
    with open_slide(p) as s:
        assert s.resolution.source == "metadata" and s.mpp == pytest.approx(0.5)
    with open_slide(p, mpp=0.25) as s:
        assert s.resolution.source == "override" and s.mpp == 0.25


def test_tiled_tiffs_are_still_slides(tmp_path: Path) -> None:
    p = write_synthetic_slide(tmp_path / "s.tiff", 512, 384, mpp=0.5, levels=2, tile=128)
    assert not is_plain_tiff(p) and not is_plain_image(p)
    with open_slide(p) as s:
        assert isinstance(s, OpenSlideSlide)
    notes = tmp_path / "notes.tiff"
    notes.write_text("not pixels\n" * 20)
    assert not is_plain_image(notes)


def test_to_rgb8_refuses_cmyk() -> None:
    with pytest.raises(SlideError, match="photometric 5"):
        to_rgb8(np.zeros((2, 2, 4), np.uint8), 5, 8)


@pytest.mark.real_data
def test_real_kather_tiles_open_with_the_pixels_pil_decodes(kather_dir: Path) -> None:
    rows = list(csv.DictReader(open(REPO / "data_manifests" / "kather2016_samples.csv", newline="")))
    assert len(rows) == 24
    for r in rows:
        p = kather_dir / r["path"]
        assert is_plain_image(p), p
        with Image.open(p) as im:
            want = np.asarray(im.convert("RGB"))
        px = _read(p, mpp=float(r["mpp"]))
        assert px.shape == (150, 150, 3) and np.array_equal(px, want), p
    code, out, _ = _info(kather_dir / rows[0]["path"])
    assert code == 0 and "150 x 150" in out


@pytest.mark.real_data
def test_audit_reads_the_kather_manifest_as_an_image_cohort(kather_dir: Path) -> None:
    from pathxai.manifest import read_manifest
    from pathxai.pipeline.audit import build_items

    man = read_manifest(REPO / "data_manifests" / "kather2016_samples.csv")
    items, kind = build_items(man, kather_dir, None, None, "", None, None, progress=False)
    assert kind == "image" and len(items) == 24
    assert all(it.image.shape[2] == 3 and it.image.dtype == np.uint8 for it in items)
