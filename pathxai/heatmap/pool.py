"""Tiles in, probabilities and pooled relevance out: in this process or data-parallel in worker processes.

Each worker process opens the slide and prepares the model once, then handles whole batches: read
the tiles, run the explainer (one forward + LRP backward) with its own torch threads (one by
default), pool the relevance to the overlay grid and send back only the probabilities and the
pooled relevance (a few kB per tile). The parent writes them to the store in grid order.

With method :data:`NO_RELEVANCE` (``"none"``) a process runs the model's forward pass only (a
:class:`Predictor`: no LRP hooks, no backward) and returns probabilities with empty relevance maps.

Why not one process with several torch threads fed by a tile-reading process: torch's threads meet at
a barrier after every operation, so a reader that takes a core away, even briefly, stalls all of
them; on a 2-core machine that cost more than the reading itself (``benchmarks/heatmap.md``).
Single-threaded workers that each read and compute have no barrier to stall.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import Any

import numpy as np

from pathxai.geometry import Grid, TileSpec
from pathxai.slide import BaseSlide
from pathxai.stitch import pool_tiles
from pathxai.store.layout import NO_RELEVANCE
from pathxai.tiling import SlideSource, WorkerPool, cached_slide, in_order, read_tiles

__all__ = [
    "NO_RELEVANCE",
    "ExplainPool",
    "ExplainSpec",
    "ExplainedBatch",
    "Prediction",
    "Predictor",
    "coalesce",
    "explain_tiles",
    "iter_explained",
    "prepared",
    "stream_order",
]


@dataclass(frozen=True)
class ExplainSpec:
    """How a process prepares its model and what it returns (picklable).

    Attributes
    ----------
    model, method, channels_last
        The model reference, the attribution method and whether the model runs channels-last, as
        in the run's settings (:class:`pathxai.heatmap.settings.HeatmapSettings`).
    canvas_downsample
        Tile pixels per overlay pixel (relevance is sum-pooled by it).
    threads
        Torch threads of each worker process.
    warmup
        Tiles of a blank batch each worker explains once when it starts (0: none), so the
        one-off set-up of the model's kernels for the batch shape happens while the parent
        detects tissue rather than in the first batches.
    """

    model: str
    method: str
    channels_last: bool
    canvas_downsample: int
    threads: int = 1
    warmup: int = 0


@dataclass(frozen=True)
class ExplainedBatch:
    """The model's output for one batch of tiles.

    Attributes
    ----------
    start
        Index of the batch's first tile in the grid.
    probabilities
        ``(B, n_classes)`` float32; NaN rows for unreadable tiles.
    pooled
        ``(B, size // canvas_downsample, size // canvas_downsample)`` float32 target-class relevance,
        sum-pooled; 0 for unreadable tiles; ``(B, 0, 0)`` for method ``"none"``.
    ok
        ``(B,)`` True where the tile was read.
    failures
        One message per unreadable tile.
    read_s, explain_s
        Seconds spent reading the tiles and explaining them (preprocessing, model, pooling).
    """

    start: int
    probabilities: np.ndarray
    pooled: np.ndarray
    ok: np.ndarray
    failures: tuple[str, ...]
    read_s: float = 0.0
    explain_s: float = 0.0

    def __len__(self) -> int:
        return len(self.ok)


@dataclass(frozen=True)
class Prediction:
    """A :class:`Predictor`'s output: probabilities, and no relevance."""

    probabilities: np.ndarray
    relevance: None = None


class Predictor:
    """The model's class probabilities of a batch: one forward pass, no hooks, no backward pass.

    Called like a :class:`pathxai.explain.Explainer` (``predictor(x, target)``), for method ``"none"``.

    Parameters
    ----------
    model
        The model (put in eval mode; moved to channels-last memory format when asked).
    channels_last
        Run it in channels-last memory format.
    """

    def __init__(self, model: Any, channels_last: bool) -> None:
        import torch

        self.model = model.eval()
        self.channels_last = channels_last
        if channels_last:
            self.model.to(memory_format=torch.channels_last)

    def __call__(self, x: Any, target: int | None = None) -> Prediction:
        """Probabilities ``(B, C)`` of the batch ``x`` (``target`` is ignored)."""
        import torch

        with torch.inference_mode():
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            logits = self.model(x).float()
            return Prediction(torch.softmax(logits, dim=1).numpy())


# ---- model and explainer, prepared once per process -----------------------------------------
_PREPARED: dict[tuple[str, str, bool], tuple[Any, Any, Any]] = {}


def prepared(model_ref: str, method: str, channels_last: bool) -> tuple[Any, Any, Any]:
    """Return ``(model, card, explainer)`` for a model reference and method, cached per process.

    For method ``"none"`` the explainer is a :class:`Predictor`.
    """
    key = (str(model_ref), method, channels_last)
    if key not in _PREPARED:
        from pathxai.model import load_model_with_card

        model, card = load_model_with_card(model_ref)
        if method == NO_RELEVANCE:
            explainer: Any = Predictor(model, channels_last)
        else:
            from pathxai.explain import Explainer

            explainer = Explainer(model, method, target_class=card.tumour_index, channels_last=channels_last)
        _PREPARED.clear()  # one model per process at a time bounds memory
        _PREPARED[key] = (model, card, explainer)
    return _PREPARED[key]


def explain_tiles(
    slide: BaseSlide,
    specs: Sequence[TileSpec],
    start: int,
    card: Any,
    explainer: Any,
    canvas_downsample: int,
) -> ExplainedBatch:
    """Read ``specs`` and explain them: probabilities and target relevance sum-pooled to the canvas."""
    import torch

    from pathxai.model import preprocess

    t0 = time.perf_counter()
    pixels, failed = read_tiles(slide, specs)
    t1 = time.perf_counter()
    with torch.inference_mode(False):
        result = explainer(preprocess(pixels, card), int(card.tumour_index))
    probs = result.probabilities.astype(np.float32)
    if result.relevance is None:  # method "none"
        pooled = np.zeros((len(specs), 0, 0), np.float32)
    else:
        pooled = _sum_pool(result.relevance, canvas_downsample)
    ok = np.ones(len(specs), dtype=bool)
    for i, _ in failed:
        ok[i] = False
    probs[~ok] = np.nan
    pooled[~ok] = 0.0
    t2 = time.perf_counter()
    return ExplainedBatch(start, probs, pooled, ok, tuple(msg for _, msg in failed), t1 - t0, t2 - t1)


def _sum_pool(maps: np.ndarray, canvas_downsample: int) -> np.ndarray:
    """:func:`pathxai.stitch.pool_tiles` (``"sum"``) in torch: the same sums, 6x faster on a batch."""
    import torch

    k = canvas_downsample
    if k == 1 or maps.ndim != 3 or maps.shape[1] % k or maps.shape[2] % k:
        return pool_tiles(maps, k, "sum")  # (it also says what is wrong with the shape)
    rel = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    return torch.nn.functional.avg_pool2d(rel[:, None], k, divisor_override=1)[:, 0].numpy()


def _init_worker(spec: ExplainSpec) -> None:
    import torch

    torch.set_num_threads(spec.threads)
    _model, card, explainer = prepared(spec.model, spec.method, spec.channels_last)
    if spec.warmup > 0:
        blank = np.full((spec.warmup, card.input_size, card.input_size, 3), 255, dtype=np.uint8)
        from pathxai.model import preprocess

        with torch.inference_mode(False):
            explainer(preprocess(blank, card), int(card.tumour_index))


def _ready() -> None:
    """A no-op job: done once a worker has started and prepared its model."""


def _worker_explain(
    spec: ExplainSpec, source: SlideSource, specs: tuple[TileSpec, ...], start: int
) -> ExplainedBatch:
    _model, card, explainer = prepared(spec.model, spec.method, spec.channels_last)
    return explain_tiles(cached_slide(source), specs, start, card, explainer, spec.canvas_downsample)


class ExplainPool(WorkerPool):
    """Worker processes that read and explain batches of tiles; reusable across slides.

    Parameters
    ----------
    workers
        Number of processes (>= 1), see :class:`~pathxai.tiling.WorkerPool`.
    spec
        The model, method and pooling every batch uses.
    """

    def __init__(self, workers: int, spec: ExplainSpec) -> None:
        super().__init__(workers, _init_worker, (spec,))
        self.spec = spec
        # start every worker now, so their start-up (torch import, model) overlaps the caller's work
        self._ready = [self._executor.submit(_ready) for _ in range(workers)]

    def wait_ready(self) -> float:
        """Block until the workers have started; return the seconds waited."""
        t0 = time.perf_counter()
        for fut in self._ready:
            fut.result()
        return time.perf_counter() - t0

    @property
    def broken(self) -> bool:
        """True once a worker died abruptly (e.g. killed for memory): the pool takes no more work."""
        try:
            self._executor.submit(_ready)
        except (BrokenProcessPool, RuntimeError):
            return True
        return False

    def submit(self, source: SlideSource, specs: tuple[TileSpec, ...], start: int) -> Future:
        """Queue one batch; the future gives an :class:`ExplainedBatch`."""
        return self._executor.submit(_worker_explain, self.spec, source, specs, start)


def stream_order(starts: Sequence[int], streams: int) -> list[int]:
    """Cut ``starts`` into ``streams`` contiguous parts and interleave them (a0, b0, a1, b1, ...).

    With as many streams as workers, and workers taking jobs in turn, each worker mostly reads its
    own part of the slide, so the TIFF tiles it decodes stay in its own cache instead of being
    decoded again by the next worker (tiles of neighbouring batches share TIFF tiles).
    """
    n = len(starts)
    if streams <= 1 or n < 2 * streams:
        return list(starts)
    parts = [list(starts[i * n // streams : (i + 1) * n // streams]) for i in range(streams)]
    out: list[int] = []
    for i in range(max(len(part) for part in parts)):
        out.extend(part[i] for part in parts if i < len(part))
    return out


def coalesce(batches: Sequence[ExplainedBatch]) -> list[ExplainedBatch]:
    """Merge batches that follow each other in the grid into single batches, in grid order."""
    merged: list[list[ExplainedBatch]] = []
    for b in sorted(batches, key=lambda b: b.start):
        if merged and merged[-1][-1].start + len(merged[-1][-1]) == b.start:
            merged[-1].append(b)
        else:
            merged.append([b])
    return [
        run[0]
        if len(run) == 1
        else ExplainedBatch(
            run[0].start,
            np.concatenate([b.probabilities for b in run]),
            np.concatenate([b.pooled for b in run]),
            np.concatenate([b.ok for b in run]),
            tuple(m for b in run for m in b.failures),
            sum(b.read_s for b in run),
            sum(b.explain_s for b in run),
        )
        for run in merged
    ]


def iter_explained(
    source: SlideSource,
    grid: Grid,
    starts: Sequence[int],
    batch_size: int,
    spec: ExplainSpec,
    pool: ExplainPool | None = None,
    workers: int = 0,
) -> Iterator[ExplainedBatch]:
    """Explain the batches of ``grid`` that begin at ``starts``, yielding them in that order.

    Parameters
    ----------
    source
        The slide.
    grid
        Its full grid.
    starts
        First tile index of each batch to compute (batches are ``batch_size`` tiles).
    batch_size
        Tiles per batch.
    spec
        Model, method and pooling.
    pool
        An :class:`ExplainPool` to use (not closed here; it must have been made with ``spec``).
    workers
        Without ``pool``: worker processes of a private pool; 0 computes in this process.

    Yields
    ------
    ExplainedBatch
        One per start, in order; at most ``2 x workers`` batches are in flight.
    """
    jobs = ((s, grid.specs[s : s + batch_size]) for s in starts)
    if pool is None and workers == 0:
        _model, card, explainer = prepared(spec.model, spec.method, spec.channels_last)
        slide = source.open()
        try:
            for start, specs in jobs:
                yield explain_tiles(slide, specs, start, card, explainer, spec.canvas_downsample)
        finally:
            slide.close()
        return
    active = pool if pool is not None else ExplainPool(workers, spec)
    results = in_order(lambda job: active.submit(source, job[1], job[0]), jobs, 2 * active.workers)
    try:
        for _job, batch in results:
            yield batch
    finally:
        results.close()  # cancel what is still queued before the pool shuts down
        if pool is None:
            active.close()
