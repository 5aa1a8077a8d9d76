"""Bad-input catalogue, slides: every broken or odd slide gives one clear line, exit 2, no output.

Each case runs ``pathxai info`` and ``pathxai tiles`` (the landed slide entry points); the
heatmap batch CLI has its own cases in ``test_bad_heatmap_inputs.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from pathxai.errors import SlideError
from pathxai.slide import open_slide
from pathxai.slide.testing import write_synthetic_slide
from pathxai.tiling import iter_tiles, tile_slide

from .conftest import assert_clean_failure, leftovers, run_cli, run_main, unprivileged_prefix


def _tiles(slide: Path, out_dir: Path, *extra: str) -> tuple[object, Path]:
    out = out_dir / "coords.h5"
    return run_main(
        "tiles", slide, "--mpp", "1.0", "--size", "224", "--out", out, "--workers", "0", *extra
    ), out


def _both_fail(slide: Path, tmp_path: Path, *mention: str) -> None:
    """``info`` and ``tiles`` both fail cleanly naming the file and ``mention``; nothing is written."""
    assert_clean_failure(run_main("info", slide), slide, *mention)
    out_dir = tmp_path / "out"
    r, _ = _tiles(slide, out_dir)
    assert_clean_failure(r, slide, *mention)
    assert leftovers(out_dir) == []


# ---- files that are not slides ------------------------------------------------------------
def test_png_renamed_svs(tmp_path: Path) -> None:
    bad = tmp_path / "scan.svs"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad, format="PNG")
    _both_fail(bad, tmp_path, "not a whole-slide image", "PNG")


def test_text_file_with_tiff_extension(tmp_path: Path) -> None:
    bad = tmp_path / "notes.tiff"
    bad.write_text("patient notes, not pixels\n" * 50)
    _both_fail(bad, tmp_path, "not a whole-slide image")


def test_empty_file(tmp_path: Path) -> None:
    bad = tmp_path / "empty.svs"
    bad.touch()
    _both_fail(bad, tmp_path, "empty file", "incomplete")


def test_directory(tmp_path: Path) -> None:
    bad = tmp_path / "folder.svs"
    bad.mkdir()
    _both_fail(bad, tmp_path, "is a directory")


def test_missing_file(tmp_path: Path) -> None:
    _both_fail(tmp_path / "nowhere.svs", tmp_path, "no such file")


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_generated_tiff(small_slide: Path, tmp_path: Path, keep: float) -> None:
    data = small_slide.read_bytes()
    bad = tmp_path / "cut.tiff"
    bad.write_bytes(data[: int(len(data) * keep)])
    _both_fail(bad, tmp_path, "truncated", "checksum")


@pytest.mark.parametrize("nbytes", [1_000_000, 30_000])
def test_truncated_real_svs(cmu_slide: Path, tmp_path: Path, nbytes: int) -> None:
    bad = tmp_path / "CMU-cut.svs"
    with open(cmu_slide, "rb") as fh:
        bad.write_bytes(fh.read(nbytes))
    _both_fail(bad, tmp_path, "truncated")


def test_truncated_pixel_data_caught_at_open(tmp_path: Path) -> None:
    """Header intact but the smallest level's pixels gone: refused at open, not mid-run."""
    path = write_synthetic_slide(
        tmp_path / "s.tiff", 1024, 768, mpp=0.5, levels=2, tile=128, compression="zlib"
    )
    with tifffile.TiffFile(path) as tif:
        last = tif.pages[-1]
        off, cnt = last.dataoffsets[0], last.databytecounts[0]
    with open(path, "r+b") as fh:
        fh.seek(off)
        fh.write(b"\x00" * cnt)
    _both_fail(path, tmp_path, "pixel data unreadable")


