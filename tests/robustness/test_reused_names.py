"""A reused file name never gives another slide's result (issue 21).

Multi-site cohorts reuse file names (``site1/case01.png``, ``site2/case01.png``). A store records the
content fingerprint of its slide; a run whose slide has the same output name but other content is
refused in one line (exit 1, the first slide's outputs untouched), while a byte-identical copy under
another path is recognised as the same slide.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from pathxai.slide.fingerprint import slide_fingerprint

from .conftest import CliResult, run_main, save_tiny_model


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("reuse") / "model")


def _tissue_png(path: Path, seed: int) -> Path:
    """A 256 x 256 pink, tissue-like image whose texture depends on ``seed``."""
    rng = np.random.default_rng(seed)
    base = np.array([200, 120, 170], np.float32) if seed % 2 else np.array([150, 60, 140], np.float32)
    img = base + rng.normal(0, 25, (256, 256, 3))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path)
    return path


def _heatmap(slide: Path, out: Path, model: Path, *extra: str) -> CliResult:
    return run_main(
        "heatmap", slide, "--slide-mpp", "0.5", "--mpp", "0.5", "--model", model, "--out", out,
        "--workers", "0", "--exports", "", *extra,
    )  # fmt: skip


def test_fingerprint_tells_files_apart_and_copies_together(tmp_path: Path) -> None:
    a = _tissue_png(tmp_path / "site1" / "case01.png", 1)
    b = _tissue_png(tmp_path / "site2" / "case01.png", 2)
    c = tmp_path / "copy" / "other_name.png"
    c.parent.mkdir()
    shutil.copyfile(a, c)
    assert slide_fingerprint(a) != slide_fingerprint(b)
    assert slide_fingerprint(a) == slide_fingerprint(c)
    big = tmp_path / "big.bin"  # one byte changed in the middle of a large file changes the digest
    data = bytearray(np.random.default_rng(0).integers(0, 255, 3_000_000, dtype=np.uint8).tobytes())
    big.write_bytes(data)
    before = slide_fingerprint(big)
    data[1_500_000] ^= 1
    big.write_bytes(data)
    assert slide_fingerprint(big) != before


def test_second_slide_with_the_same_name_is_refused_not_skipped(tmp_path: Path, model: Path) -> None:
    first = _tissue_png(tmp_path / "site1" / "case01.png", 1)
    second = _tissue_png(tmp_path / "site2" / "case01.png", 2)
    out = tmp_path / "h"
    r1 = _heatmap(first, out, model)
    assert r1.returncode == 0, r1.stdout + r1.stderr
    summary = (out / "case01.json").read_text()
    store_bytes = (out / "case01.h5").read_bytes()

    r2 = _heatmap(second, out, model)
    assert r2.returncode == 1, r2.stdout + r2.stderr
    assert "skipped" not in r2.stdout
    text = r2.stdout + r2.stderr
    assert "another slide" in text and str(first) in text, text
    failures = json.loads((out / "failures.json").read_text())["failures"]
    assert [f["slide_id"] for f in failures] == ["case01"]
    # the first slide's finished outputs are untouched
    assert (out / "case01.json").read_text() == summary
    assert (out / "case01.h5").read_bytes() == store_bytes

    # with --overwrite the second slide gets its own result
    r3 = _heatmap(second, out, model, "--overwrite")
    assert r3.returncode == 0, r3.stdout + r3.stderr
    assert json.loads((out / "case01.json").read_text())["slide"] == str(second)
    with h5py.File(out / "case01.h5") as h5:
        assert h5.attrs["slide_fingerprint"] == slide_fingerprint(second)


def test_identical_copy_under_another_path_is_the_same_slide(tmp_path: Path, model: Path) -> None:
    first = _tissue_png(tmp_path / "a" / "case01.png", 1)
    copy = tmp_path / "b" / "case01.png"
    copy.parent.mkdir()
    shutil.copyfile(first, copy)
    out = tmp_path / "h"
    assert _heatmap(first, out, model).returncode == 0
    r = _heatmap(copy, out, model)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "skipped" in r.stdout


def test_partial_store_of_another_slide_is_kept_and_refused(tmp_path: Path, model: Path) -> None:
    first = _tissue_png(tmp_path / "site1" / "case01.png", 1)
    second = _tissue_png(tmp_path / "site2" / "case01.png", 2)
    out = tmp_path / "h"
    assert _heatmap(first, out, model).returncode == 0
    # make the finished store look like an interrupted run of the first slide
    (out / "case01.h5").rename(out / "case01.partial.h5")
    with h5py.File(out / "case01.partial.h5", "r+") as h5:
        h5.attrs["status"] = "partial"
    for suffix in (".json",):
        (out / f"case01{suffix}").unlink()
    r = _heatmap(second, out, model)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "another slide" in r.stdout + r.stderr
    assert (out / "case01.partial.h5").is_file()  # the first slide's progress is not thrown away


def test_non_ascii_file_name_gets_every_output(tmp_path: Path, model: Path) -> None:
    """'CMU small é 日本.png' failed with 'TIFF strings must be 7-bit ASCII' after the store was
    complete, and every rerun failed the same way (issue 21)."""
    import tifffile

    slide = _tissue_png(tmp_path / "CMU small é 日本.png", 3)
    out = tmp_path / "h"
    r = run_main(
        "heatmap", slide, "--slide-mpp", "0.5", "--mpp", "0.5", "--model", model, "--out", out, "--workers", "0"
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    for suffix in (".h5", ".tif", ".png", ".geojson", ".json"):
        assert (out / f"CMU small é 日本{suffix}").is_file(), suffix
    with tifffile.TiffFile(out / "CMU small é 日本.tif") as tif:
        assert tif.pages[0].description.endswith("CMU small \\xe9 \\u65e5\\u672c")
    assert json.loads((out / "CMU small é 日本.json").read_text())["slide_id"] == "CMU small é 日本"
