"""Slide heatmaps: tiles -> model + LRP (one forward/backward) -> resumable store -> stitched canvas -> exports.

:func:`heatmap_slide` processes one slide; :func:`heatmap_batch` many (locally or one Dask task per
slide, see :mod:`pathxai.pipeline.dask_runner`), with resume, per-slide summaries and a failure report.

Per slide, under ``OUT``: ``<id>.h5`` (:class:`~pathxai.store.heatmap.HeatmapStore`), ``<id>.tif``
(pyramidal RGB overlay at the overlay mpp, OpenSlide-readable), ``<id>.png`` (overview with colour
bars), ``<id>.geojson`` (QuPath annotations of high-probability and high-relevance regions, level-0
coordinates) and ``<id>.json`` (summary). Tiles are read and explained by worker processes, one
torch thread each (:mod:`pathxai.pipeline.explain_pool`), and written here in grid order. Jobs come from
:mod:`~pathxai.pipeline.heatmap_jobs`, the canvas from :mod:`~pathxai.pipeline.heatmap_canvas`, the
exports from :mod:`~pathxai.pipeline.heatmap_exports`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing as mp
import os
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pathxai import __version__
from pathxai.errors import PathXAIError, ResolutionError, StoreError, StoreMismatchError
from pathxai.geometry import Grid
from pathxai.jsonio import write_json
from pathxai.pipeline.explain_pool import (
    ExplainedBatch,
    ExplainPool,
    ExplainSpec,
    coalesce,
    iter_explained,
    prepared,
    stream_order,
)
from pathxai.pipeline.heatmap_canvas import canvas_bands, canvas_shape
from pathxai.pipeline.heatmap_exports import write_exports
from pathxai.pipeline.heatmap_jobs import SlideJob, resolve_jobs
from pathxai.pipeline.slides import empty_grid_error
from pathxai.slide import BaseSlide, TissueSettings, open_slide
from pathxai.slide.fingerprint import slide_fingerprint
from pathxai.stitch import WINDOWS, n_levels
from pathxai.store.heatmap import HeatmapStore, final_path, partial_path
from pathxai.store.lock import OutputLock
from pathxai.tiling import SlideSource, tile_slide

__all__ = [
    "EXPORTS",
    "BatchResult",
    "HeatmapSettings",
    "SlideJob",
    "SlideResult",
    "heatmap_batch",
    "heatmap_slide",
    "resolve_jobs",
]

#: Export formats written beside each store.
EXPORTS = ("tif", "png", "geojson")

#: Called with the number of tiles just finished.
TileProgress = Callable[[int], None]


@dataclass(frozen=True)
class HeatmapSettings:
    """Everything that determines a heatmap run (picklable, sent to Dask workers).

    Attributes
    ----------
    model
        ``"default"`` or a model directory / weights / card path.
    method
        A name from :data:`pathxai.explain.METHODS`.
    mpp, size, stride
        Tile resolution (µm/px), side and step in pixels; ``None``: the model card's mpp and
        input size, stride = size.
    canvas_downsample
        Target pixels per canvas pixel ``k`` (overlay mpp = ``mpp * k``); must divide size and stride.
    min_tissue
        Minimum tissue fraction of a tile.
    tissue
        Tissue detection settings.
    window
        Overlap weighting (:data:`pathxai.stitch.WINDOWS`).
    batch_size
        Tiles per model batch.
    workers
        Processes that read *and* explain tiles, each with its own model (0: everything in this
        process). ``None`` (default): one per CPU core of the machine that runs the slide; with
        ``dask="local"``, the cores shared among the cluster's workers.
    threads
        Torch threads of each computing process (``None``: 1 per worker process, torch's default
        in this process with ``workers=0``).
    exports
        Which of :data:`EXPORTS` to write.
    overwrite
        Replace existing stores made with other settings instead of refusing.
    opacity
        PNG overlay opacity.
    probability_threshold
        Probability above which a region is exported as ``Tumor``.
    channels_last
        Run the model in channels-last memory format (default; ~1.5-2x faster LRP on this project's
        CPU for the default model, same results within float noise).
    """

    model: str = "default"
    method: str = "lrp"
    mpp: float | None = None
    size: int | None = None
    stride: int | None = None
    canvas_downsample: int = 4
    min_tissue: float = 0.25
    tissue: TissueSettings = field(default_factory=TissueSettings)
    window: str = "count"
    batch_size: int = 16
    workers: int | None = None
    threads: int | None = None
    exports: tuple[str, ...] = EXPORTS
    overwrite: bool = False
    opacity: float = 0.6
    probability_threshold: float = 0.5
    channels_last: bool = True

    def __post_init__(self) -> None:
        if self.canvas_downsample < 1:
            raise ValueError(f"canvas_downsample must be >= 1, got {self.canvas_downsample}")
        if self.window not in WINDOWS:
            raise ValueError(f"window must be one of {WINDOWS}, got {self.window!r}")
        if self.batch_size < 1 or (self.workers is not None and self.workers < 0):
            raise ValueError("batch_size must be >= 1 and workers >= 0")
        unknown = set(self.exports) - set(EXPORTS)
        if unknown:
            raise ValueError(f"unknown exports {sorted(unknown)}; choose from {EXPORTS}")

    @property
    def n_workers(self) -> int:
        """``workers``, or one per CPU core of this machine when it is ``None``."""
        return default_workers() if self.workers is None else self.workers


@dataclass
class SlideResult:
    """Outcome of one slide: ``status`` is ``"done"``, ``"skipped"`` (already complete) or ``"failed"``."""

    slide_id: str
    path: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BatchResult:
    """Outcome of a batch: every slide's result and the failures file."""

    results: list[SlideResult]
    failures_path: Path

    @property
    def failed(self) -> list[SlideResult]:
        """The slides that failed."""
        return [r for r in self.results if r.status == "failed"]


