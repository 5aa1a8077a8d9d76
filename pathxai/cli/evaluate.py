"""``pathxai evaluate``: score a manifest with a model; patch-, image- and patient-level metrics as JSON."""

from __future__ import annotations

import argparse

from pathxai.cli._common import (
    add_image_mpp,
    add_inputs,
    add_quiet,
    command,
    fraction,
    pick,
    positive_int,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    p = command(sub, run, "evaluate", help="evaluate a model on a manifest (AUC, accuracy, per patient)")
    add_inputs(p, "CSV manifest (path and label/tumor columns at least)")
    p.add_argument("--out", required=True, help="JSON file to write")
    p.add_argument("--split", default=None, help="only rows of this split (e.g. test)")
    p.add_argument(
        "--stride", type=positive_int, default=None, help="patch step (default: the training stride)"
    )
    p.add_argument(
        "--min-tissue",
        type=fraction,
        default=None,
        help="drop patches with less tissue (default: as trained)",
    )
    add_image_mpp(p)
    p.add_argument(
        "--threshold",
        type=fraction,
        default=None,
        help="tumour probability threshold (default: the model card's operating threshold, else 0.5)",
    )
    add_quiet(p)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the headline numbers."""
    from pathxai.pipeline.evaluate import evaluate_from_manifest

    result = evaluate_from_manifest(
        args.manifest,
        args.model,
        **pick(
            args, "out", "data_root", "split", "stride", "min_tissue", "threshold", native_mpp="slide_mpp"
        ),
        progress=not args.quiet,
    )
    r = result.metrics
    img = r["image_level"]
    print(
        f"patches: n={r['n']} auc={r['auc']} accuracy={r['accuracy']} "
        f"balanced_accuracy={r['balanced_accuracy']}"
    )
    print(
        f"images:  n={img['n']} auc={img['auc']} accuracy={img['accuracy']} "
        f"balanced_accuracy={img['balanced_accuracy']}"
    )
    for site, m in (r.get("per_site") or {}).items():
        pm = m["patch"]
        print(
            f"site {site}: patches n={pm['n']} auc={pm['auc']} sensitivity={pm['sensitivity']} "
            f"specificity={pm['specificity']} (threshold {pm['threshold']})"
        )
    if result.patients_seen_in_training:
        print(f"warning: {len(result.patients_seen_in_training)} patient(s) were in the model's training set")
    print(f"written: {args.out}")
    return 0
