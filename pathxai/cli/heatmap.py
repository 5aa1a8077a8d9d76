"""``pathxai heatmap SLIDE_OR_MANIFEST... --model default --out DIR``: LRP heatmaps of whole slides.

Writes per slide ``<id>.h5`` (store), ``<id>.tif`` (pyramidal overlay), ``<id>.png``, ``<id>.geojson``
and ``<id>.json`` (summary); resumes interrupted runs; lists failed slides in ``DIR/failures.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from pathxai.cli._common import (
    add_slide_mpp,
    fraction,
    non_negative_int,
    plausible_mpp,
    positive_int,
    progress_bar,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``heatmap`` command."""
    p = sub.add_parser(
        "heatmap",
        help="tumour probability + LRP relevance heatmaps of whole slides (resumable, batch, Dask)",
        description="Explain every tissue tile of each slide and stitch the relevance into a slide-level "
        "overlay. Inputs are slide files and/or manifest CSVs with a 'path' column.",
    )
    p.add_argument(
        "inputs", nargs="+", metavar="SLIDE_OR_MANIFEST", help="slide files or manifest .csv files"
    )
    p.add_argument("--model", default="default", help="'default' or a model directory (default: default)")
    p.add_argument("--method", default="lrp", help="attribution method (see pathxai.explain.METHODS)")
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
    add_slide_mpp(p)
    p.add_argument("--data-root", type=Path, default=None, help="root for manifest paths")
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
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the batch and print a per-slide report; exit 1 if any slide failed."""
    from pathxai.pipeline.heatmap import HeatmapSettings, SlideResult, heatmap_batch, resolve_jobs
    from pathxai.slide import TissueSettings

    exports = tuple(e for e in args.exports.split(",") if e and e != "none")
    try:
        settings = HeatmapSettings(
            model=args.model,
            method=args.method,
            mpp=args.mpp,
            size=args.size,
            stride=args.stride,
            canvas_downsample=args.canvas_downsample,
            min_tissue=args.min_tissue,
            tissue=TissueSettings(),
            window=args.window,
            batch_size=args.batch_size,
            workers=args.workers,
            threads=args.threads,
            exports=exports,
            overwrite=args.overwrite,
        )
    except ValueError as exc:
        print(f"pathxai heatmap: error: {exc}", file=sys.stderr)
        return 2
    from pathxai.explain import METHODS

    if args.method not in METHODS:
        print(f"pathxai heatmap: error: unknown method {args.method!r}; valid: {', '.join(sorted(METHODS))}",
              file=sys.stderr)  # fmt: skip
        return 2
    from pathxai.model import load_model_with_card

    load_model_with_card(args.model)  # a bad model fails once, in one line, before any slide
    jobs = resolve_jobs(args.inputs, args.data_root, args.slide_mpp)
    overall = progress_bar(len(jobs), desc="slides", unit="slide", position=0)
    bars: dict[str, Any] = {}

    def on_start(slide_id: str, n: int) -> None:
        for bar in bars.values():
            bar.close()
        bars.clear()
        bars["tiles"] = progress_bar(n, desc=slide_id, position=1)

    def progress(n: int) -> None:
        if "tiles" in bars:
            bars["tiles"].update(n)

    def on_done(result: SlideResult) -> None:
        for bar in bars.values():
            bar.close()
        bars.clear()
        overall.update(1)
        overall.set_postfix_str(f"{result.slide_id}: {result.status}")

    try:
        batch = heatmap_batch(
            jobs,
            args.out,
            settings,
            dask=args.dask,
            dask_workers=args.dask_workers,
            on_start=on_start,
            progress=progress,
            on_done=on_done,
        )
    except ValueError as exc:
        print(f"pathxai heatmap: error: {exc}", file=sys.stderr)
        return 2
    finally:
        for bar in bars.values():
            bar.close()
        overall.close()
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