def _run_params(settings: HeatmapSettings, card: Any) -> tuple[float, int, int, int]:
    mpp = float(settings.mpp if settings.mpp is not None else card.mpp)
    size = int(settings.size if settings.size is not None else card.input_size)
    stride = int(settings.stride if settings.stride is not None else size)
    k = settings.canvas_downsample
    if size % k or stride % k:
        raise ValueError(
            f"tile size {size} and stride {stride} must be divisible by the canvas downsample {k} "
            "(exact alignment); choose --size/--stride multiples of it or another --canvas-downsample"
        )
    return mpp, size, stride, k


def _expected_attrs(
    settings: HeatmapSettings,
    card: Any,
    slide: BaseSlide,
    job: SlideJob,
    grid_params: tuple[float, int, int, int],
) -> dict[str, Any]:
    mpp, size, stride, k = grid_params
    return {
        "slide": str(job.path),
        "slide_fingerprint": slide_fingerprint(job.path),
        "slide_id": job.slide_id,
        "slide_mpp": float(slide.mpp),
        "mpp_source": slide.resolution.source,
        "l0_width": int(slide.dimensions[0]),
        "l0_height": int(slide.dimensions[1]),
        "mpp": mpp,
        "size": size,
        "stride": stride,
        "overlay_mpp": mpp * k,
        "canvas_downsample": k,
        "min_tissue": float(settings.min_tissue),
        "tissue_settings": settings.tissue.to_dict(),
        "model_sha256": card.weights_sha256,
        "model_name": str(settings.model) if str(settings.model) == "default" else Path(settings.model).name,
        "model_arch": card.arch,
        "classes": list(card.classes),
        "method": settings.method,
        "target_class": int(card.tumour_index),
        "window": settings.window,
        "channels_last": bool(settings.channels_last),
        "pathxai_version": __version__,
    }


def _remove_outputs(out_dir: Path, slide_id: str) -> None:
    for suffix in (".h5", ".partial.h5", ".tif", ".png", ".geojson", ".json"):
        (out_dir / f"{slide_id}{suffix}").unlink(missing_ok=True)


def _output_paths(out_dir: Path, slide_id: str, exports: Sequence[str]) -> dict[str, Path]:
    paths = {"h5": final_path(out_dir, slide_id), "json": out_dir / f"{slide_id}.json"}
    for ext in exports:
        paths[ext] = out_dir / f"{slide_id}.{ext}"
    return paths


#: Computed batches are written to the store every this many batches, or at least this often: a run
#: killed with SIGKILL loses at most that much finished work (and the batches still in flight).
_WRITE_EVERY, _WRITE_WITHIN_S = 8, 1.0


def explain_spec(settings: HeatmapSettings, k: int) -> ExplainSpec:
    """What every computing process needs to know about the model for these settings."""
    return ExplainSpec(
        settings.model,
        settings.method,
        settings.channels_last,
        k,
        settings.threads or 1,
        warmup=settings.batch_size,
    )


