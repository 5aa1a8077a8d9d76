"""Scale-out and crash safety: a real Dask LocalCluster gives the local run's arrays; SIGKILL mid-slide resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_batch
from pathxai.slide.testing import write_synthetic_slide
from pathxai.store import HeatmapStore

from .test_pipeline import _arrays, _assert_same


@pytest.mark.slow
def test_dask_local_cluster_matches_local_run(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("distributed")
    slides = [
        write_synthetic_slide(
            tmp_path / f"s{i}.tiff", 900 + 200 * i, 700, mpp=0.5, blobs=[(450, 350, 350, 250)]
        )
        for i in range(2)
    ]
    settings = HeatmapSettings(model=str(tiny_model), batch_size=16, workers=0, exports=("geojson",))
    local = heatmap_batch(slides, tmp_path / "local", settings)
    dask = heatmap_batch(slides, tmp_path / "dask", settings, dask="local", dask_workers=2)
    assert [r.status for r in dask.results] == ["done", "done"] and not dask.failed
    for a, b in zip(local.results, dask.results, strict=True):
        assert a.slide_id == b.slide_id
        _assert_same(_arrays(Path(a.outputs["h5"])), _arrays(Path(b.outputs["h5"])))
        assert Path(b.outputs["geojson"]).read_bytes() == Path(a.outputs["geojson"]).read_bytes()


def _cli(slide: Path, model: Path, out: Path) -> list[str]:
    # batches of 4: results reach the store every 8 batches, so the 202-tile slide shows progress in
    # steps of 32 tiles, fine enough to kill it twice mid-slide
    return [
        sys.executable, "-m", "pathxai", "heatmap", str(slide), "--model", str(model), "--out", str(out),
        "--batch-size", "4", "--workers", "1", "--exports", "png",
    ]  # fmt: skip


def _children(pid: int) -> list[int]:
    """Process ids whose parent is ``pid`` (Linux ``/proc``)."""
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _assert_gone(pids: list[int], timeout: float = 20.0) -> None:
    """The killed run's worker processes exit by themselves (they must not linger holding a model)."""
    deadline = time.monotonic() + timeout
    alive = pids
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if Path(f"/proc/{p}").exists() and "Z" not in _state(p)]
        time.sleep(0.1)
    assert not alive, f"worker processes {alive} outlived their SIGKILLed parent"


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def _kill_when(proc: subprocess.Popen, partial: Path, min_done: int, timeout: float = 240.0) -> int:
    """SIGKILL ``proc`` once the partial store shows at least ``min_done`` tiles; return the count seen.

    Its worker processes, orphaned by the kill, must exit by themselves.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"run finished before it could be killed (exit {proc.returncode})")
        if partial.exists():
            try:
                done, n = HeatmapStore.progress(partial)
            except (OSError, KeyError):
                done, n = 0, 1  # being created
            if done >= min_done:
                kids = _children(proc.pid) if Path("/proc/self/stat").exists() else []
                assert kids or not Path("/proc/self/stat").exists(), (
                    "the run should compute in worker processes"
                )
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(30)
                _assert_gone(kids)
                assert done < n, "slide finished before the kill"
                return done
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no progress seen in time")


@pytest.mark.slow
def test_sigkill_mid_slide_resumes_identically(tiny_model: Path, tmp_path: Path) -> None:
    slide = write_synthetic_slide(tmp_path / "big.tiff", 3200, 2400, mpp=0.5)
    out, ref = tmp_path / "out", tmp_path / "ref"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    seen: list[int] = []
    done = 0
    for _ in range(2):  # two kills at different points of the same slide
        # (a run may store more results between the poll that saw ``min_done`` and the kill: the
        # next threshold starts from what the store holds after the kill)
        min_done = 16 if not seen else done + 24
        proc = subprocess.Popen(
            _cli(slide, tiny_model, out), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
        )
        seen.append(_kill_when(proc, out / "big.partial.h5", min_done))
        assert proc.returncode == -signal.SIGKILL
        assert not (out / "big.h5").exists() and not (out / "big.png").exists()  # nothing final-looking
        done, _n = HeatmapStore.progress(out / "big.partial.h5")  # the partial file stays readable
        assert done >= seen[-1]
    assert seen[1] > seen[0]
    done_run = subprocess.run(
        _cli(slide, tiny_model, out), capture_output=True, text=True, env=env, timeout=600
    )
    assert done_run.returncode == 0, done_run.stderr
    assert not (out / "big.partial.h5").exists() and not list(out.glob(".*part*"))
    uninterrupted = subprocess.run(
        _cli(slide, tiny_model, ref), capture_output=True, text=True, env=env, timeout=600
    )
    assert uninterrupted.returncode == 0, uninterrupted.stderr
    _assert_same(_arrays(out / "big.h5"), _arrays(ref / "big.h5"))
    with HeatmapStore.open(out / "big.h5") as st:
        assert st.done.all() and np.isfinite(st.probabilities).all()
