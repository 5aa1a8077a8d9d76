"""One slide's heatmap: reuse its complete store, or compute (resuming) its tiles, canvas and exports.

:func:`heatmap_slide` does one slide; :func:`run_job` runs it for a batch or a Dask task, turning any
failure into a ``"failed"`` :class:`SlideResult`. The batch job over many slides is
:func:`pathxai.pipeline.heatmap.heatmap_batch` (which re-exports both).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pathxai import __version__
from pathxai.atomic import SPACE_HINT, is_write_failure, space_message, write_failure_errno
from pathxai.errors import OutOfSpaceError, PathXAIError
from pathxai.geometry import Grid
from pathxai.heatmap.canvas import canvas_shape, finalize_canvas
from pathxai.heatmap.compute import TileProgress, compute_tiles
from pathxai.heatmap.exports import write_exports
from pathxai.heatmap.jobs import SlideJob
from pathxai.heatmap.pool import NO_RELEVANCE, ExplainPool, prepared
from pathxai.heatmap.settings import (
    HeatmapSettings,
    TileGeometry,
    expected_attrs,
    explain_spec,
    small_slide,
)
from pathxai.heatmap.space import check_space, estimate_space
from pathxai.heatmap.summary import read_summary, write_summary
from pathxai.heatmap.trust import slide_trust
from pathxai.jsonio import dumps_json
from pathxai.slide import BaseSlide, open_slide
from pathxai.store.heatmap import HeatmapStore, final_path, partial_path
from pathxai.store.resume import find_complete, open_run
from pathxai.store.summary import store_summary
from pathxai.store.trust import TRUST_ATTR
from pathxai.tiling import SlideSource, empty_grid_error, tile_slide

__all__ = ["SlideResult", "heatmap_slide", "run_job"]


@dataclass(frozen=True)
class SlideResult:
    """Outcome of one slide: ``status`` is ``"done"``, ``"skipped"`` (already complete) or ``"failed"``."""

    slide_id: str
    path: str
    status: str
    outputs: dict[str, str] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class _Computed:
    """What computing one slide's store gave: tiles, resumed or not, failure messages, timings."""

    n_tiles: int
    resumed: bool
    failures: list[str]
    timings: dict[str, float]
    grid: Grid


def _output_paths(out_dir: Path, slide_id: str, exports: Sequence[str]) -> dict[str, Path]:
    paths = {"h5": final_path(out_dir, slide_id), "json": out_dir / f"{slide_id}.json"}
    for ext in exports:
        paths[ext] = out_dir / f"{slide_id}.{ext}"
    return paths


def _remove_outputs(out_dir: Path, slide_id: str) -> None:
    for suffix in (".h5", ".partial.h5", ".tif", ".png", ".geojson", ".json"):
        (out_dir / f"{slide_id}{suffix}").unlink(missing_ok=True)


def _model_card(settings: HeatmapSettings) -> tuple[Any, bool]:
    """The model card, and whether tiles are computed in this process (then its model is prepared here)."""
    if settings.threads and settings.n_workers == 0:
        import torch

        torch.set_num_threads(settings.threads)
    # A daemonic process (e.g. a Dask worker) may not start children: compute in-process there.
    in_process = settings.n_workers == 0 or mp.current_process().daemon
    if in_process:
        return prepared(settings.model, settings.method, settings.channels_last)[1], True
    from pathxai.model import load_model_with_card  # the workers prepare the model; here only its card

    return load_model_with_card(settings.model)[1], False


def _in_process_small(settings: HeatmapSettings, slide: BaseSlide, geometry: TileGeometry) -> bool:
    """True when a small slide is computed here rather than by worker processes (model prepared here)."""
    if not small_slide(settings, slide, geometry):
        return False
    if settings.threads:
        import torch

        torch.set_num_threads(settings.threads)
    prepared(settings.model, settings.method, settings.channels_last)
    return True


def _exports(slide: BaseSlide, paths: dict[str, Path], settings: HeatmapSettings) -> dict[str, float]:
    return write_exports(
        paths["h5"], slide, paths, settings.exports, settings.opacity, settings.probability_threshold
    )


