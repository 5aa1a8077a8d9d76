"""``pathxai audit``: bias audit of a cohort (stain, artifacts, labels, sampling) -> report.json/.html/.geojson."""

from __future__ import annotations

import argparse
import sys

from pathxai.cli._common import SLIDES_WITHOUT_MPP, add_inputs, add_quiet, add_slide_mpp, command, pick

HELP = "audit a cohort for stain/artifact/label/sampling biases (HTML + JSON + GeoJSON report)"
DESCRIPTION = (
    "Run every bias check on a manifest of images or slides and write DIR/report.json, "
    "DIR/report.html (self-contained) and DIR/findings.geojson."
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``audit`` command."""
    p = command(sub, run, "audit", help=HELP, description=DESCRIPTION)
    add_inputs(
        p,
        "CSV manifest (path, label/tumor; patient, site, scanner, split ...)",
        model_help="'default', a model directory, or 'none' for model-free checks",
    )
    add_slide_mpp(p, what="images or " + SLIDES_WITHOUT_MPP)
    p.add_argument(
        "--heatmaps",
        default=None,
        metavar="DIR",
        help="heatmap stores from 'pathxai heatmap' (slide cohorts)",
    )
    p.add_argument(
        "--config", default=None, metavar="JSON", help="severity thresholds/settings overriding the defaults"
    )
    p.add_argument(
        "--reference",
        default=None,
        metavar="IMG",
        help="reference H&E image for the stain-normalisation test",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output directory")
    add_quiet(p)


def run(args: argparse.Namespace) -> int:
    """Run the audit and print the summary."""
    from pathxai.pipeline.audit import audit
    from pathxai.store.lock import OutputLock

    model = None if str(args.model).lower() == "none" else args.model
    with OutputLock(args.out):  # two audits writing one report directory would interleave
        report = audit(
            args.manifest,
            model=model,
            **pick(args, "data_root", "heatmaps", "out", "config", "reference", "slide_mpp"),
            progress=not args.quiet,
        )
    for note in report.notes:
        print(f"pathxai audit: note: {note}", file=sys.stderr)
    d = report.to_dict()["summary"]["counts"]
    print(f"findings: high {d['high']}, medium {d['medium']}, low {d['low']}, info {d['info']}")
    for f in report.findings:
        if f.severity in ("high", "medium"):
            # a finding without a number (an unbounded ratio, ...) is told by its message
            said = f"{f.metric} = {round(f.value, 3)}" if f.value is not None else f.message
            print(f"  [{f.severity}] {f.check}: {said}")
    print(f"written: {args.out}/report.html, report.json, findings.geojson")
    return 0
