"""What determines a heatmap run: its settings, the tile geometry they give with a model, the store attributes."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pathxai import __version__
from pathxai.heatmap.jobs import SlideJob
from pathxai.heatmap.pool import NO_RELEVANCE, ExplainSpec
from pathxai.slide import BaseSlide, TissueSettings
from pathxai.slide.fingerprint import slide_fingerprint
from pathxai.stitch import WINDOWS

__all__ = [
    "EXPORTS",
    "IN_PROCESS_TILES",
    "IN_PROCESS_TILES_NO_RELEVANCE",
    "NO_RELEVANCE",
    "HeatmapSettings",
    "TileGeometry",
    "default_workers",
    "expected_attrs",
    "explain_spec",
    "small_slide",
]

#: Export formats written beside each store.
EXPORTS = ("tif", "png", "geojson")

#: With the automatic number of workers, a slide whose whole grid (tissue or not) has at most this
#: many tiles is computed in the calling process: starting the worker processes (each imports torch
#: and loads the model: 2-5 s on a 2-core machine) would cost more than they save. Probability-only
#: tiles (method ``"none"``, the forward pass) cost about a quarter of an LRP tile.
IN_PROCESS_TILES = 384
IN_PROCESS_TILES_NO_RELEVANCE = 2048


@dataclass(frozen=True)
class HeatmapSettings:
    """Everything that determines a heatmap run (picklable, sent to Dask workers).

    Attributes
    ----------
    model
        ``"default"`` or a model directory / weights / card path.
    method
        A name from :data:`pathxai.explain.METHODS`, or ``"none"`` (:data:`NO_RELEVANCE`):
        probabilities only, the model's forward pass without relevance.
    mpp, size, stride
        Tile resolution (µm/px), side and step in pixels; ``None``: the model card's mpp and
        input size, stride = size.
    canvas_downsample
        Tile pixels per canvas pixel (overlay mpp = ``mpp * canvas_downsample``); must divide size
        and stride.
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
    trust
        Add a trust summary of the method to each store and summary (:mod:`pathxai.heatmap.trust`).
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
    check_space: bool = True
    trust: bool = True

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


@dataclass(frozen=True)
class TileGeometry:
    """The tiles of a run: resolution (µm/px), side and step in pixels, pixels per canvas pixel."""

    mpp: float
    size: int
    stride: int
    canvas_downsample: int

    @classmethod
    def of(cls, settings: HeatmapSettings, card: Any) -> TileGeometry:
        """The settings' geometry, with the model card's mpp and input size where they give none.

        Raises
        ------
        ValueError
            If the tiles are under half the model's input size (the model cannot say anything of
            them, and too small a tile fails inside the network), or the canvas downsample does not
            divide the tile size and stride (no exact alignment).
        """
        size = int(settings.size if settings.size is not None else card.input_size)
        smallest = (int(card.input_size) + 1) // 2
        if size < smallest:
            raise ValueError(
                f"tile size {size} px is far smaller than the model's input ({card.input_size} px); "
                f"use --size {smallest} or more (default: the model's {card.input_size})"
            )
        geometry = cls(
            mpp=float(settings.mpp if settings.mpp is not None else card.mpp),
            size=size,
            stride=int(settings.stride if settings.stride is not None else size),
            canvas_downsample=settings.canvas_downsample,
        )
        k = geometry.canvas_downsample
        if geometry.size % k or geometry.stride % k:
            common = math.gcd(geometry.size, geometry.stride)
            fits = ", ".join(str(d) for d in range(1, common + 1) if not common % d)
            raise ValueError(
                f"tile size {geometry.size} and stride {geometry.stride} must be divisible by the canvas "
                f"downsample {k} (exact alignment); choose --size/--stride multiples of it or a "
                f"--canvas-downsample that divides both: {fits}"
            )
        return geometry

    @property
    def tile_px(self) -> int:
        """Side of a tile's pooled relevance map in canvas pixels."""
        return self.size // self.canvas_downsample


def expected_attrs(
    settings: HeatmapSettings, card: Any, slide: BaseSlide, job: SlideJob, geometry: TileGeometry
) -> dict[str, Any]:
    """The attributes a run writes to its store: the slide (with its content fingerprint) and settings."""
    return {
        "slide": str(job.path),
        "slide_fingerprint": slide_fingerprint(job.path),
        "slide_id": job.slide_id,
        "slide_mpp": float(slide.mpp),
        "mpp_source": slide.resolution.source,
        "l0_width": int(slide.dimensions[0]),
        "l0_height": int(slide.dimensions[1]),
        "mpp": geometry.mpp,
        "size": geometry.size,
        "stride": geometry.stride,
        "overlay_mpp": geometry.mpp * geometry.canvas_downsample,
        "canvas_downsample": geometry.canvas_downsample,
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


def explain_spec(settings: HeatmapSettings) -> ExplainSpec:
    """What every computing process needs to know about the model for these settings."""
    return ExplainSpec(
        settings.model,
        settings.method,
        settings.channels_last,
        settings.canvas_downsample,
        settings.threads or 1,
        warmup=settings.batch_size,
    )


def small_slide(settings: HeatmapSettings, slide: BaseSlide, geometry: TileGeometry) -> bool:
    """True when the workers are automatic and the slide's grid is small enough to compute here.

    See :data:`IN_PROCESS_TILES`: the bound is the whole grid, tissue or not (known before tissue
    detection, so worker processes can start while the tissue is detected).
    """
    if settings.workers is not None:
        return False
    w, h = slide.dimensions
    scale = float(slide.mpp) / geometry.mpp
    n = math.ceil(w * scale / geometry.stride) * math.ceil(h * scale / geometry.stride)
    limit = IN_PROCESS_TILES_NO_RELEVANCE if settings.method == NO_RELEVANCE else IN_PROCESS_TILES
    return n <= limit


def default_workers() -> int:
    """Computing processes for this machine: one per CPU core available to this process."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)
