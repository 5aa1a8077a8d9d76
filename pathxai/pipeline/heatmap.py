"""Slide heatmaps: settings in, a typed result out, for one slide or a batch of slides.

:func:`heatmap_slide` (:mod:`~pathxai.heatmap.slide_run`) processes one slide; :func:`heatmap_batch`
many (locally or one Dask task per slide, see :mod:`pathxai.heatmap.dask_runner`), with resume,
per-slide summaries and a failure report.

Per slide, under ``OUT``: ``<id>.h5`` (:class:`~pathxai.store.heatmap.HeatmapStore`), ``<id>.tif``
(pyramidal RGB overlay at the overlay mpp, OpenSlide-readable), ``<id>.png`` (overview with colour
bars), ``<id>.geojson`` (QuPath annotations of high-probability and high-relevance regions, level-0
coordinates) and ``<id>.json`` (summary). The rooms: settings and store attributes in
:mod:`~pathxai.heatmap.settings`, jobs in :mod:`~pathxai.heatmap.jobs`, one slide in
:mod:`~pathxai.heatmap.slide_run`, reusing or resuming a store in :mod:`pathxai.store.resume`, the
tiles explained by worker processes (:mod:`~pathxai.heatmap.pool`) in
:mod:`~pathxai.heatmap.compute`, the canvas in :mod:`~pathxai.heatmap.canvas`, the
exports in :mod:`~pathxai.heatmap.exports`, the summary in
:mod:`~pathxai.heatmap.summary`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import multiprocessing as mp
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pathxai.atomic import write_text_atomic
from pathxai.errors import OutOfSpaceError, PathXAIError
from pathxai.heatmap.compute import TileProgress
from pathxai.heatmap.jobs import SlideJob, resolve_jobs
from pathxai.heatmap.pool import ExplainPool
from pathxai.heatmap.settings import EXPORTS, HeatmapSettings, TileGeometry, default_workers, explain_spec
from pathxai.heatmap.slide_run import SlideResult, heatmap_slide, run_job
from pathxai.heatmap.summary import dumps
from pathxai.outputs import output_dir
from pathxai.store.lock import OutputLock

__all__ = [
    "EXPORTS",
    "BatchResult",
    "HeatmapSettings",
    "SlideJob",
    "SlideResult",
    "check_geometry",
    "default_workers",
    "explain_spec",
    "heatmap_batch",
    "heatmap_slide",
    "resolve_jobs",
    "run_job",
]


@dataclass(frozen=True)
class BatchResult:
    """Outcome of a batch: every slide's result, in input order, and the failures file."""

    results: tuple[SlideResult, ...]
    failures_path: Path

    @property
    def failed(self) -> list[SlideResult]:
        """The slides that failed."""
        return [r for r in self.results if r.status == "failed"]


def _dask_key(job: SlideJob) -> str:
    return f"heatmap-{job.slide_id}"


def _dask_failure(job: SlideJob, exc: Exception) -> SlideResult:
    error = str(exc) if isinstance(exc, PathXAIError) else f"dask task failed: {exc}"
    return SlideResult(job.slide_id, job.path, "failed", error=error)


