"""Lazily stream tiles of a slide, in batches, from a pool of prefetching worker processes.

Memory is bounded by ``prefetch`` batches in flight, whatever the slide size. Batches come
out in grid order (deterministic), and the pool shuts down cleanly on error, on Ctrl-C and
when the consumer stops early.
"""

from __future__ import annotations

import multiprocessing as mp
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pathxai.errors import SlideError
from pathxai.geometry import Grid, TileSpec, build_grid
from pathxai.slide import BaseSlide, TissueMask, TissueSettings, detect_tissue, open_slide


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
        try:
            out[i] = slide.read_l0_region(s.l0_x, s.l0_y, s.l0_w, s.l0_h, s.size, s.size)
        except SlideError as exc:
            out[i] = 255
            failed.append((i, f"tile ({s.t_col}, {s.t_row}) at level-0 ({s.l0_x}, {s.l0_y}): {exc}"))
    return out, tuple(failed)


# ---- worker process state ---------------------------------------------------------------
_WORKER_SLIDE: BaseSlide | None = None


def _init_worker(source: SlideSource | BaseSlide) -> None:
    global _WORKER_SLIDE
    _WORKER_SLIDE = source.open() if isinstance(source, SlideSource) else source


def _worker_read(specs: tuple[TileSpec, ...]) -> tuple[np.ndarray, tuple[tuple[int, str], ...]]:
    assert _WORKER_SLIDE is not None, "worker not initialised"
    return read_tiles(_WORKER_SLIDE, specs)


def _batches(grid: Grid, batch_size: int) -> Iterator[tuple[int, tuple[TileSpec, ...]]]:
    for start in range(0, len(grid.specs), batch_size):
        yield start, grid.specs[start : start + batch_size]


def iter_tiles(
    source: SlideSource | BaseSlide | str | Path,
    grid: Grid,
    batch_size: int = 64,
    workers: int = 2,
    prefetch: int | None = None,
) -> Iterator[TileBatch]:
    """Yield the grid's tiles in order, in batches, read by ``workers`` processes.

    Parameters
    ----------
    source
        A :class:`SlideSource` (or path) that each worker opens itself, or an in-memory slide
        (pickled to the workers; with ``workers=0`` it is read in this process).
    grid
        The tiles to read.
    batch_size
        Tiles per batch.
    workers
        Worker processes; 0 reads in the calling process.
    prefetch
        Batches in flight at most (default ``2 * workers``); bounds memory.

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
    if workers == 0:
        slide = source.open() if isinstance(source, SlideSource) else source
        try:
            for start, specs in _batches(grid, batch_size):
                pixels, failed = read_tiles(slide, specs)
                yield TileBatch(start, specs, pixels, grid.tissue[start : start + len(specs)], failed)
        finally:
            if isinstance(source, SlideSource):
                slide.close()
        return
    prefetch = max(1, prefetch if prefetch is not None else 2 * workers)
    # "spawn" keeps workers free of the parent's threads (torch/OpenMP) and file handles.
    ctx = mp.get_context("spawn")
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(source,)
    )
    pending: deque[tuple[int, tuple[TileSpec, ...], Future]] = deque()
    jobs = _batches(grid, batch_size)
    try:
        for start, specs in jobs:
            pending.append((start, specs, pool.submit(_worker_read, specs)))
            if len(pending) >= prefetch:
                break
        while pending:
            start, specs, fut = pending.popleft()
            pixels, failed = fut.result()
            nxt = next(jobs, None)
            if nxt is not None:
                pending.append((nxt[0], nxt[1], pool.submit(_worker_read, nxt[1])))
            yield TileBatch(start, specs, pixels, grid.tissue[start : start + len(specs)], failed)
    finally:
        for _, _, fut in pending:
            fut.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


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
