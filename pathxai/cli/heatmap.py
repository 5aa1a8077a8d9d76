"""``pathxai heatmap SLIDE_OR_MANIFEST... --model default --out DIR``: LRP heatmaps of whole slides.

Writes per slide ``<id>.h5`` (store), ``<id>.tif`` (pyramidal overlay), ``<id>.png``, ``<id>.geojson``
and ``<id>.json`` (summary); resumes interrupted runs; lists failed slides in ``DIR/failures.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pathxai.cli._common import (
    SLIDES_WITHOUT_MPP,
    add_inputs,
    add_slide_mpp,
    command,
    fail,
    fraction,
    non_negative_int,
    pick,
    plausible_mpp,
    positive_int,
    progress_bar,
)

if TYPE_CHECKING:
    from pathxai.pipeline.heatmap import BatchResult, SlideResult


HELP = "tumour probability + LRP relevance heatmaps of whole slides (resumable, batch, Dask)"
DESCRIPTION = (
    "Explain every tissue tile of each slide and stitch the relevance into a slide-level "
    "overlay. Inputs are slide files and/or manifest CSVs with a 'path' column. Writes per slide "
    "OUT/<id>.h5 (store), <id>.tif (pyramidal overlay), <id>.png, <id>.geojson and <id>.json "
    "(summary); a rerun resumes; failed slides are listed in OUT/failures.json."
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``heatmap`` command."""
    p = command(sub, run, "heatmap", help=HELP, description=DESCRIPTION)
    p.add_argument(
        "inputs", nargs="+", metavar="SLIDE_OR_MANIFEST", help="slide files or manifest .csv files"
    )
    add_inputs(p, model_help="'default' or a model directory (default: default)")
    p.add_argument(
        "--method",
        default="lrp",
        help="attribution method (see pathxai.explain.METHODS), or 'none': probabilities only, no relevance",
    )
    p.add_argument("--mpp", type=plausible_mpp, default=None, help="tile resolution µm/px (default: model's)")
    p.add_argument("--size", type=positive_int, default=None, help="tile side px at --mpp (default: model's)")
    p.add_argument("--stride", type=positive_int, default=None, help="tile step px (default: --size)")
    p.add_argument(
        "--canvas-downsample",
        type=positive_int,
        default=4,
        help="tile pixels per overlay pixel; overlay mpp = mpp x this (default 4)",
    )
    p.add_argument("--window", choices=("count", "hann", "triangle"), default="count", help="overlap weights")
    p.add_argument("--min-tissue", type=fraction, default=0.25, help="minimum tissue fraction per tile")
    add_slide_mpp(p, what=SLIDES_WITHOUT_MPP)
    p.add_argument(
        "--workers",
        type=non_negative_int,
        default=None,
        help="processes that read and explain tiles, one model each (0 = in this process; default: one per core)",
    )
    p.add_argument("--batch-size", type=positive_int, default=16, help="tiles per model batch (default 16)")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch threads per computing process (default: 1 per worker; torch's with --workers 0)",
    )
    p.add_argument("--dask", default=None, metavar="local|ADDR", help="run one Dask task per slide")
    p.add_argument("--dask-workers", type=positive_int, default=2, help="workers of --dask local")
    p.add_argument(
        "--exports",
        default="tif,png,geojson",
        help="comma-separated exports to write (tif,png,geojson or none)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace stores made with other settings")
    p.add_argument(
        "--no-space-check",
        dest="check_space",
        action="store_false",
        help="start every slide even when its estimated size exceeds the free disk space "
        "(e.g. on a compressing file system); a full disk still stops the batch with one line",
    )
    p.add_argument(
        "--no-trust",
        dest="trust",
        action="store_false",
        help="skip the trust summary (faithfulness on <= 32 tiles, cached randomisation score)",
    )
    p.add_argument("--out", type=Path, required=True, help="output directory")


class _Bars:
    """Progress bars of a batch: one over slides, one over the tiles of the running slide."""

    def __init__(self, n_slides: int) -> None:
        self.overall = progress_bar(n_slides, desc="slides", unit="slide", position=0)
        self.tiles: Any = None

    def _close_tiles(self) -> None:
        if self.tiles is not None:
            self.tiles.close()
            self.tiles = None

    def on_start(self, slide_id: str, n: int) -> None:
        self._close_tiles()
        self.tiles = progress_bar(n, desc=slide_id, position=1)

    def progress(self, n: int) -> None:
        if self.tiles is not None:
            self.tiles.update(n)

    def on_done(self, result: SlideResult) -> None:
        self._close_tiles()
        self.overall.update(1)
        self.overall.set_postfix_str(f"{result.slide_id}: {result.status}")

    def close(self) -> None:
        self._close_tiles()
        self.overall.close()


def run(args: argparse.Namespace) -> int:
    """Run the batch and print a per-slide report; exit 1 if any slide failed."""
    from pathxai.heatmap.settings import NO_RELEVANCE
    from pathxai.model import load_model_with_card
    from pathxai.pipeline.heatmap import HeatmapSettings, check_geometry, heatmap_batch, resolve_jobs
    from pathxai.slide import TissueSettings

    exports = tuple(e for e in args.exports.split(",") if e and e != "none")
    try:
        settings = HeatmapSettings(
            **pick(args, "model", "method", "mpp", "size", "stride", "canvas_downsample", "min_tissue"),
            **pick(args, "window", "batch_size", "workers", "threads", "overwrite", "check_space"),
            tissue=TissueSettings(),
            exports=exports,
            trust=args.trust,
        )
    except ValueError as exc:
        return fail("heatmap", str(exc))
    if args.method != NO_RELEVANCE:
        from pathxai.explain import METHODS  # (imports zennit: not needed for probabilities only)

        if args.method not in METHODS:
            valid = ", ".join([*sorted(METHODS), NO_RELEVANCE])
            return fail("heatmap", f"unknown method {args.method!r}; valid: {valid}")
    load_model_with_card(args.model)  # a bad model fails once, in one line, before any slide
    try:
        check_geometry(settings)  # --size/--stride/--canvas-downsample against the model's input
    except ValueError as exc:
        return fail("heatmap", str(exc))
    jobs = resolve_jobs(args.inputs, args.data_root, args.slide_mpp, on_duplicates=_note)
    bars = _Bars(len(jobs))
    try:
        batch = heatmap_batch(
            jobs,
            args.out,
            settings,
            dask=args.dask,
            dask_workers=args.dask_workers,
            on_start=bars.on_start,
            progress=bars.progress,
            on_done=bars.on_done,
        )
    except ValueError as exc:
        return fail("heatmap", str(exc))
    finally:
        bars.close()
    return _report(batch)


def _note(message: str) -> None:
    print(f"pathxai heatmap: note: {message}", file=sys.stderr)


def _report(batch: BatchResult) -> int:
    """Print one line per slide and the failures; 1 if any slide failed."""
    for r in batch.results:
        if r.status == "failed":
            continue
        s = r.summary
        mean_p = s.get("mean_probability")
        mean_txt = "n/a" if mean_p is None else f"{mean_p:.3f}"
        print(
            f"{r.slide_id}: {r.status}, {s.get('n_tiles', '?')} tiles, mean p(tumour) {mean_txt}, "
            f"{s.get('n_failed_tiles', 0)} unreadable tiles -> {r.outputs.get('h5')}"
        )
    if batch.failed:
        print(f"{len(batch.failed)} of {len(batch.results)} slide(s) failed (see {batch.failures_path}):")
        for r in batch.failed:
            print(f"  {r.slide_id}: {r.error}")
        return 1
    return 0
