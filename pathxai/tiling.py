"""Lazily stream tiles of a slide, in batches, from a pool of prefetching worker processes.

Memory is bounded by ``prefetch`` batches in flight, whatever the slide size. Batches come
out in grid order (deterministic), and the pool shuts down cleanly on error, on Ctrl-C and
when the consumer stops early.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import platform
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import numpy as np

from pathxai.errors import SlideError, TissueError
from pathxai.geometry import Grid, TileSpec, build_grid
from pathxai.slide import BaseSlide, TissueMask, TissueSettings, detect_tissue, open_slide

J = TypeVar("J")


@dataclass(frozen=True)
class SlideSource:
    """How to (re)open a slide in another process: a path and an optional mpp override."""

    path: str
    mpp: float | None = None

    def open(self) -> BaseSlide:
        """Open the slide."""
        return open_slide(self.path, mpp=self.mpp)


@dataclass(frozen=True)
class Tile:
    """One tile: where it is, its pixels at the target mpp, and its tissue fraction."""

    spec: TileSpec
    pixels: np.ndarray
    tissue: float


@dataclass(frozen=True)
class TileBatch:
    """A batch of tiles in grid order.

    Attributes
    ----------
    start
        Index of the first tile in the grid.
    specs
        The tiles' specs.
    pixels
        RGB uint8 ``(B, size, size, 3)``.
    tissue
        ``(B,)`` tissue fractions.
    failed
        ``(index in batch, message)`` for tiles that could not be read (their pixels are white).
    """

    start: int
    specs: tuple[TileSpec, ...]
    pixels: np.ndarray
    tissue: np.ndarray
    failed: tuple[tuple[int, str], ...] = field(default=())

    def __len__(self) -> int:
        return len(self.specs)

    @property
    def tiles(self) -> list[Tile]:
        """The batch as individual :class:`Tile` objects."""
        return [
            Tile(spec=s, pixels=self.pixels[i], tissue=float(self.tissue[i]))
            for i, s in enumerate(self.specs)
        ]

    @property
    def ok(self) -> np.ndarray:
        """Boolean ``(B,)``: True where the tile was read successfully."""
        mask = np.ones(len(self.specs), dtype=bool)
        for i, _ in self.failed:
            mask[i] = False
        return mask


def read_tiles(slide: BaseSlide, specs: Sequence[TileSpec]) -> tuple[np.ndarray, tuple[tuple[int, str], ...]]:
    """Read ``specs`` from an open slide; unreadable tiles come back white and are reported.

    Returns
    -------
    tuple[np.ndarray, tuple[tuple[int, str], ...]]
        ``(B, size, size, 3)`` uint8 pixels and the failures.
    """
    if not specs:
        return np.zeros((0, 0, 0, 3), dtype=np.uint8), ()
    size = specs[0].size
    out = np.empty((len(specs), size, size, 3), dtype=np.uint8)
    failed: list[tuple[int, str]] = []
    for i, s in enumerate(specs):
        # the exact level-0 window of the tile's target-mpp square (l0_* are its rounded bounds)
        scale = s.mpp / slide.mpp
        try:
            out[i] = slide.read_l0_region(
                s.m_x * scale, s.m_y * scale, s.size * scale, s.size * scale, s.size, s.size
            )
        except SlideError as exc:
            out[i] = 255
            failed.append((i, f"tile ({s.t_col}, {s.t_row}) at level-0 ({s.l0_x}, {s.l0_y}): {exc}"))
    return out, tuple(failed)


# ---- worker processes ---------------------------------------------------------------------
#: Slides opened by this worker process, most recent last (a small cache: one batch job names
#: its slide, and consecutive jobs almost always name the same one).
_WORKER_SLIDES: dict[SlideSource, BaseSlide] = {}
_WORKER_CACHE = 2


def cached_slide(source: SlideSource) -> BaseSlide:
    """The slide of ``source``, opened once per (worker) process and kept for the next batches."""
    slide = _WORKER_SLIDES.pop(source, None) or source.open()
    _WORKER_SLIDES[source] = slide
    while len(_WORKER_SLIDES) > _WORKER_CACHE:
        oldest = next(iter(_WORKER_SLIDES))
        _WORKER_SLIDES.pop(oldest).close()
    return slide


def _worker_read(
    source: SlideSource | BaseSlide, specs: tuple[TileSpec, ...]
) -> tuple[np.ndarray, tuple[tuple[int, str], ...]]:
    return read_tiles(cached_slide(source) if isinstance(source, SlideSource) else source, specs)


def _exit_with(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:  # re-parented: the parent died without closing the pool
            os._exit(0)


def watch_parent() -> None:
    """In a worker process: exit as soon as the parent is gone.

    A parent killed with SIGKILL cannot shut its pool down, and a spawned pool worker holds its own
    end of the job queue, so it would otherwise wait for work forever (holding its memory).
    """
    threading.Thread(
        target=_exit_with, args=(os.getppid(),), daemon=True, name="pathxai-parent-watch"
    ).start()


#: glibc ``mallopt`` parameters (``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def reuse_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 256 << 20) -> bool:
    """In a worker process: make glibc keep freed batch buffers for reuse instead of unmapping them.

    By default glibc serves allocations above an adaptive threshold (128 kB at start) with fresh
    ``mmap`` pages and unmaps them on free. A worker allocates and frees the same batch-sized arrays
    and activations for every batch, and in a pool worker that meant ~900 page faults per tile, a
    quarter of its CPU in system time (``benchmarks/heatmap.md``). Fixed thresholds (which also
    turn the adaptation off) keep those buffers in the heap.

    Returns
    -------
    bool
        False where the C library is not glibc, or glibc refused a setting.
    """
    if not (0 <= mmap_threshold < 1 << 31 and 0 <= trim_threshold < 1 << 31):
        raise ValueError(f"thresholds must fit a C int, got {mmap_threshold} and {trim_threshold}")
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )


def _start_worker(initializer: Callable[..., None] | None, initargs: tuple[Any, ...]) -> None:
    watch_parent()
    reuse_freed_memory()
    if initializer is not None:
        initializer(*initargs)


class WorkerPool:
    """Spawned worker processes, reusable across slides, that exit when their parent dies.

    Parameters
    ----------
    workers
        Number of processes (>= 1). They start with the "spawn" method, so they hold none
        of the parent's threads (torch/OpenMP) or file handles.
    initializer, initargs
        Run once in each worker after it starts (e.g. to prepare a model).
    """

    def __init__(
        self, workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
    ) -> None:
        if workers < 1:
            raise ValueError(f"a {type(self).__name__} needs at least one worker, got {workers}")
        self.workers = workers
        self._executor = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=mp.get_context("spawn"),
            initializer=_start_worker,
            initargs=(initializer, initargs),
        )

    def close(self) -> None:
        """Stop the workers, cancelling queued jobs."""
        self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_order(
    submit: Callable[[J], Future], jobs: Iterable[J], in_flight: int
) -> Generator[tuple[J, Any], None, None]:
    """Submit ``jobs`` with at most ``in_flight`` pending; yield ``(job, result)`` in submission order.

    Memory stays bounded by ``in_flight`` results whatever the number of jobs; jobs still queued
    when the consumer stops early (or on error) are cancelled.
    """
    queue = iter(jobs)
    pending: deque[tuple[J, Future]] = deque()
    try:
        for job in queue:
            pending.append((job, submit(job)))
            if len(pending) >= max(1, in_flight):
                break
        while pending:
            job, fut = pending.popleft()
            result = fut.result()
            nxt = next(queue, None)
            if nxt is not None:
                pending.append((nxt, submit(nxt)))
            yield job, result
    finally:
        for _, fut in pending:
            fut.cancel()


class TilePool(WorkerPool):
    """A pool of tile-reading worker processes (see :class:`WorkerPool`)."""

    def __init__(self, workers: int = 2) -> None:
        super().__init__(workers)

    def submit(self, source: SlideSource | BaseSlide, specs: tuple[TileSpec, ...]) -> Future:
        """Queue one batch read; the future gives ``(pixels, failed)``."""
        return self._executor.submit(_worker_read, source, specs)


def _batches(grid: Grid, batch_size: int) -> Iterator[tuple[int, tuple[TileSpec, ...]]]:
    for start in range(0, len(grid.specs), batch_size):
        yield start, grid.specs[start : start + batch_size]


def iter_tiles(
    source: SlideSource | BaseSlide | str | Path,
    grid: Grid,
    batch_size: int = 64,
    workers: int = 2,
    prefetch: int | None = None,
    pool: TilePool | None = None,
) -> Iterator[TileBatch]:
    """Yield the grid's tiles in order, in batches, read by worker processes.

    Parameters
    ----------
    source
        A :class:`SlideSource` (or path) that each worker opens itself, or an in-memory slide
        (pickled with every job; with ``workers=0`` it is read in this process).
    grid
        The tiles to read.
    batch_size
        Tiles per batch.
    workers
        Worker processes of a private pool; 0 reads in the calling process. Ignored with ``pool``.
    prefetch
        Batches in flight at most (default ``2 * workers``); bounds memory.
    pool
        A :class:`TilePool` to reuse (not closed here), which saves the process start-up per slide.

    Yields
    ------
    TileBatch
        Batches in grid order; unreadable tiles are reported in ``failed``.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if isinstance(source, (str, Path)):
        source = SlideSource(str(source))
    if pool is None and workers == 0:
        slide = source.open() if isinstance(source, SlideSource) else source
        try:
            for start, specs in _batches(grid, batch_size):
                pixels, failed = read_tiles(slide, specs)
                yield TileBatch(start, specs, pixels, grid.tissue[start : start + len(specs)], failed)
        finally:
            if isinstance(source, SlideSource):
                slide.close()
        return
    active = pool if pool is not None else TilePool(workers)
    prefetch = prefetch if prefetch is not None else 2 * active.workers
    results = in_order(lambda job: active.submit(source, job[1]), _batches(grid, batch_size), prefetch)
    try:
        for (start, specs), (pixels, failed) in results:
            yield TileBatch(start, specs, pixels, grid.tissue[start : start + len(specs)], failed)
    finally:
        results.close()  # cancel what is still queued before the pool shuts down
        if pool is None:
            active.close()


