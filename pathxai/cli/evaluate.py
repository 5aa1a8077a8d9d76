"""``pathxai evaluate``: score a manifest with a model; patch-, image- and patient-level metrics as JSON."""

from __future__ import annotations

import argparse

from pathxai.cli._common import fraction, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` command."""
    p = sub.add_parser("evaluate", help="evaluate a model on a manifest (AUC, accuracy, per patient)")
    p.add_argument("--manifest", required=True, help="CSV manifest (path and label/tumor columns at least)")
    p.add_argument(
        "--data-root", default=None, help="directory the manifest paths are relative to (default: its folder)"
    )
    p.add_argument("--model", default="default", help="'default' (the committed model) or a model directory")
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
    p.add_argument(
        "--native-mpp", type=positive_float, default=None, help="µm/px of images whose row has no 'mpp'"
    )
    p.add_argument("--threshold", type=fraction, default=0.5, help="tumour probability threshold")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate and print the headline numbers."""
    from pathxai.pipeline.train import evaluate_from_manifest

    r = evaluate_from_manifest(
        args.manifest,
        args.model,
        out=args.out,
        data_root=args.data_root,
        split=args.split,
        stride=args.stride,
        min_tissue=args.min_tissue,
        native_mpp=args.native_mpp,
        threshold=args.threshold,
        progress=not args.quiet,
    )
    img = r["image_level"]
    print(
        f"patches: n={r['n']} auc={r['auc']} accuracy={r['accuracy']} "
        f"balanced_accuracy={r['balanced_accuracy']}"
    )
    print(
        f"images:  n={img['n']} auc={img['auc']} accuracy={img['accuracy']} "
        f"balanced_accuracy={img['balanced_accuracy']}"
    )
    if r["patients_seen_in_training"]:
        print(f"warning: {len(r['patients_seen_in_training'])} patient(s) were in the model's training set")
    print(f"written: {args.out}")
    return 0