def _compute(
    store: HeatmapStore,
    grid: Grid,
    source: SlideSource,
    settings: HeatmapSettings,
    batch_size: int,
    k: int,
    progress: TileProgress | None,
    pool: ExplainPool | None,
) -> tuple[list[str], dict[str, float]]:
    """Run the model + explainer over the batches not yet done; return failure messages and timings."""
    done = store.done
    n = len(grid.specs)
    todo = [s for s in range(0, n, batch_size) if not bool(done[s : s + batch_size].all())]
    if progress is not None and n - sum(min(batch_size, n - s) for s in todo):
        progress(n - sum(min(batch_size, n - s) for s in todo))
    failures: list[str] = []
    timings = {
        "startup_wait_s": 0.0,
        "compute_s": 0.0,
        "write_s": 0.0,
        "read_cpu_s": 0.0,
        "explain_cpu_s": 0.0,
        "parent_cpu_s": 0.0,
    }
    if not todo:
        return failures, timings
    if pool is not None:
        timings["startup_wait_s"] = pool.wait_ready()
    order = stream_order(todo, pool.workers if pool is not None else 1)
    batches = iter_explained(source, grid, order, batch_size, explain_spec(settings, k), pool=pool)
    pending: list[ExplainedBatch] = []

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
    return failures, timings


def _open_or_create(
    job: SlideJob,
    out_dir: Path,
    grid: Grid,
    expected: dict[str, Any],
    n_classes: int,
    tile_px: int,
    batch_size: int,
    overwrite: bool,
) -> tuple[HeatmapStore, bool]:
    """Resume a matching partial store or create one; returns ``(store, resumed)``."""
    ppath = partial_path(out_dir, job.slide_id)
    t_index = np.array([(s.t_col, s.t_row) for s in grid.specs], dtype=np.int32).reshape(-1, 2)
    if ppath.exists() and not overwrite:
        try:
            store = HeatmapStore.resume(ppath, expected)
        except StoreMismatchError:
            raise  # another slide's or other settings' work in progress: never thrown away
        except StoreError:
            ppath.unlink(missing_ok=True)  # unreadable leftovers of a killed run: start over
        else:
            if store.n_tiles == len(grid.specs) and np.array_equal(store.coords, grid.coords()):
                return store, True
            store.close()
            raise StoreError(
                "partial store has other tiles than this run's grid (slide changed?)",
                path=ppath,
                hint="rerun with --overwrite to start this slide again",
            )
    store = HeatmapStore.create(
        ppath,
        coords=grid.coords(),
        m_coords=grid.m_coords(),
        t_index=t_index,
        tissue=grid.tissue,
        n_classes=n_classes,
        tile_px=tile_px,
        attrs={**expected, "batch_size": batch_size},
    )
    return store, False


def _exports(
    store_path: Path, slide: BaseSlide, paths: dict[str, Path], settings: HeatmapSettings
) -> dict[str, float]:
    return write_exports(
        store_path, slide, paths, settings.exports, settings.opacity, settings.probability_threshold
    )


def _summary(store_path: Path, extra: dict[str, Any]) -> dict[str, Any]:
    with HeatmapStore.open(store_path) as store:
        attrs = store.attrs
        probs = store.probabilities
        failed = store.failed
        tumour = int(attrs["target_class"])
        p = probs[~failed, tumour] if len(probs) else np.zeros(0)
        summary = {
            "slide": attrs["slide"],
            "slide_id": attrs["slide_id"],
            "n_tiles": store.n_tiles,
            "n_failed_tiles": int(failed.sum()),
            "mean_probability": float(p.mean()) if p.size else None,
            "max_probability": float(p.max()) if p.size else None,
            "fraction_tiles_above_0.5": float((p > 0.5).mean()) if p.size else None,
            "relevance_vmax": float(attrs["relevance_vmax"]),
            "canvas_shape": list(store.level_shape(0)),
            "levels": store.n_levels,
            "settings": {
                k: attrs[k]
                for k in (
                    "mpp",
                    "size",
                    "stride",
                    "overlay_mpp",
                    "slide_mpp",
                    "mpp_source",
                    "method",
                    "model_name",
                    "model_sha256",
                    "window",
                    "min_tissue",
                )
            },
        }
    summary.update(extra)
    return summary