def _reuse_complete(slide: BaseSlide, paths: dict[str, Path], settings: HeatmapSettings) -> dict[str, Any]:
    """Write what a complete store still lacks (exports, summary); return its summary."""
    missing = [e for e in settings.exports if not paths[e].exists()]
    timings = _exports(slide, paths, settings) if missing else {}
    if missing or not paths["json"].exists():
        note = {"timings": timings, "note": "exports completed on resume"}
        write_summary(paths["json"], store_summary(paths["h5"], note))
    return read_summary(paths["json"])


def _compute_store(
    slide: BaseSlide,
    job: SlideJob,
    out: Path,
    settings: HeatmapSettings,
    card: Any,
    geometry: TileGeometry,
    expected: dict[str, Any],
    pool: ExplainPool | None,
    progress: TileProgress | None,
    on_start: Callable[[str, int], None] | None,
) -> _Computed:
    """Lay the grid, explain the tiles not yet in the partial store, and write the complete store."""
    t0 = time.perf_counter()
    grid, mask = tile_slide(
        slide, geometry.mpp, geometry.size, geometry.stride, settings.min_tissue, settings.tissue
    )
    timings = {"tissue_grid_s": time.perf_counter() - t0}
    if not grid.specs:  # too small, blank, or too little tissue: say which, write nothing
        raise empty_grid_error(job.path, grid, mask.fraction, settings.min_tissue)
    if on_start is not None:
        on_start(job.slide_id, len(grid.specs))
    n_classes, overwrite = len(card.classes), settings.overwrite
    tile_px = None if settings.method == NO_RELEVANCE else geometry.tile_px  # probabilities only
    if settings.check_space:  # refuse a slide that clearly cannot fit before any of its work
        resuming = partial_path(out, job.slide_id).exists() and not overwrite
        shape = canvas_shape(grid, geometry.canvas_downsample)
        need = estimate_space(len(grid.specs), n_classes, tile_px or 0, shape, settings.exports, resuming)
        check_space(out, job.slide_id, need)
    run = open_run(out, job.slide_id, grid, expected, n_classes, tile_px, settings.batch_size, overwrite)
    try:
        batch_size = int(run.store.attrs.get("batch_size", settings.batch_size))
        t0 = time.perf_counter()
        source = SlideSource(job.path, job.slide_mpp)
        computed = compute_tiles(run.store, grid, source, explain_spec(settings), batch_size, progress, pool)
        timings["tiles_s"] = time.perf_counter() - t0
        timings.update(computed.timings)
        # Corrupt areas met by tissue detection (painted as background) are reported too.
        failures = [f"tissue thumbnail: {m}" for m in slide.unreadable_regions] + list(computed.failures)
        extra: dict[str, Any] = {}
        if settings.trust:  # measured before the store is complete, so it is written with it, atomically
            t0 = time.perf_counter()
            extra[TRUST_ATTR] = dumps_json(_trust(slide, grid, ~run.store.failed, settings)).strip()
            timings["trust_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        target = final_path(out, job.slide_id)
        tumour = int(card.tumour_index)
        finalize_canvas(
            run.store,
            target,
            grid,
            geometry.canvas_downsample,
            settings.window,
            tumour,
            mask.fraction,
            batch_size,
            extra,
        )
        timings["finalize_s"] = time.perf_counter() - t0
    finally:
        run.store.close()
    return _Computed(len(grid.specs), run.resumed, failures, timings, grid)


def _trust(slide: BaseSlide, grid: Grid, ok: np.ndarray, settings: HeatmapSettings) -> dict[str, Any]:
    """The run's trust summary (:func:`~pathxai.heatmap.trust.slide_trust`) on the tiles that were read."""
    model, card, explainer = prepared(settings.model, settings.method, settings.channels_last)
    return slide_trust(slide, grid.specs, ok, model, card, explainer, settings.method)


def _require_resolution(slide: BaseSlide, path: str) -> None:
    if slide.resolution.mpp is None:
        raise slide.resolution_error(path)


def _run_details(store_path: Path, computed: _Computed, timings: dict[str, float]) -> dict[str, Any]:
    """What a summary says about this run beyond the store: resume, timings, unreadable tiles."""
    with HeatmapStore.open(store_path) as st:
        failed_idx = np.flatnonzero(st.failed)
        coords = st.coords
    tiles_s = timings.get("tiles_s")
    return {
        "resumed": computed.resumed,
        "timings": {name: round(v, 3) for name, v in timings.items()},
        "tiles_per_s": round(computed.n_tiles / tiles_s, 2) if tiles_s else None,
        "failed_tiles": [
            {"index": int(i), "l0_x": int(coords[i, 0]), "l0_y": int(coords[i, 1])} for i in failed_idx
        ],
        "failure_messages": computed.failures,
        "pathxai_version": __version__,
    }


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
        ``None`` starts ``settings.n_workers`` of them for this slide (none with ``workers=0``, nor
        for a small slide with the automatic number of workers:
        :func:`~pathxai.heatmap.settings.small_slide`).

    Returns
    -------
    SlideResult
        ``status`` ``"done"`` or ``"skipped"``.

    Raises
    ------
    PathXAIError
        For an unreadable slide, a missing resolution, a bad model, or a store of another slide or
        from other settings (:class:`~pathxai.errors.StoreMismatchError`).
    """
    settings = settings or HeatmapSettings()
    t_start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    job = SlideJob(str(path), slide_id or Path(path).stem, slide_mpp)
    card, in_process = _model_card(settings)
    geometry = TileGeometry.of(settings, card)
    paths = _output_paths(out, job.slide_id, settings.exports)
    if settings.overwrite:
        _remove_outputs(out, job.slide_id)
    with contextlib.ExitStack() as stack:
        slide = stack.enter_context(open_slide(job.path, mpp=job.slide_mpp))
        _require_resolution(slide, job.path)
        expected = expected_attrs(settings, card, slide, job, geometry)
        if find_complete(out, job.slide_id, expected) is not None:
            summary = _reuse_complete(slide, paths, settings)
            return SlideResult(job.slide_id, job.path, "skipped", _str_paths(paths), summary)
        if pool is None and not in_process and not _in_process_small(settings, slide, geometry):
            pool = stack.enter_context(ExplainPool(settings.n_workers, explain_spec(settings)))
        computed = _compute_store(
            slide, job, out, settings, card, geometry, expected, pool, progress, on_start
        )
        t0 = time.perf_counter()
        timings = {**computed.timings, **_exports(slide, paths, settings)}
        timings["exports_s"] = time.perf_counter() - t0
    timings["total_s"] = time.perf_counter() - t_start
    summary = store_summary(paths["h5"], _run_details(paths["h5"], computed, timings))
    write_summary(paths["json"], summary)
    return SlideResult(job.slide_id, job.path, "done", _str_paths(paths), summary)


def _str_paths(paths: dict[str, Path]) -> dict[str, str]:
    return {k: str(v) for k, v in paths.items()}


def _out_of_space(exc: BaseException, out_dir: str | Path) -> OutOfSpaceError | None:
    """``exc`` as one :class:`OutOfSpaceError` if a failed write caused it, else ``None``."""
    if not is_write_failure(exc):
        return None
    code = write_failure_errno(exc)
    where = getattr(exc, "filename", None) or getattr(exc, "path", None) or str(out_dir)
    if getattr(exc, "space_reported", False) and isinstance(exc, OSError):  # from pathxai.atomic
        return OutOfSpaceError(str(exc.strerror), path=where, errno=code)
    line = space_message(exc, where).split(": ", 1)[1]
    return OutOfSpaceError(line, path=where, hint=SPACE_HINT, errno=code)


def run_job(job: SlideJob, out_dir: str | Path, settings: HeatmapSettings, **kwargs: Any) -> SlideResult:
    """Run one job, turning any failure into a ``"failed"`` result (so one slide never stops a batch).

    Except a full disk: a failed write (ENOSPC, EDQUOT, EIO), whatever raised it, comes out as one
    :class:`~pathxai.errors.OutOfSpaceError`, which stops the batch (the next slide would fail too).
    """
    try:
        return heatmap_slide(job.path, out_dir, settings, job.slide_id, job.slide_mpp, **kwargs)
    except (KeyboardInterrupt, OutOfSpaceError):
        raise  # out of space: the next slide would fail too, so the batch stops
    except (OSError, PathXAIError) as exc:
        full = _out_of_space(exc, out_dir)
        if full is not None:
            raise full from exc
        if isinstance(exc, PathXAIError):
            return SlideResult(job.slide_id, job.path, "failed", error=str(exc))
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return SlideResult(job.slide_id, job.path, "failed", error=f"unexpected error: {tb}")
    except Exception as exc:  # an unexpected bug on one slide must not stop the others
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        return SlideResult(job.slide_id, job.path, "failed", error=f"unexpected error: {tb}")
