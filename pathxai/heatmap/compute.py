"""The tiles of a slide run through the model and explainer, their results written to the store in runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pathxai.geometry import Grid
from pathxai.heatmap.pool import (
    ExplainedBatch,
    ExplainPool,
    ExplainSpec,
    coalesce,
    iter_explained,
    stream_order,
)
from pathxai.store.heatmap import HeatmapStore
from pathxai.tiling import SlideSource

__all__ = ["ComputeResult", "TileProgress", "compute_tiles"]

#: Called with the number of tiles just finished.
TileProgress = Callable[[int], None]

#: Computed batches are written to the store every this many batches, or at least this often: a run
#: killed with SIGKILL loses at most that much finished work (and the batches still in flight).
_WRITE_EVERY, _WRITE_WITHIN_S = 8, 1.0


@dataclass(frozen=True)
class ComputeResult:
    """Messages of the tiles that could not be read, and where the time went (seconds)."""

    failures: tuple[str, ...] = ()
    timings: dict[str, float] = field(default_factory=dict)


def _todo(store: HeatmapStore, n: int, batch_size: int) -> list[int]:
    """First tile of every batch whose tiles are not all done yet."""
    done = store.done
    return [s for s in range(0, n, batch_size) if not bool(done[s : s + batch_size].all())]


def compute_tiles(
    store: HeatmapStore,
    grid: Grid,
    source: SlideSource,
    spec: ExplainSpec,
    batch_size: int,
    progress: TileProgress | None = None,
    pool: ExplainPool | None = None,
) -> ComputeResult:
    """Run the model + explainer over the batches of ``grid`` not yet done in ``store``.

    Parameters
    ----------
    store
        A writable partial store of ``grid``.
    grid, source
        The slide's tiles and how to open it.
    spec
        The model, method and pooling.
    batch_size
        Tiles per batch (the store's, when resumed).
    progress
        Called with the number of tiles finished (first with those done by an earlier run).
    pool
        Worker processes made with ``spec``; ``None`` computes in this process.

    Returns
    -------
    ComputeResult
        Failure messages and timings; what was computed is written also when a worker fails.
    """
    n = len(grid.specs)
    todo = _todo(store, n, batch_size)
    already = n - sum(min(batch_size, n - s) for s in todo)
    if progress is not None and already:
        progress(already)
    timings = dict.fromkeys(
        ("startup_wait_s", "compute_s", "write_s", "read_cpu_s", "explain_cpu_s", "parent_cpu_s"), 0.0
    )
    if not todo:
        return ComputeResult((), timings)
    if pool is not None:
        timings["startup_wait_s"] = pool.wait_ready()
    order = stream_order(todo, pool.workers if pool is not None else 1)
    batches = iter_explained(source, grid, order, batch_size, spec, pool=pool)
    pending: list[ExplainedBatch] = []
    failures: list[str] = []

    def write_pending() -> None:
        # results are written in runs of neighbouring batches: fewer, larger HDF5 writes and flushes
        t0 = time.perf_counter()
        for run in coalesce(pending):
            store.write_batch(run.start, run.probabilities, run.pooled, failed=~run.ok)
        pending.clear()
        timings["write_s"] += time.perf_counter() - t0

    cpu0 = time.process_time()
    t_wait = last_write = time.perf_counter()
    try:
        for batch in batches:
            t0 = time.perf_counter()
            timings["compute_s"] += t0 - t_wait
            failures.extend(batch.failures)
            timings["read_cpu_s"] += batch.read_s
            timings["explain_cpu_s"] += batch.explain_s
            pending.append(batch)
            if len(pending) >= _WRITE_EVERY or t0 - last_write >= _WRITE_WITHIN_S:
                write_pending()
                last_write = time.perf_counter()
            if progress is not None:
                progress(len(batch))
            t_wait = time.perf_counter()
    finally:
        write_pending()  # what was computed is kept, also when a worker or the reader failed
    timings["parent_cpu_s"] = time.process_time() - cpu0  # all of this process's threads
    return ComputeResult(tuple(failures), timings)