def tile_slide(
    slide: BaseSlide,
    mpp: float,
    size: int,
    stride: int | None = None,
    min_tissue: float = 0.25,
    tissue: TissueMask | TissueSettings | None = None,
) -> tuple[Grid, TissueMask]:
    """Detect tissue (unless a mask is given) and build the grid of tissue tiles.

    Parameters
    ----------
    slide
        An open slide with a known resolution.
    mpp, size, stride
        Target resolution, tile side and step (pixels at ``mpp``).
    min_tissue
        Minimum tissue fraction for a tile to be kept.
    tissue
        A precomputed mask, or settings for detection.

    Returns
    -------
    tuple[Grid, TissueMask]
        The grid and the mask it was filtered with.
    """
    mask = tissue if isinstance(tissue, TissueMask) else detect_tissue(slide, tissue)
    w, h = slide.dimensions
    grid = build_grid(w, h, slide.mpp, mpp, size, stride, mask.mask, mask.mpp, min_tissue)
    return grid, mask


def empty_grid_error(path: str | Path, grid: Grid, tissue_fraction: float, min_tissue: float) -> TissueError:
    """Say why a slide yields no tile: too small, no tissue, or too little tissue per tile."""
    if grid.m_width < grid.size or grid.m_height < grid.size:
        return TissueError(
            f"slide is {grid.m_width}x{grid.m_height} px at {grid.mpp:g} µm/px, smaller than one "
            f"{grid.size} px tile; nothing to tile",
            path=path,
            hint="use a smaller --size or a finer --mpp",
        )
    if tissue_fraction == 0:
        return TissueError(
            "no tissue detected on the slide; nothing to tile",
            path=path,
            hint="check that the slide is not blank, or tune the tissue settings",
        )
    return TissueError(
        f"no tile has at least {min_tissue:g} tissue (tissue covers {100 * tissue_fraction:.1f}% of the slide)",
        path=path,
        hint="lower --min-tissue",
    )
