"""``pathxai demo [--slide PATH] --out DIR``: the whole story on one real slide, in a few minutes."""

from __future__ import annotations

import argparse
import shlex

from pathxai.cli._common import add_slide_mpp, checked, command, positive_float

#: Argparse type: a pruning ratio in (0, 1).
_ratio = checked(
    float, lambda v: 0.0 < v < 1.0, "a number in (0, 1)", "pruning ratio must be in (0, 1), got {text}"
)


def _run(args: argparse.Namespace) -> int:
    from pathxai.heatmap.regions import describe
    from pathxai.pipeline.demo import DemoSettings, run_demo

    settings = DemoSettings(
        model=args.model,
        method=args.method,
        slide_mpp=args.slide_mpp,
        prune_ratio=args.prune_ratio,
        audit=not args.no_audit,
        colon=not args.no_colon,
    )
    res = run_demo(args.out, settings, slide=args.slide, cache=args.cache)
    print(f"\npathxai demo finished in {res.timings['total']:.0f} s on {res.slide}")
    width = max(len(k) for k in res.outputs) if res.outputs else 0
    for key, path in res.outputs.items():
        print(f"  {key:<{width}}  {path}")
    for note in res.notes:
        print(f"  note: {note}")
    if res.region_auc is not None:
        print(f"  colon demo slide: {describe(res.region_auc)}")
        print(f"    tiles: {res.region_auc['rule']['text']}")
    print(f"  {'summary':<{width}}  {res.out / 'demo.json'}")
    print(f"\nOpen the viewer:  pathxai view {shlex.quote(str(res.out))}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` command."""
    p = command(
        subparsers,
        _run,
        "demo",
        help="tiles, heatmaps, overlay, audit and a pruned model on a real slide (CC0 sample by default)",
    )
    p.add_argument("--out", required=True, help="output folder (a rerun continues where it stopped)")
    p.add_argument("--slide", default=None, help="your own slide (default: CMU-1-Small-Region, fetched)")
    add_slide_mpp(p, type=positive_float, what="the slide, overriding its metadata")
    p.add_argument("--model", default="default", help="'default' or a model directory")
    p.add_argument("--method", default="lrp", help="attribution method of the heatmaps (default lrp)")
    p.add_argument(
        "--prune-ratio", type=_ratio, default=0.3, help="fraction of channels pruned (default 0.3)"
    )
    p.add_argument("--no-audit", action="store_true", help="skip the audit step")
    p.add_argument(
        "--no-colon",
        action="store_true",
        help="skip the colon demo slide (EBHI-Seg mosaic shipped with pathxai: heatmap + region AUC)",
    )
    p.add_argument("--cache", default=None, help="dataset cache (default $PATHXAI_CACHE or ~/.cache/pathxai)")
