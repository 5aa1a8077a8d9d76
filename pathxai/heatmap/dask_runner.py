"""Run jobs as Dask tasks: one task per job, on a ``LocalCluster`` or a remote scheduler.

Dask is optional (``pip install 'pathxai[dask]'``) and imported only here, lazily. The runner knows
nothing of heatmaps: the caller passes the task (a picklable callable, e.g.
:func:`pathxai.heatmap.slide_run.run_job` with the run's settings bound) and what a job that could
not run yields. For heatmaps the output directory must be visible to the workers (a shared filesystem
for a remote cluster); the calling process holds its lock.

A worker process that dies (killed, out of memory, a crash in a native library) loses the task it
was running: the scheduler runs that task again on another worker, at most ``max_attempts`` times in
all on a local cluster (a remote scheduler applies its own ``distributed.scheduler.allowed-failures``);
a task that killed every worker it ran on is reported through ``failed`` with a
:class:`~pathxai.errors.WorkerLostError`, and the other tasks go on. Only as many tasks as the
cluster has threads are handed to the scheduler at a time, so a worker that dies takes only the task
it was running with it (the scheduler counts a death against every task queued on that worker); a
finished task's result is released as soon as it is read, so a worker that dies later does not make
the scheduler compute it again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from pathxai.errors import DaskUnavailableError, PathXAIError, WorkerLostError

__all__ = ["DaskUnavailableError", "WorkerLostError", "run_on_dask"]

#: Times a task is started before it is given up when every worker running it dies (local clusters).
MAX_ATTEMPTS = 3

Job = TypeVar("Job")
Result = TypeVar("Result")


def run_on_dask(
    jobs: Sequence[Job],
    task: Callable[[Job], Result],
    failed: Callable[[Job, Exception], Result],
    address: str = "local",
    n_workers: int = 2,
    key: Callable[[Job], str] | None = None,
    max_attempts: int = MAX_ATTEMPTS,
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
    max_attempts
        On a local cluster, how many workers may die running one task before it is given up
        (its result is then ``failed(job, WorkerLostError(...))``).

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
    config = {
        # Non-daemonic workers may start the explain worker processes of pathxai.heatmap.pool.
        "distributed.worker.daemon": False,
        # a task whose worker died runs again elsewhere, at most max_attempts times in all
        "distributed.scheduler.allowed-failures": max(0, max_attempts - 1),
        # a local cluster closes a dead worker's nanny if the restarted worker has not registered
        # within this (Dask's 15 s): on a loaded machine a worker importing torch takes longer, and
        # closed nannies leave the cluster without workers and the batch waiting for ever
        "distributed.deploy.lost-worker-timeout": "10 minutes",
    }
    with dask.config.set(config):
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
            yield from _run_all(client, as_completed, jobs, task, failed, key, address, n_workers)
        finally:
            client.close()
            if cluster is not None:
                cluster.close()


def _run_all(
    client: Any,
    as_completed: Any,
    jobs: Sequence[Job],
    task: Callable[[Job], Result],
    failed: Callable[[Job, Exception], Result],
    key: Callable[[Job], str] | None,
    address: str,
    n_workers: int,
) -> Iterator[Result]:
    """Keep one task per cluster thread submitted; yield each result as it comes, then release it."""
    queue = deque(jobs)
    pending = as_completed()
    job_of: dict[str, Job] = {}

    def slots() -> int:
        if address == "local":
            return max(1, n_workers)  # single-threaded workers
        return max(1, sum(client.nthreads().values()))  # a remote cluster may grow or shrink

    def submit_more() -> None:
        while queue and len(job_of) < slots():
            job = queue.popleft()
            fut = client.submit(task, job, key=None if key is None else key(job), pure=False)
            job_of[fut.key] = job
            pending.add(fut)

    submit_more()
    for done in pending:
        job = job_of.pop(done.key)
        try:
            result = done.result()
        except Exception as exc:  # every worker that ran it died, or the task could not run
            result = failed(job, _explain(exc))
        # forget the result on the cluster: a worker dying later must not make it computed again
        done.release()
        del done
        submit_more()
        yield result


def _explain(exc: Exception) -> Exception:
    """A :class:`WorkerLostError` in place of Dask's ``KilledWorker``; other errors as they are."""
    from distributed.scheduler import KilledWorker

    if not isinstance(exc, KilledWorker):
        return exc
    attempts = exc.allowed_failures + 1
    return WorkerLostError(
        f"the Dask worker process died each of the {attempts} times it computed this task "
        "(killed, out of memory, or a crash in a native library); given up, the other tasks went on",
        hint="run this slide alone without --dask to see what happens, and check the worker's memory limit",
    )