# ---- permissions --------------------------------------------------------------------------
def test_unreadable_slide_permissions(small_slide: Path, tmp_path: Path) -> None:
    bad = tmp_path / "locked.tiff"
    shutil.copy(small_slide, bad)
    bad.chmod(0)
    prefix = unprivileged_prefix()
    assert_clean_failure(run_cli("info", bad, prefix=prefix), bad, "permission denied", "readable")
    r = run_cli("tiles", bad, "--mpp", "1", "--out", tmp_path / "o" / "c.h5", prefix=prefix)
    assert_clean_failure(r, bad, "permission denied", "readable")
    assert leftovers(tmp_path / "o") == []


def test_unwritable_output_directory(small_slide: Path, tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    prefix = unprivileged_prefix()
    r = run_cli("tiles", small_slide, "--mpp", "1", "--out", locked / "c.h5", "--workers", "0", prefix=prefix)
    assert_clean_failure(r, "permission denied", locked)
    assert leftovers(locked) == []


# ---- slides that open but give nothing to tile ------------------------------------------
def test_slide_smaller_than_one_tile(tmp_path: Path) -> None:
    tiny = write_synthetic_slide(
        tmp_path / "tiny.tiff", 100, 80, mpp=0.5, levels=1, tile=16, compression="zlib"
    )
    assert run_main("info", tiny).returncode == 0  # describing it is fine
    r, _ = _tiles(tiny, tmp_path / "out")
    assert_clean_failure(r, tiny, "smaller than one 224 px tile", "--size")
    assert leftovers(tmp_path / "out") == []


def test_slide_without_tissue(tmp_path: Path) -> None:
    blank = write_synthetic_slide(
        tmp_path / "blank.tiff",
        1024,
        768,
        mpp=0.5,
        levels=2,
        tile=128,
        compression="zlib",
        blobs=[(-9e3, -9e3, 1, 1)],
    )
    info = run_main("info", blank)
    assert info.returncode == 0 and "0.0%" in info.stdout
    r, _ = _tiles(blank, tmp_path / "out")
    assert_clean_failure(r, blank, "no tissue")
    assert leftovers(tmp_path / "out") == []


def test_min_tissue_too_high(small_slide: Path, tmp_path: Path) -> None:
    r, _ = _tiles(small_slide, tmp_path / "out", "--min-tissue", "1.0")
    assert_clean_failure(r, small_slide, "lower --min-tissue")
    assert leftovers(tmp_path / "out") == []


# ---- resolution --------------------------------------------------------------------------
@pytest.mark.parametrize("mpp", [1000.0, 0.001])
def test_absurd_mpp_in_metadata(tmp_path: Path, mpp: float) -> None:
    path = write_synthetic_slide(
        tmp_path / "odd.tiff", 512, 512, mpp=mpp, levels=1, tile=128, compression="zlib"
    )
    r, _ = _tiles(path, tmp_path / "out")
    assert_clean_failure(r, path, "implausible", "--slide-mpp")
    assert leftovers(tmp_path / "out") == []
    # the override rescues it
    r, out = _tiles(path, tmp_path / "ok", "--slide-mpp", "0.5")
    assert r.returncode == 0, r.stderr
    assert out.is_file()


def test_missing_mpp_real_tcga(tcga_slide: Path, tmp_path: Path) -> None:
    r, _ = _tiles(tcga_slide, tmp_path / "out")
    assert_clean_failure(r, tcga_slide, "unknown resolution", "--slide-mpp")
    assert leftovers(tmp_path / "out") == []


def test_bogus_mpp_real_bracs(bracs_slide: Path, tmp_path: Path) -> None:
    r, _ = _tiles(bracs_slide, tmp_path / "out")
    assert_clean_failure(r, bracs_slide, "1000", "implausible")


@pytest.mark.parametrize(
    ("option", "value", "mention"),
    [
        ("--slide-mpp", "1e9", "not a plausible resolution"),
        ("--slide-mpp", "0", "positive"),
        ("--slide-mpp", "nan", "positive"),
        ("--slide-mpp", "inf", "plausible"),
        ("--mpp", "1e-6", "not a plausible resolution"),
        ("--mpp", "-1", "positive"),
        ("--workers", "-1", ">= 0"),
        ("--min-tissue", "2", "[0, 1]"),
    ],
)
def test_absurd_cli_values_rejected_by_argparse(
    small_slide: Path, tmp_path: Path, option: str, value: str, mention: str
) -> None:
    args = ["tiles", str(small_slide), "--mpp", "1", "--out", str(tmp_path / "o" / "c.h5"), option, value]
    assert_clean_failure(run_main(*args), option, mention, usage_ok=True)
    assert leftovers(tmp_path / "o") == []


# ---- a corrupted tile inside an otherwise valid slide -------------------------------------
def _corrupt_one_tile(tmp_path: Path) -> tuple[Path, tuple[int, int]]:
    """A 1024x768 slide whose level-0 TIFF tile (col 4, row 3) holds garbage bytes."""
    path = write_synthetic_slide(
        tmp_path / "c.tiff", 1024, 768, mpp=0.5, levels=2, tile=128, compression="zlib"
    )
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        cols = -(-page.imagewidth // page.tilewidth)
        idx = 3 * cols + 4
        off, cnt = page.dataoffsets[idx], page.databytecounts[idx]
    with open(path, "r+b") as fh:
        fh.seek(off)
        fh.write(b"\xff" * cnt)
    return path, (4 * 128, 3 * 128)


@pytest.mark.parametrize(
    ("workers", "decoder", "error"),
    [
        (0, "auto", "cannot decode TIFF tile"),
        (2, "auto", "cannot decode TIFF tile"),
        (0, "openslide", "cannot read region"),
    ],
)
def test_corrupt_tile_reported_and_stream_continues(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int, decoder: str, error: str
) -> None:
    monkeypatch.setenv("PATHXAI_DECODER", decoder)  # worker processes inherit it
    path, (l0_x, l0_y) = _corrupt_one_tile(tmp_path)
    with open_slide(path) as slide:
        grid, _ = tile_slide(slide, 0.5, 128, min_tissue=0.0)
        with pytest.raises(SlideError, match=error):
            slide.read_l0_region(l0_x, l0_y, 128, 128, 128, 128)
        # the next read works (OpenSlide's handle is reopened after an error; tifffile keeps no state)
        assert slide.read_l0_region(0, 0, 128, 128, 128, 128).shape == (128, 128, 3)
    seen, failed = 0, []
    for batch in iter_tiles(str(path), grid, batch_size=8, workers=workers):
        seen += len(batch)
        failed += [(batch.specs[i], msg) for i, msg in batch.failed]
        assert batch.ok.sum() == len(batch) - len(batch.failed)
    assert seen == len(grid)
    assert len(failed) == 1
    spec, msg = failed[0]
    assert (spec.l0_x, spec.l0_y) == (l0_x, l0_y)
    assert str(path) in msg and "(512, 384)" in msg


def test_corrupt_tile_cli_reports_and_exits_nonzero(tmp_path: Path) -> None:
    path, _ = _corrupt_one_tile(tmp_path)
    out = tmp_path / "out" / "c.h5"
    r = run_main(
        "tiles", path, "--mpp", "0.5", "--size", "128", "--min-tissue", "0", "--out", out, "--workers", "0"
    )
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    bad = [ln for ln in r.stdout.splitlines() if ln.startswith("unreadable:")]
    assert len(bad) == 1 and "(512, 384)" in bad[0]
    assert out.is_file()  # every coordinate is still written; the bad tile is reported, not hidden
    assert leftovers(out.parent, {"c.h5", "c.png"}) == []


# ---- --debug shows the traceback, and the subprocess CLI behaves the same ----------------
def test_subprocess_one_line_and_debug_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "scan.svs"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad, format="PNG")
    assert_clean_failure(run_cli("info", bad), bad, "PNG")
    r = run_cli("info", bad, debug=True)
    assert r.returncode == 2 and "Traceback" in r.stderr and "SlideError" in r.stderr


def test_unknown_decoder_in_environment_is_one_line(
    small_slide: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATHXAI_DECODER", "fast")
    assert_clean_failure(
        run_main("info", small_slide),
        small_slide,
        "unknown pixel decoder 'fast'",
        "PATHXAI_DECODER",
        code=None,
    )
