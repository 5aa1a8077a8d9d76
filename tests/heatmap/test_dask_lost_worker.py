"""A Dask worker lost mid-slide (real LocalCluster, real SIGKILL): the slide runs again elsewhere and resumes.

Finished slides are not computed again, the outputs equal a clean run's, and a slide that kills every
worker it runs on is given up after :data:`~pathxai.heatmap.dask_runner.MAX_ATTEMPTS` and reported in
``failures.json`` while the batch finishes. Which worker runs which slide is learnt from a worker preload
(``dask_worker_hooks.py``), which also plays the poison slide.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from pathxai.pipeline.heatmap import HeatmapSettings, heatmap_batch
from pathxai.slide.testing import write_synthetic_slide
from pathxai.store import HeatmapStore

from .test_pipeline import _arrays, _assert_same

# slow: a LocalCluster, a worker restarted per death (each imports torch); minutes on a loaded machine
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]
#: The workers' preload; never imported here (it patches ``run_job``, which the task refers to by name).
HOOKS = Path(__file__).with_name("dask_worker_hooks.py")


def _starts(log: Path) -> list[tuple[str, int]]:
    """``(slide_id, worker pid)`` for every slide start logged by the workers, in order."""
    if not log.exists():
        return []
    return [(s, int(p)) for s, p in (line.split() for line in log.read_text().splitlines() if line)]


def _kill_second_slide_of_a_worker(log: Path, out: Path, stop: threading.Event, seen: dict) -> None:
    """SIGKILL the worker that finished one slide and is mid-way through another (its result on it)."""
    while not stop.is_set():
        starts = _starts(log)
        for i, (sid, pid) in enumerate(starts):
            before = [s for s, p in starts[:i] if p == pid]
            if not before or not (out / f"{before[-1]}.h5").exists():
                continue
            try:
                done, n = HeatmapStore.progress(out / f"{sid}.partial.h5")
            except (OSError, KeyError):
                continue  # not there yet, or being created
            if 0 < done < n:
                seen.update(slide=sid, finished=before[-1], pid=pid, done=done)
                os.kill(pid, signal.SIGKILL)
                return
        time.sleep(0.05)


@pytest.fixture
def worker_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Dask workers of this test log their slide starts here (and honour the poison list)."""
    # imported first: a config.set of a new top-level key would drop distributed's defaults on exit
    pytest.importorskip("distributed")
    import dask

    log = tmp_path / "starts.log"
    monkeypatch.setenv("PATHXAI_TEST_DASK_LOG", str(log))
    with dask.config.set({"distributed.worker.preload": [str(HOOKS)]}):
        yield log


def test_worker_killed_mid_slide_is_retried_and_matches_a_clean_run(
    tiny_model: Path, tmp_path: Path, worker_log: Path
) -> None:
    slides = [write_synthetic_slide(tmp_path / "a.tiff", 700, 500, mpp=0.5)] + [
        write_synthetic_slide(tmp_path / f"{n}.tiff", 2400, 1800, mpp=0.5) for n in ("b", "c")
    ]
    # batches of 4, written at least every second: the ~100-tile slides show progress mid-way;
    # tiles computed in the Dask worker itself (the explain processes' fate is test_dask_and_kill's)
    settings = HeatmapSettings(model=str(tiny_model), batch_size=4, workers=0, exports=("png",))
    out = tmp_path / "dask"
    stop, seen = threading.Event(), {}
    killer = threading.Thread(target=_kill_second_slide_of_a_worker, args=(worker_log, out, stop, seen))
    killer.start()
    try:
        batch = heatmap_batch(slides, out, settings, dask="local", dask_workers=2)
    finally:
        stop.set()
        killer.join()
    assert seen, "no worker was caught mid-way through its second slide"
    assert not batch.failed, [r.error for r in batch.results]
    starts = [s for s, _ in _starts(worker_log)]
    # the killed slide ran again (on another worker process); the one that worker had finished did not
    assert starts.count(seen["slide"]) == 2 and starts.count(seen["finished"]) == 1
    assert sorted(set(starts)) == ["a", "b", "c"] and len(starts) == 4
    retried = [p for s, p in _starts(worker_log) if s == seen["slide"]]
    assert retried[0] == seen["pid"] and retried[1] != seen["pid"]
    assert not list(out.glob("*.partial.h5")) and not list(out.glob(".*part*"))
    clean = heatmap_batch(slides, tmp_path / "clean", settings)
    for a, b in zip(clean.results, batch.results, strict=True):
        assert a.slide_id == b.slide_id
        _assert_same(_arrays(Path(a.outputs["h5"])), _arrays(Path(b.outputs["h5"])))
        assert Path(a.outputs["png"]).read_bytes() == Path(b.outputs["png"]).read_bytes()


def test_slide_that_kills_every_worker_is_reported_and_the_batch_finishes(
    tiny_model: Path, tmp_path: Path, worker_log: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pathxai.heatmap.dask_runner import MAX_ATTEMPTS

    monkeypatch.setenv("PATHXAI_TEST_DASK_POISON", "poison")
    slides = [
        write_synthetic_slide(tmp_path / f"{n}.tiff", 900, 700, mpp=0.5) for n in ("a", "poison", "b", "c")
    ]
    settings = HeatmapSettings(model=str(tiny_model), batch_size=16, workers=0, exports=())
    out = tmp_path / "out"
    batch = heatmap_batch(slides, out, settings, dask="local", dask_workers=2)
    # a slide whose worker died before its result was fetched runs again and finds its store complete
    assert [r.status for r in batch.results][1] == "failed"
    assert all(r.status in ("done", "skipped") for i, r in enumerate(batch.results) if i != 1)
    starts = [s for s, _ in _starts(worker_log)]
    # bounded: tried MAX_ATTEMPTS times, each on a fresh worker; the other slides all ran
    assert starts.count("poison") == MAX_ATTEMPTS
    assert {s for s in starts if s != "poison"} == {"a", "b", "c"}
    assert len({p for s, p in _starts(worker_log) if s == "poison"}) == MAX_ATTEMPTS
    report = json.loads((out / "failures.json").read_text())
    assert report["n_failed"] == 1 and report["failures"][0]["slide_id"] == "poison"
    assert f"died each of the {MAX_ATTEMPTS} times" in report["failures"][0]["error"]
    assert {p.name for p in out.glob("*.h5")} == {"a.h5", "b.h5", "c.h5"}
