"""``pathxai explain-eval``: faithfulness, randomisation, localisation, robustness and complexity of methods."""

from __future__ import annotations

import argparse

from pathxai.cli._common import add_inputs, add_quiet, command, fraction, pick, positive_int


def _methods(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``explain-eval`` command."""
    p = command(
        sub,
        run,
        "explain-eval",
        help="which heatmap to trust: evaluate every explanation method on a labelled manifest",
    )
    add_inputs(p, "CSV manifest (path and label/tumor; mask_path for localisation)")
    p.add_argument("--out", required=True, help="output directory (explain_eval.json, explain_eval.html)")
    p.add_argument(
        "--methods",
        type=_methods,
        default=None,
        help="comma-separated methods, each NAME or NAME:key=value (default: every registered method)",
    )
    p.add_argument("--max-patches", type=positive_int, default=64, help="patches evaluated (default 64)")
    p.add_argument("--per-image", type=positive_int, default=None, help="patches per image (default: spread)")
    p.add_argument("--split", default=None, help="only rows of this split (e.g. test)")
    p.add_argument("--batch-size", type=positive_int, default=16, help="patches per streamed batch")
    p.add_argument("--steps", type=positive_int, default=16, help="region perturbation steps")
    p.add_argument("--region", type=positive_int, default=8, help="side of the perturbed regions (px)")
    p.add_argument(
        "--randomisation-patches", type=positive_int, default=16, help="patches for cascading randomisation"
    )
    p.add_argument("--min-tissue", type=fraction, default=0.5, help="minimum tissue fraction of a patch")
    p.add_argument("--seed", type=int, default=0)
    add_quiet(p)


def run(args: argparse.Namespace) -> int:
    """Run the evaluation and print the recommendation."""
    from pathxai.pipeline.explain_eval import explain_eval

    result = explain_eval(
        args.manifest,
        args.model,
        args.out,
        **pick(
            args,
            "data_root",
            "methods",
            "max_patches",
            "per_image",
            "split",
            "batch_size",
            "steps",
            "region",
            "randomisation_patches",
            "min_tissue",
            "seed",
        ),
        progress=not args.quiet,
    )
    summary = result.summary
    for label, m in summary["methods"].items():
        f = m["faithfulness"]["morf_ratio"]
        mean = "-" if f["mean"] is None else f"{f['mean']:.3f}"
        print(f"{label}: MoRF/random {mean}, randomisation {m['details']['randomisation_verdict']}")
    print(f"recommended default: {summary['recommendation']['method']}")
    print(f"written: {result.json_path}")
    return 0
