"""Run jobs as Dask tasks: one task per job, on a ``LocalCluster`` or a remote scheduler.

Dask is optional (``pip install 'pathxai[dask]'``) and imported only here, lazily. The runner knows
nothing of heatmaps: the caller passes the task (a picklable callable, e.g.
:func:`pathxai.pipeline.heatmap_run.run_job` with the run's settings bound) and what a job that could
not run yields. For heatmaps the output directory must be visible to the workers (a shared filesystem
for a remote cluster); the calling process holds its lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from pathxai.errors import DaskUnavailableError, PathXAIError

__all__ = ["DaskUnavailableError", "run_on_dask"]

Job = TypeVar("Job")
Result = TypeVar("Result")


def run_on_dask(
    jobs: Sequence[Job],
    task: Callable[[Job], Result],
    failed: Callable[[Job, Exception], Result],
    address: str = "local",
    n_workers: int = 2,
    key: Callable[[Job], str] | None = None,
) -> Iterator[Result]:
    """Submit ``task(job)`` for every job and yield results as they complete.

    Parameters
    ----------
    jobs
        What to process, one task each.
    task
        Runs one job in a worker process (picklable: sent to the workers with its bound arguments).
    failed
        The result of a job whose task could not run or whose worker died, from the job and the error.
    address
        ``"local"`` for a new ``LocalCluster`` of ``n_workers`` single-threaded processes, else a
        scheduler address such as ``tcp://host:8786``.
    n_workers
        Worker processes of a local cluster.
    key
        A unique task name per job, shown by Dask (default: Dask's own).

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
    cluster = None
    # Non-daemonic workers may start the explain worker processes of pathxai.heatmap.pool.
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
                client.submit(task, job, key=None if key is None else key(job), pure=False) for job in jobs
            ]
            for fut in as_completed(futures):
                try:
                    yield fut.result()
                except Exception as exc:  # a worker died or the task could not run
                    yield failed(jobs[futures.index(fut)], exc)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