def heatmap_slide(
    path: str | Path,
    out_dir: str | Path,
    settings: HeatmapSettings | None = None,
    slide_id: str | None = None,
    slide_mpp: float | None = None,
    progress: TileProgress | None = None,
    on_start: Callable[[str, int], None] | None = None,
    pool: ExplainPool | None = None,
) -> SlideResult:
    """Compute (or resume, or skip when complete) the heatmap of one slide.

    Parameters
    ----------
    path
        Slide file.
    out_dir
        Output directory (the caller holds its lock when running several slides; see
        :func:`heatmap_batch`).
    settings
        Run settings.
    slide_id
        Output name (default: the file stem).
    slide_mpp
        Level-0 µm/px override.
    progress
        Called with the number of tiles finished after each batch.
    on_start
        Called with ``(slide_id, n_tiles)`` once the grid is known.
    pool
        Worker processes to compute with (made with :func:`explain_spec` of these settings);
        ``None`` starts ``settings.n_workers`` of them for this slide (none with ``workers=0``).

    Returns
    -------
    SlideResult
        ``status`` ``"done"`` or ``"skipped"``.

    Raises
    ------
    PathXAIError
        For an unreadable slide, a missing resolution, a bad model, or a store from other settings.
    """
    settings = settings or HeatmapSettings()
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job = SlideJob(str(path), slide_id or Path(path).stem, slide_mpp)
    if settings.threads and settings.n_workers == 0:
        import torch

        torch.set_num_threads(settings.threads)
    in_process = settings.n_workers == 0 or mp.current_process().daemon
    if in_process:
        _model, card, _explainer = prepared(settings.model, settings.method, settings.channels_last)
    else:  # the workers prepare the model; here only its card is needed
        from pathxai.model import load_model_with_card

        card = load_model_with_card(settings.model)[1]
    params = _run_params(settings, card)
    mpp, size, stride, k = params
    paths = _output_paths(out, job.slide_id, settings.exports)
    if settings.overwrite:
        _remove_outputs(out, job.slide_id)
    timings: dict[str, float] = {}
    with contextlib.ExitStack() as stack:
        slide = stack.enter_context(open_slide(job.path, mpp=job.slide_mpp))
        if slide.resolution.mpp is None:
            raise ResolutionError(
                f"unknown resolution: {slide.resolution.note}",
                path=job.path,
                hint="pass the level-0 resolution, e.g. --slide-mpp 0.5 for a 20x scan",
            )
        expected = _expected_attrs(settings, card, slide, job, params)
        if paths["h5"].exists():
            with HeatmapStore.open(paths["h5"]) as existing:
                existing.check_compatible(expected)
                complete = existing.attrs.get("status") == "complete"
            if complete:
                # killed between the atomic rename and removing the partial file: drop the leftover
                partial_path(out, job.slide_id).unlink(missing_ok=True)
                missing = [e for e in settings.exports if not paths[e].exists()]
                if missing:
                    timings.update(_exports(paths["h5"], slide, paths, settings))
                if missing or not paths["json"].exists():
                    summary = _summary(
                        paths["h5"], {"timings": timings, "note": "exports completed on resume"}
                    )
                    write_json(paths["json"], summary)
                summary = _load_json(paths["json"])
                return SlideResult(job.slide_id, job.path, "skipped", _str_paths(paths), summary)
        # A daemonic process (e.g. a Dask worker) may not start children: compute in-process there.
        if pool is None and not in_process:
            pool = stack.enter_context(ExplainPool(settings.n_workers, explain_spec(settings, k)))
        t0 = time.perf_counter()
        grid, mask = tile_slide(slide, mpp, size, stride, settings.min_tissue, settings.tissue)
        timings["tissue_grid_s"] = time.perf_counter() - t0
        if not grid.specs:  # too small, blank, or too little tissue: say which, write nothing
            raise empty_grid_error(job.path, grid, mask.fraction, settings.min_tissue)
        if on_start is not None:
            on_start(job.slide_id, len(grid.specs))
        store, resumed = _open_or_create(
            job, out, grid, expected, len(card.classes), size // k, settings.batch_size, settings.overwrite
        )
        try:
            batch_size = int(store.attrs.get("batch_size", settings.batch_size))
            t0 = time.perf_counter()
            failures, ctimes = _compute(
                store, grid, SlideSource(job.path, job.slide_mpp), settings, batch_size, k, progress, pool
            )
            timings["tiles_s"] = time.perf_counter() - t0
            timings.update(ctimes)
            # Corrupt areas met by tissue detection (painted as background) are reported too.
            failures = [f"tissue thumbnail: {m}" for m in slide.unreadable_regions] + failures
            # Failures of batches finished by an earlier (killed) run are reported from the store.
            t0 = time.perf_counter()
            shape = canvas_shape(grid, k)
            levels = n_levels(shape, 256)
            samples: list[np.ndarray] = []
            bands = canvas_bands(store, k, shape, levels, settings.window, int(card.tumour_index), samples)

            def final_attrs() -> dict[str, Any]:
                from pathxai.render.heatmap import robust_vmax

                vals = np.concatenate(samples) if samples else np.zeros(0, np.float32)
                return {"relevance_vmax": robust_vmax(vals), "tissue_fraction": mask.fraction}

            store.finalize(paths["h5"], shape, levels, bands, final_attrs, tile_chunk=batch_size)
            timings["finalize_s"] = time.perf_counter() - t0
        finally:
            store.close()
        t0 = time.perf_counter()
        timings.update(_exports(paths["h5"], slide, paths, settings))
        timings["exports_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    with HeatmapStore.open(paths["h5"]) as st:
        failed_idx = np.flatnonzero(st.failed)
        coords = st.coords
    extra = {
        "resumed": resumed,
        "timings": {k_: round(v, 3) for k_, v in timings.items()},
        "tiles_per_s": round(len(grid.specs) / timings["tiles_s"], 2) if timings.get("tiles_s") else None,
        "failed_tiles": [
            {"index": int(i), "l0_x": int(coords[i, 0]), "l0_y": int(coords[i, 1])} for i in failed_idx
        ],
        "failure_messages": failures,
        "pathxai_version": __version__,
    }
    summary = _summary(paths["h5"], extra)
    write_json(paths["json"], summary)
    return SlideResult(job.slide_id, job.path, "done", _str_paths(paths), summary)


def _load_json(path: Path) -> dict[str, Any]:
    import json

    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _str_paths(paths: dict[str, Path]) -> dict[str, str]:
    return {k: str(v) for k, v in paths.items()}


def run_job(job: SlideJob, out_dir: str | Path, settings: HeatmapSettings, **kwargs: Any) -> SlideResult:
    """Run one job, turning any failure into a ``"failed"`` result (so one slide never stops a batch)."""
    try:
        return heatmap_slide(job.path, out_dir, settings, job.slide_id, job.slide_mpp, **kwargs)
    except KeyboardInterrupt:
        raise
    except PathXAIError as exc:
        return SlideResult(job.slide_id, job.path, "failed", error=str(exc))
    except Exception as exc:  # an unexpected bug on one slide must not stop the others
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return SlideResult(job.slide_id, job.path, "failed", error=f"unexpected error: {tb}")


def _clean_stale_temporaries(out_dir: Path) -> None:
    """Remove temporary files of killed runs (never a final name: those are only ever renamed into place)."""
    for tmp in out_dir.glob(".*.part*"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)


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
    OutputLockedError
        If another run holds ``out_dir``.
    """
    settings = settings or HeatmapSettings()
    out = Path(out_dir)
    jobs: list[SlideJob] = (
        [i for i in inputs if isinstance(i, SlideJob)]
        if inputs and all(isinstance(i, SlideJob) for i in inputs)
        else resolve_jobs([i for i in inputs if not isinstance(i, SlideJob)], data_root, slide_mpp)
    )
    results: list[SlideResult] = []
    with OutputLock(out):
        _clean_stale_temporaries(out)
        if dask:
            from pathxai.pipeline.dask_runner import run_on_dask

            if dask == "local" and settings.workers is None:  # share this machine's cores among the tasks
                settings = dataclasses.replace(
                    settings, workers=max(1, default_workers() // max(1, dask_workers))
                )

            for result in run_on_dask(jobs, out, settings, dask, dask_workers):
                results.append(result)
                if on_done is not None:
                    on_done(result)
        else:
            with contextlib.ExitStack() as stack:
                pool = None
                if settings.n_workers > 0 and len(jobs) > 1 and not mp.current_process().daemon:
                    # one set of worker processes for all slides saves their start-up per slide
                    k = settings.canvas_downsample
                    pool = stack.enter_context(ExplainPool(settings.n_workers, explain_spec(settings, k)))
                for job in jobs:
                    result = run_job(job, out, settings, progress=progress, on_start=on_start, pool=pool)
                    results.append(result)
                    if on_done is not None:
                        on_done(result)
                    # a worker died on that slide (e.g. out of memory): fresh ones for the rest
                    if pool is not None and pool.broken:
                        pool.close()
                        pool = stack.enter_context(ExplainPool(settings.n_workers, pool.spec))
        failures = [
            {"slide_id": r.slide_id, "path": r.path, "error": r.error}
            for r in results
            if r.status == "failed"
        ]
        fpath = out / "failures.json"
        write_json(fpath, {"n_slides": len(results), "n_failed": len(failures), "failures": failures})
    order = {j.slide_id: i for i, j in enumerate(jobs)}
    results.sort(key=lambda r: order.get(r.slide_id, len(order)))
    return BatchResult(results, fpath)


def default_workers() -> int:
    """Computing processes for this machine: one per CPU core available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
