"""A full disk, for real: ``heatmap`` and ``audit`` writing onto a small tmpfs (issue 21, item 1).

No write is mocked: the output folder is a tmpfs mounted for the test (root is needed; the test
skips with the reason when ``mount`` is not permitted), and a filler file leaves exactly the free
space a case needs. Before the fix a 3-slide heatmap onto such a disk ended in a segmentation fault
(exit 139) in h5py's deallocation after ``ENOSPC`` while the second slide's store was finalised.

Contract: exit non-zero with one line naming the lack of space and the path; the batch stops at the
first slide that runs out of space (no file of the slides after it); no final-looking ``<id>.h5``
that is not complete; finished slides intact; after space is freed the same command resumes and
gives stores whose relevance and probability datasets equal an uninterrupted run's bit for bit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from pathxai.slide.testing import write_synthetic_slide

from .conftest import assert_clean_failure, run_cli, save_tiny_model, tiny_audit_cohort

#: Datasets that must equal an uninterrupted run's, bit for bit.
COMPARED = ("probabilities", "tile_relevance", "relevance", "probability", "count")


class Tmpfs:
    """A mounted tmpfs of a given size, with a filler file to set its free space."""

    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def free(self) -> int:
        return shutil.disk_usage(self.root).free

    def leave_free(self, n_bytes: int) -> None:
        """Grow or shrink the filler so that about ``n_bytes`` stay free."""
        filler = self.root / "filler.bin"
        current = filler.stat().st_size if filler.exists() else 0
        size = max(0, current + self.free - n_bytes)
        with open(filler, "ab") as fh:
            fh.truncate(0)
            if size:
                os.posix_fallocate(fh.fileno(), 0, size)

    def free_everything(self) -> None:
        (self.root / "filler.bin").unlink(missing_ok=True)


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Tmpfs]:
    """An 8 MB tmpfs (skips with the reason when mounting is not permitted)."""
    root = tmp_path / "tmpfs"
    root.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(root)], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs to fill up (needs root): {r.stderr.strip() or r.returncode}")
    try:
        yield Tmpfs(root)
    finally:
        subprocess.run(["umount", "-l", str(root)], capture_output=True)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], Path]:
    """Three different small slides and a tiny model."""
    d = tmp_path_factory.mktemp("disk_full_inputs")
    slides = [
        write_synthetic_slide(
            d / f"s{i}.tiff",
            1024,
            768,
            mpp=0.5,
            levels=2,
            tile=128,
            compression="zlib",
            blobs=[(480.0 + 40 * i, 380.0, 360.0, 260.0)],
        )
        for i in range(3)
    ]
    return slides, save_tiny_model(d / "model")


def _heatmap(inputs: tuple[list[Path], Path], out: Path, *extra: str) -> object:
    slides, model = inputs
    return run_cli(
        "heatmap", *slides, "--model", model, "--out", out, "--workers", "0", "--threads", "1", *extra,
        timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference(inputs: tuple[list[Path], Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted run on an ordinary file system."""
    out = tmp_path_factory.mktemp("disk_full_ref") / "out"
    r = _heatmap(inputs, out)
    assert r.returncode == 0, r.stderr  # type: ignore[attr-defined]
    return out


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(
            lambda name, obj: (
                out.__setitem__(name, obj[...])
                if isinstance(obj, h5py.Dataset) and name.split("/")[0] in COMPARED
                else None
            )
        )
    return out


def _assert_same_stores(out: Path, reference: Path) -> None:
    for ref in sorted(reference.glob("s?.h5")):
        got, want = _datasets(out / ref.name), _datasets(ref)
        assert sorted(got) == sorted(want), ref.name
        for name, arr in want.items():
            assert got[name].dtype == arr.dtype and got[name].tobytes() == arr.tobytes(), (ref.name, name)


def _slide_bytes(reference: Path, slide_id: str) -> int:
    return sum(p.stat().st_size for p in reference.glob(f"{slide_id}.*"))


def _assert_no_false_finals(out: Path) -> None:
    """Every ``<id>.h5`` is a complete store; no temporary file is left."""
    for p in out.glob("*.h5"):
        if p.name.endswith(".partial.h5"):
            continue
        with h5py.File(p, "r") as h5:
            assert h5.attrs["status"] == "complete", p
    assert not [p.name for p in out.iterdir() if ".part" in p.name and not p.name.endswith(".partial.h5")]


