from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

from pathxai.cli import main


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pathxai", *args], capture_output=True, text=True, timeout=300
    )


def test_info_real_slides(cmu_slide: Path, tcga_slide: Path, bracs_slide: Path, capsys) -> None:
    assert main(["info", str(cmu_slide)]) == 0
    out = capsys.readouterr().out
    assert "0.499" in out and "aperio" in out and "tissue:" in out
    assert main(["info", str(tcga_slide)]) == 0
    assert "unknown" in capsys.readouterr().out
    assert main(["info", str(bracs_slide), "--slide-mpp", "0.25"]) == 0
    assert "override" in capsys.readouterr().out


def test_tiles_real_slide_writes_coords_and_picture(cmu_slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "cmu.h5"
    r = run_cli("tiles", str(cmu_slide), "--mpp", "1.0", "--size", "224", "--out", str(out))
    assert r.returncode == 0, r.stderr
    with h5py.File(out) as h5:
        coords = h5["coords"][...]
        assert coords.shape[1] == 2 and len(coords) > 5
        assert h5["coords"].attrs["mpp"] == 1.0
    pic = np.asarray(Image.open(out.with_suffix(".png")))
    assert pic.ndim == 3 and (pic[..., 1] > pic[..., 0] + 60).any()  # green tile outlines drawn


def test_tiles_bogus_mpp_fails_with_one_line(bracs_slide: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.h5"
    r = run_cli("tiles", str(bracs_slide), "--mpp", "1.0", "--out", str(out))
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "implausible" in lines[0] and "--slide-mpp" in lines[0]
    assert not out.exists()


def test_cli_broken_file_one_line_no_traceback(tmp_path: Path) -> None:
    bad = tmp_path / "fake.svs"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(bad, format="PNG")
    for args in (["info", str(bad)], ["tiles", str(bad), "--mpp", "1", "--out", str(tmp_path / "x.h5")]):
        r = run_cli(*args)
        assert r.returncode == 2
        assert "Traceback" not in r.stderr
        assert str(bad) in r.stderr and "PNG" in r.stderr
    assert not (tmp_path / "x.h5").exists()
