"""Run slide heatmaps as Dask tasks: one task per slide, on a ``LocalCluster`` or a remote scheduler.

Dask is optional (``pip install 'pathxai[dask]'``) and imported only here, lazily. Each task runs
:func:`pathxai.pipeline.heatmap.run_job` in a worker process with the same settings as a local run,
so the stores are identical to a local run's. The output directory must be visible to the workers
(a shared filesystem for a remote cluster); the calling process holds its lock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

from pathxai.errors import DaskUnavailableError, PathXAIError
from pathxai.pipeline.heatmap import HeatmapSettings, SlideJob, SlideResult, run_job

__all__ = ["DaskUnavailableError", "run_on_dask"]


def _task(job: SlideJob, out_dir: str, settings: HeatmapSettings) -> SlideResult:
    return run_job(job, out_dir, settings)


def run_on_dask(
    jobs: Sequence[SlideJob],
    out_dir: str | Path,
    settings: HeatmapSettings,
    address: str = "local",
    n_workers: int = 2,
) -> Iterator[SlideResult]:
    """Submit one task per slide and yield results as they complete.

    Parameters
    ----------
    jobs
        Slides to process.
    out_dir
        Output directory (shared with the workers).
    settings
        Run settings (sent to the workers).
    address
        ``"local"`` for a new ``LocalCluster`` of ``n_workers`` single-threaded processes, else a
        scheduler address such as ``tcp://host:8786``.
    n_workers
        Worker processes of a local cluster.

    Raises
    ------
    DaskUnavailableError
        When ``dask.distributed`` is not installed.
    """
    try:
        import dask
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise DaskUnavailableError(
            f"Dask is not installed ({exc.name} missing)",
            hint="install the extra: pip install 'pathxai[dask]', or run without --dask",
        ) from None
    if not jobs:
        return
    out = str(Path(out_dir).resolve())
    cluster = None
    # Non-daemonic workers may start the explain worker processes of pathxai.pipeline.explain_pool.
    with dask.config.set({"distributed.worker.daemon": False}):
        if address == "local":
            cluster = LocalCluster(
                n_workers=max(1, n_workers),
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=40,
            )
            client = Client(cluster)
        else:
            try:
                client = Client(address, timeout="20s")
            except OSError as exc:
                raise PathXAIError(
                    f"cannot reach the Dask scheduler at {address} ({exc})",
                    hint="check the address (tcp://host:8786) or use --dask local",
                ) from exc
        try:
            futures = [
                client.submit(_task, job, out, settings, key=f"heatmap-{job.slide_id}", pure=False)
                for job in jobs
            ]
            for fut in as_completed(futures):
                try:
                    yield fut.result()
                except Exception as exc:  # a worker died or the task could not run
                    job = jobs[futures.index(fut)]
                    yield SlideResult(job.slide_id, job.path, "failed", error=f"dask task failed: {exc}")
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
