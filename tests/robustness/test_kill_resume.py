"""Crash safety of the batch heatmap CLI: SIGKILL at random points, rerun, compare with a clean run.

For each kill: every ``.h5`` and ``.json`` in the output directory must still be readable (final
stores complete and identical to the uninterrupted run; ``.partial.h5`` progress files openable);
the rerun finishes, and every final store is dataset-for-dataset identical to the uninterrupted
run (same dtypes, shapes and values, NaN where NaN) with the same attributes (except the
creation time). A second run on a locked output directory is refused in one line.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

pytestmark = pytest.mark.skipif(
    not (Path(__file__).resolve().parents[2] / "pathxai/cli/heatmap.py").is_file(),
    reason="the heatmap CLI (pathxai/cli/heatmap.py) has not landed",
)

from .conftest import assert_clean_failure, run_cli, save_tiny_model  # noqa: E402

N_SLIDES = 3
KILLS = 4
VOLATILE_ATTRS = {"created"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("m") / "tiny", widths=(8, 16, 16, 32, 32))


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Three slides of ~80-120 tissue tiles each (64 px at 2 µm/px), 20-30 batches of 4."""
    from pathxai.slide.testing import write_synthetic_slide

    d = tmp_path_factory.mktemp("kill_slides")
    return [
        write_synthetic_slide(
            d / f"s{i}.tiff", 4096 + 512 * i, 3072, mpp=0.5, levels=3, tile=256, compression="jpeg"
        )
        for i in range(N_SLIDES)
    ]


def _argv(slides: list[Path], model: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "pathxai", "heatmap", *map(str, slides), "--model", str(model), "--out", str(out),
        "--workers", "0", "--threads", "1", "--batch-size", "4",
    ]  # fmt: skip


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def _datasets(path: Path) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    with h5py.File(path, "r") as h5:
        h5.visititems(
            lambda name, obj: out.__setitem__(name, obj[...]) if isinstance(obj, h5py.Dataset) else None
        )
    return out


def _attrs(path: Path) -> dict[str, object]:
    with h5py.File(path, "r") as h5:
        return {
            k: (v.tolist() if hasattr(v, "tolist") else v)
            for k, v in h5.attrs.items()
            if k not in VOLATILE_ATTRS
        }


def assert_same_store(a: Path, b: Path) -> None:
    da, db = _datasets(a), _datasets(b)
    assert sorted(da) == sorted(db), (a, b)
    for name in da:
        x, y = da[name], db[name]
        assert x.dtype == y.dtype and x.shape == y.shape, (name, x.dtype, y.dtype, x.shape, y.shape)
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f"{name} differs between {a} and {b}"
    assert _attrs(a) == _attrs(b)


def assert_everything_readable(out: Path, reference: Path) -> dict[str, int]:
    """After a kill: final stores complete and identical, partial stores openable, JSON parseable."""
    seen = {"final": 0, "partial": 0}
    for p in sorted(out.iterdir()):
        if p.name.startswith(
            "."
        ):  # the run lock, or a temporary of a killed write (hidden, cleaned next run)
            assert ".part" in p.name or p.name == ".pathxai.lock", p.name
            continue
        if p.name.endswith(".partial.h5"):
            with h5py.File(p, "r") as h5:  # raises if the kill corrupted it
                assert h5.attrs["status"] == "partial"
                done = h5["done"][...]
            assert done.dtype == bool
            seen["partial"] += 1
        elif p.suffix == ".h5":
            assert_same_store(p, reference / p.name)
            seen["final"] += 1
        elif p.suffix == ".json":
            json.loads(p.read_text())
    return seen


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, slides: list[Path], tiny_model: Path) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    proc = subprocess.run(
        _argv(slides, tiny_model, out), capture_output=True, text=True, env=_env(), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.h5")) == [f"s{i}.h5" for i in range(N_SLIDES)]
    return out


@pytest.mark.slow
def test_sigkill_at_random_points_then_resume(
    reference: Path, slides: list[Path], tiny_model: Path, tmp_path: Path
) -> None:
    from pathxai.store.heatmap import HeatmapStore

    rng = random.Random(int(os.environ.get("PATHXAI_KILL_SEED", "8")))
    out = tmp_path / "killed"
    log = []
    # Kill points: a random fraction of a slide's tiles done (mid-slide), or the moment a slide's
    # final store appears (while its exports and summary are written).
    plan = [("tiles", rng.uniform(0.05, 0.95)) for _ in range(KILLS - 1)] + [("exports", 0.0)]
    rng.shuffle(plan)
    for k, (stage, fraction) in enumerate(plan):
        before = {p.name for p in out.glob("*.h5")} if out.exists() else set()
        proc = subprocess.Popen(
            _argv(slides, tiny_model, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env()
        )
        t0, hit = time.monotonic(), ""
        while not hit and time.monotonic() - t0 < 180 and proc.poll() is None:
            if stage == "tiles":
                for part in out.glob("*.partial.h5"):
                    try:
                        done, n = HeatmapStore.progress(part)
                    except Exception:  # being created right now
                        continue
                    if n and done >= fraction * n:
                        hit = f"{part.name} {done}/{n}"
            else:
                new = [p for p in out.glob("s?.h5") if p.name not in before]
                if new:
                    hit = new[0].name
            time.sleep(0.005)
        if proc.poll() is not None:
            break  # everything was already finished
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        mid_slide = any(out.glob("*.partial.h5"))
        seen = assert_everything_readable(out, reference)
        log.append({"kill": k, "stage": stage, "at": hit, "mid_slide": mid_slide, **seen})
    print("kills:", log)
    # the run can resume after all that
    proc = subprocess.run(
        _argv(slides, tiny_model, out), capture_output=True, text=True, env=_env(), timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    for i in range(N_SLIDES):
        assert_same_store(out / f"s{i}.h5", reference / f"s{i}.h5")
        summary = json.loads((out / f"s{i}.json").read_text())
        assert summary["n_tiles"] == json.loads((reference / f"s{i}.json").read_text())["n_tiles"]
    assert not list(out.glob("*.partial.h5")) and not list(out.glob(".*.part*")), sorted(os.listdir(out))
    # at least two kills must have landed mid-slide, or the test proved little
    assert sum(entry["mid_slide"] for entry in log) >= 2, log


@pytest.mark.slow
def test_two_runs_on_one_output_directory_cannot_interleave(
    reference: Path, slides: list[Path], tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "locked"
    first = subprocess.Popen(_argv(slides, tiny_model, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env())  # fmt: skip
    try:
        lock = out / ".pathxai.lock"
        t0 = time.monotonic()
        while time.monotonic() - t0 < 120 and not (lock.is_file() and lock.read_text().strip()):
            time.sleep(0.05)
        assert first.poll() is None, "the first run ended before the second could start"
        # freeze the holder: the second run takes seconds to start, and a fast first run could finish
        # (and release the lock) in the meantime
        first.send_signal(signal.SIGSTOP)
        r = run_cli("heatmap", slides[0], "--model", tiny_model, "--out", out, "--workers", "0")
        assert_clean_failure(r, out, "in use", f"pid {first.pid}")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    # the kernel dropped the lock with the killed process: a new run proceeds
    r = subprocess.run(
        _argv(slides[:1], tiny_model, out), capture_output=True, text=True, env=_env(), timeout=600
    )
    assert r.returncode == 0, r.stderr[-3000:]
