"""Careless audit inputs (issue 21): one file named by many rows, one class only, images of a few pixels.

Each was a silent wrong result or a waste (2,000 rows naming one file: minutes and 4.5 GB, labels in
conflict unnoticed; "count = None"; 8 x 8 px images "all is well"); each is now refused in one line
or audited correctly and said so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from .conftest import assert_clean_failure, leftovers, run_main, save_tiny_model

FAST = {"settings": {"permutations": 20, "bootstrap": 200, "sensitivity_images": 4}}


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six 96 px H&E-like images (1 and 2 µm/px work) and the fast thresholds file."""
    d = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    for i in range(6):
        a = np.full((96, 96, 3), (235, 225, 235), np.uint8)
        a[20:70, 20:70] = rng.integers(0, 60, (50, 50, 3)) + np.array([110, 50, 140], np.uint8)
        Image.fromarray(a).save(d / f"im{i}.png")
        Image.fromarray(a[:8, 16:24]).save(d / f"tiny{i}.png")
    (d / "th.json").write_text(json.dumps(FAST))
    return d


def _manifest(d: Path, name: str, rows: list[tuple[str, str, str]], mpp: float = 2.0) -> Path:
    m = d / name
    m.write_text("id,path,label,patient,mpp\n" + "".join(f"{i},{p},{lab},p{i},{mpp}\n" for i, p, lab in rows))
    return m


def _audit(d: Path, manifest: Path, out: Path, model: str | Path = "none"):
    return run_main("audit", "--manifest", manifest, "--model", model, "--config", d / "th.json", "--out", out,
                    "--quiet")  # fmt: skip


def test_rows_naming_one_file_with_other_labels_are_refused(cohort: Path, tmp_path: Path) -> None:
    rows = [("a", "im0.png", "benign"), ("b", "im1.png", "malignant"), ("c", "./im0.png", "malignant")]
    m = _manifest(cohort, "conflict.csv", rows)
    r = _audit(cohort, m, tmp_path / "out")
    assert_clean_failure(r, "manifest:4", "same file as line 2", "tumour here and non-tumour there")
    assert leftovers(tmp_path / "out") == []
    v = run_main("manifest", "validate", m)
    assert v.returncode != 0 and "same file as line 2" in v.stderr


def test_two_thousand_rows_naming_two_files_are_audited_once_each(cohort: Path, tmp_path: Path) -> None:
    rows = [(f"r{i}", f"im{i % 2}.png", "malignant" if i % 2 else "benign") for i in range(2000)]
    m = _manifest(cohort, "dup.csv", rows)
    out = tmp_path / "out"
    r = _audit(cohort, m, out)
    assert r.returncode == 0, r.stderr
    note = "1998 manifest rows name a file already listed (same path or sha256: line 4 = line 2"
    assert note in r.stderr and "each file was audited once" in r.stderr
    report = json.loads((out / "report.json").read_text())
    assert any(note in n for n in report["notes"])
    assert report["cohort"]["n_items"] == 2
    imbalance = next(f for f in report["findings"] if f["check"] == "sampling.imbalance")
    assert imbalance["evidence"]["details"]["counts"] == {"non-tumour": 1, "tumour": 1}


def test_one_class_cohort_says_so_not_none(cohort: Path, tmp_path: Path) -> None:
    m = _manifest(cohort, "one.csv", [(f"i{i}", f"im{i}.png", "malignant") for i in range(6)])
    r = _audit(cohort, m, tmp_path / "out")
    assert r.returncode == 0, r.stderr
    assert "= None" not in r.stdout
    assert "[high] sampling.imbalance: Only one class in the cohort (tumour 6)" in r.stdout


@pytest.mark.parametrize("model", ["none", "tiny"])
def test_images_of_a_few_pixels_are_refused(cohort: Path, tmp_path: Path, model: str) -> None:
    rows = [(f"t{i}", f"tiny{i}.png", "malignant" if i % 2 else "benign") for i in range(6)]
    m = _manifest(cohort, "tiny.csv", rows, mpp=0.5)
    spec = save_tiny_model(tmp_path / "model") if model == "tiny" else "none"
    out = tmp_path / "out"
    r = _audit(cohort, m, out, spec)
    side = "the model's 64 px input" if model == "tiny" else "a 64 px analysis tile"
    assert_clean_failure(r, "line 2", "smaller than half", side, "'t0'")
    assert leftovers(out) == []


def test_out_naming_a_file_is_refused_in_one_line(cohort: Path, tmp_path: Path) -> None:
    m = _manifest(
        cohort,
        "out_file.csv",
        [(f"i{i}", f"im{i}.png", "benign" if i % 2 else "malignant") for i in range(4)],
    )
    taken = tmp_path / "report"
    taken.write_text("not a directory")
    r = _audit(cohort, m, taken)
    assert_clean_failure(r, "is a file, not a directory", "choose another --out")
    assert "File exists" not in r.stderr
    assert taken.read_text() == "not a directory"