def _run_on_dask(
    jobs: list[SlideJob],
    out: Path,
    settings: HeatmapSettings,
    address: str,
    dask_workers: int,
    done: Callable[[SlideResult], None],
) -> None:
    """One Dask task per slide; the workers run :func:`run_job` (the runner knows nothing of heatmaps)."""
    from pathxai.heatmap.dask_runner import run_on_dask

    if address == "local" and settings.workers is None:  # share this machine's cores among the tasks
        settings = dataclasses.replace(settings, workers=max(1, default_workers() // max(1, dask_workers)))
    task = functools.partial(run_job, out_dir=str(out.resolve()), settings=settings)
    for result in run_on_dask(jobs, task, _dask_failure, address, dask_workers, key=_dask_key):
        done(result)


def check_geometry(settings: HeatmapSettings) -> None:
    """Refuse tile sizes, strides and canvas downsamples that do not fit the model, before any slide.

    Raises
    ------
    ValueError
        From :meth:`TileGeometry.of`, naming the bad value and what would fit.
    ModelError
        If the model card cannot be found or read.
    """
    from pathxai.model.io import card_from_file, resolve_model_path

    TileGeometry.of(settings, card_from_file(resolve_model_path(settings.model)[1]))


def _run_locally(
    jobs: list[SlideJob],
    out: Path,
    settings: HeatmapSettings,
    on_start: Callable[[str, int], None] | None,
    progress: TileProgress | None,
    done: Callable[[SlideResult], None],
) -> None:
    """The slides one after the other, sharing one set of worker processes."""
    with contextlib.ExitStack() as stack:
        pool = None
        if settings.n_workers > 0 and len(jobs) > 1 and not mp.current_process().daemon:
            # one set of worker processes for all slides saves their start-up per slide
            pool = stack.enter_context(ExplainPool(settings.n_workers, explain_spec(settings)))
        for job in jobs:
            done(run_job(job, out, settings, progress=progress, on_start=on_start, pool=pool))
            # a worker died on that slide (e.g. out of memory): fresh ones for the rest
            if pool is not None and pool.broken:
                pool.close()
                pool = stack.enter_context(ExplainPool(settings.n_workers, pool.spec))


def _clean_stale_temporaries(out_dir: Path) -> None:
    """Remove temporary files of killed runs (never a final name: those are only ever renamed into place)."""
    for tmp in out_dir.glob(".*.part*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


def _write_failures(out: Path, results: Sequence[SlideResult], stopped: Sequence[SlideJob] = ()) -> Path:
    """Write ``OUT/failures.json``; ``stopped`` lists the slides not run after running out of space."""
    failures = [
        {"slide_id": r.slide_id, "path": r.path, "error": r.error} for r in results if r.status == "failed"
    ]
    report: dict[str, object] = {
        "n_slides": len(results) + len(stopped),
        "n_failed": len(failures),
        "failures": failures,
    }
    if stopped:
        report["stopped_out_of_space"] = [{"slide_id": j.slide_id, "path": j.path} for j in stopped]
    fpath = out / "failures.json"
    write_text_atomic(fpath, dumps(report))
    return fpath


def _jobs_of(
    inputs: Sequence[str | Path] | Sequence[SlideJob], data_root: str | Path | None, slide_mpp: float | None
) -> list[SlideJob]:
    """Prepared jobs as given, else the jobs of slide paths and manifests (unique ids, repeats once)."""
    if inputs and all(isinstance(i, SlideJob) for i in inputs):
        return [i for i in inputs if isinstance(i, SlideJob)]
    return resolve_jobs([i for i in inputs if not isinstance(i, SlideJob)], data_root, slide_mpp)


def _run_batch(
    jobs: list[SlideJob],
    out: Path,
    settings: HeatmapSettings,
    dask: str | None,
    dask_workers: int,
    on_start: Callable[[str, int], None] | None,
    progress: TileProgress | None,
    done: Callable[[SlideResult], None],
    results: list[SlideResult],
) -> None:
    """Run every job (on Dask or here) into the locked ``out``; stop at the first out-of-space error.

    ``results`` is the list ``done`` appends to; what stopped is named in ``failures.json`` if it fits.
    """
    _clean_stale_temporaries(out)
    try:
        if dask:
            _run_on_dask(jobs, out, settings, dask, dask_workers, done)
            _clean_stale_temporaries(out)  # those of workers that died mid-write
        else:
            _run_locally(jobs, out, settings, on_start, progress, done)
    except OutOfSpaceError:
        # The batch stops: the next slide would fail too. Finished slides are kept; the same
        # command resumes once space is freed. Say so in failures.json if it still fits.
        with contextlib.suppress(OSError):
            _write_failures(
                out, results, stopped=[j for j in jobs if j.slide_id not in {r.slide_id for r in results}]
            )
        raise


def heatmap_batch(
    inputs: Sequence[str | Path] | Sequence[SlideJob],
    out_dir: str | Path,
    settings: HeatmapSettings | None = None,
    data_root: str | Path | None = None,
    slide_mpp: float | None = None,
    dask: str | None = None,
    dask_workers: int = 2,
    on_start: Callable[[str, int], None] | None = None,
    progress: TileProgress | None = None,
    on_done: Callable[[SlideResult], None] | None = None,
) -> BatchResult:
    """Heatmaps of many slides with resume and a failure report, locally or on Dask.

    Parameters
    ----------
    inputs
        Slide paths and/or manifest CSVs (``path`` column), or prepared :class:`SlideJob` s.
    out_dir
        Output directory; locked for the duration (:class:`~pathxai.store.lock.OutputLock`).
    settings
        Run settings.
    data_root
        Root for manifest paths.
    slide_mpp
        Level-0 µm/px override for slides without their own.
    dask
        ``None`` (in this process), ``"local"`` (a ``LocalCluster``) or a scheduler address.
    dask_workers
        Worker processes of a local cluster.
    on_start, progress
        Per-slide callbacks (local runs only): grid known ``(slide_id, n_tiles)``; tiles finished.
    on_done
        Called with each slide's result as it finishes.

    Returns
    -------
    BatchResult
        Every result; failures are also written to ``OUT/failures.json``.

    Raises
    ------
    ValueError
        If the tile size, stride or canvas downsample do not fit the model (before any slide starts).
    PathXAIError
        If ``out_dir`` is a file or the model cannot be read; :class:`OutputLockedError` if another
        run holds ``out_dir``.
    OutOfSpaceError
        At the first slide that runs out of space (the batch stops there; finished slides are kept,
        the unfinished one keeps its partial store, and the same call resumes once space is freed).
    """
    settings = settings or HeatmapSettings()
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        output_dir(out)  # raises: a file, not a directory
    check_geometry(settings)
    jobs = _jobs_of(inputs, data_root, slide_mpp)
    results: list[SlideResult] = []

    def done(result: SlideResult) -> None:
        results.append(result)
        if on_done is not None:
            on_done(result)

    with OutputLock(out):
        _run_batch(jobs, out, settings, dask, dask_workers, on_start, progress, done, results)
        fpath = _write_failures(out, results)
    order = {j.slide_id: i for i, j in enumerate(jobs)}
    results.sort(key=lambda r: order.get(r.slide_id, len(order)))
    return BatchResult(tuple(results), fpath)