def test_full_disk_stops_the_batch_in_one_line_and_resumes_identically(
    inputs: tuple[list[Path], Path], reference: Path, tmpfs: Tmpfs
) -> None:
    """Room for the first slide and a bit: the second runs out of space while being written."""
    out = tmpfs.root / "out"
    tmpfs.leave_free(_slide_bytes(reference, "s0") + 120_000)
    r = _heatmap(inputs, out, "--no-space-check")  # the estimate would refuse s1 before it starts
    assert r.returncode != 139, "segmentation fault on a full disk"
    line = assert_clean_failure(r, "no space left on device", out)  # type: ignore[arg-type]
    assert "s1" in line, line
    assert "rerun" in line
    # the first slide is finished and intact; nothing of the third; no false final store
    assert (out / "s0.h5").is_file() and (out / "s0.json").is_file()
    assert not list(out.glob("s2.*"))
    _assert_no_false_finals(out)
    with h5py.File(out / "s0.h5", "r") as h5, h5py.File(reference / "s0.h5", "r") as ref:
        assert h5["relevance/0"][...].tobytes() == ref["relevance/0"][...].tobytes()
    # space freed: the same command resumes and gives the uninterrupted run's stores
    tmpfs.free_everything()
    r2 = _heatmap(inputs, out, "--no-space-check")
    assert r2.returncode == 0, r2.stderr  # type: ignore[attr-defined]
    assert "s0: skipped" in r2.stdout  # type: ignore[attr-defined]
    _assert_same_stores(out, reference)
    assert not list(out.glob("*.partial.h5"))


@pytest.mark.slow
@pytest.mark.parametrize("extra", [20_000, 60_000, 200_000, 300_000])
def test_full_disk_at_every_stage_of_a_slide(
    inputs: tuple[list[Path], Path], reference: Path, tmpfs: Tmpfs, extra: int
) -> None:
    """The second slide runs out of space creating its partial store, finalising it, or exporting."""
    out = tmpfs.root / "out"
    tmpfs.leave_free(_slide_bytes(reference, "s0") + extra)
    r = _heatmap(inputs, out, "--no-space-check")
    assert r.returncode != 139
    line = assert_clean_failure(r, "no space left on device")  # type: ignore[arg-type]
    failing = int(line.split(f"{out}/s", 1)[1][0])  # the slide that ran out of space
    for later in range(failing + 1, 3):  # the batch stopped there
        assert not list(out.glob(f"s{later}.*")), (line, later)
    _assert_no_false_finals(out)
    tmpfs.free_everything()
    r2 = _heatmap(inputs, out)
    assert r2.returncode == 0, r2.stderr  # type: ignore[attr-defined]
    _assert_same_stores(out, reference)


def test_a_slide_that_cannot_fit_is_refused_before_it_starts(
    inputs: tuple[list[Path], Path], reference: Path, tmpfs: Tmpfs
) -> None:
    """The estimate (grid x bytes per tile of every dataset, canvas, exports) refuses early."""
    out = tmpfs.root / "out"
    tmpfs.leave_free(100_000)
    r = _heatmap(inputs, out)
    line = assert_clean_failure(r, "not enough space for slide s0", "needed", "free", out)  # type: ignore[arg-type]
    assert "--no-space-check" in line
    assert not list(out.glob("s*.*")), "nothing of a refused slide is written"
    # the estimate stays below what the slide really takes (it refuses only what cannot fit)
    from pathxai.heatmap.space import estimate_space

    with h5py.File(reference / "s0.h5", "r") as h5:
        n, c = h5["probabilities"].shape
        tile_px = h5["tile_relevance"].shape[1]
        shape = h5["relevance/0"].shape
    est = estimate_space(n, c, tile_px, shape, ("tif", "png", "geojson"))
    partial_bytes = n * (46 + 4 * c + 4 * tile_px * tile_px)
    assert (
        0.5 * _slide_bytes(reference, "s0")
        < est.total
        <= _slide_bytes(reference, "s0") + partial_bytes + 65536
    )


def test_audit_on_a_full_disk_is_one_line(tmpfs: Tmpfs, tmp_path: Path) -> None:
    """``audit`` writes its cache and report through atomic writes: ENOSPC there is one line, exit 2."""
    d, model = tiny_audit_cohort(tmp_path / "cohort")
    out = tmpfs.root / "audit"
    tmpfs.leave_free(8_000)
    r = run_cli("audit", "--manifest", d / "m.csv", "--model", model, "--out", out, "--quiet", timeout=600)
    assert r.returncode != 139
    line = assert_clean_failure(r, "no space left on device", out)
    assert "free" in line
    assert not [p.name for p in out.rglob("*") if ".part" in p.name]
    tmpfs.free_everything()
    r2 = run_cli("audit", "--manifest", d / "m.csv", "--model", model, "--out", out, "--quiet", timeout=600)
    assert r2.returncode == 0, r2.stderr
    assert (out / "report.json").is_file()
