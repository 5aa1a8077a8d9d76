"""``pathxai train``: train a patch classifier from a manifest (patient-grouped splits)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pathxai.cli._common import (
    add_image_mpp,
    add_inputs,
    add_quiet,
    command,
    command_line,
    fail,
    fraction,
    pick,
    positive_float,
    positive_int,
)

HELP = "train a tumour patch classifier from a manifest"
DESCRIPTION = (
    "Train on the manifest's 'train' split (evaluating on 'test'), on K-1 of K "
    "patient-grouped "
    "folds (--folds K --fold k), or run K-fold cross-validation (--cv K). Splits never share a patient."
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` command."""
    p = command(sub, run, "train", help=HELP, description=DESCRIPTION)
    add_inputs(p, "CSV manifest (columns path and label/tumor at least)", model_help=None)
    p.add_argument("--arch", default="compact_cnn", help="architecture name (compact_cnn, resnet18)")
    p.add_argument(
        "--arch-kwargs",
        default="{}",
        help="JSON options for the architecture, e.g. '{\"widths\": [16,32,64,128,128]}'",
    )
    p.add_argument(
        "--out", required=True, help="output directory (model.safetensors + model_card.json + eval.json)"
    )
    p.add_argument(
        "--folds", type=positive_int, default=None, help="number of patient-grouped folds (with --fold)"
    )
    p.add_argument("--fold", type=int, default=None, help="which fold to hold out (0-based, with --folds)")
    p.add_argument(
        "--cv", type=positive_int, default=None, help="run K-fold patient-grouped cross-validation"
    )
    p.add_argument("--train-split", default="train", help="split value of training rows (split mode)")
    p.add_argument("--test-split", default="test", help="split value of held-out rows (split mode)")
    p.add_argument("--epochs", type=positive_int, default=12)
    p.add_argument("--batch-size", type=positive_int, default=64)
    p.add_argument("--lr", type=positive_float, default=2e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=2, help="torch CPU threads")
    p.add_argument("--mpp", type=positive_float, default=1.24, help="resolution the model works at (µm/px)")
    p.add_argument("--size", type=positive_int, default=112, help="patch side in pixels at --mpp")
    p.add_argument("--stride", type=positive_int, default=56, help="patch step in pixels at --mpp")
    add_image_mpp(p)
    p.add_argument(
        "--min-tissue", type=fraction, default=0.3, help="drop patches with less tissue than this fraction"
    )
    p.add_argument("--hed-sigma", type=float, default=0.05, help="HED jitter scale (0 disables)")
    p.add_argument("--hed-bias", type=float, default=0.05, help="HED jitter shift (0 disables)")
    p.add_argument(
        "--stain-matrix-sigma",
        type=float,
        default=0.0,
        help="random stain-matrix perturbation added to the HED jitter, e.g. 0.05 (0 disables)",
    )
    p.add_argument(
        "--scale-jitter",
        type=float,
        default=0.0,
        help="relative scale jitter of training patches, e.g. 0.15 for an estimated mpp (0 disables)",
    )
    p.add_argument(
        "--balance-sites",
        action="store_true",
        help="sample training patches balanced over (site, class) instead of class-weighting the loss",
    )
    p.add_argument(
        "--pretrained",
        default=None,
        help="initial weights (.safetensors, or state-dict .pth read weights_only)",
    )
    p.add_argument("--licence", default=None, help="licence note written into the model card")
    p.add_argument("--max-steps-per-epoch", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    add_quiet(p)


def _arch_kwargs(args: argparse.Namespace) -> dict[str, Any] | str:
    """The ``--arch-kwargs`` object, or what is wrong with the options."""
    try:
        arch_kwargs = json.loads(args.arch_kwargs)
    except json.JSONDecodeError as exc:
        return f"--arch-kwargs is not JSON ({exc})"
    if not isinstance(arch_kwargs, dict):
        return "--arch-kwargs must be a JSON object"
    if (args.folds is None) != (args.fold is None):
        return "--folds and --fold go together"
    if args.folds is not None and not 0 <= args.fold < args.folds:
        return f"--fold must be in 0..{args.folds - 1}, got {args.fold}"
    return arch_kwargs


def run(args: argparse.Namespace) -> int:
    """Train and print the evaluation summary."""
    from pathxai.pipeline.train import DEFAULT_LICENCE, PatchSettings, train_from_manifest

    arch_kwargs = _arch_kwargs(args)
    if isinstance(arch_kwargs, str):
        return fail("train", arch_kwargs)
    result = train_from_manifest(
        args.manifest,
        args.out,
        arch_kwargs=arch_kwargs,
        patches=PatchSettings(
            **pick(args, "mpp", "size", "stride", "min_tissue", "scale_jitter"), native_mpp=args.slide_mpp
        ),
        **pick(args, "data_root", "arch", "epochs", "batch_size", "lr", "weight_decay", "seed"),
        **pick(args, "hed_sigma", "hed_bias", "stain_matrix_sigma", "balance_sites"),
        **pick(args, "folds", "fold", "cv", "train_split", "test_split"),
        **pick(args, "resume", "pretrained", "max_steps_per_epoch", num_threads="threads"),
        licence=args.licence or DEFAULT_LICENCE,
        command=command_line("train", args),
        progress=not args.quiet,
    )
    if result.cv is not None:
        _print_cv(result.cv["summary"])
        print(f"written: {args.out}/cv.json")
    else:
        ev = result.evaluation
        if ev:
            img = ev["image_level"]
            print(
                f"test patches: n={ev['n']} auc={ev['auc']} accuracy={ev['accuracy']} "
                f"balanced={ev['balanced_accuracy']}"
            )
            print(f"test images:  n={img['n']} auc={img['auc']} accuracy={img['accuracy']}")
        print(f"model written to {result.out}")
    return 0


def _print_cv(summary: dict[str, Any]) -> None:
    """Mean ± sd of the cross-validation metrics, one line each."""
    for key in (
        "patch_auc",
        "image_auc",
        "patch_accuracy",
        "patch_balanced_accuracy",
        "image_balanced_accuracy",
    ):
        v = summary[key]
        sd = "n/a" if v["sd"] is None else f"{v['sd']:.3f}"
        mean = "n/a" if v["mean"] is None else f"{v['mean']:.3f}"
        print(f"{key:26s} {mean} ± {sd}")
