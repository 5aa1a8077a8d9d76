"""``pathxai train``: train a patch classifier from a manifest (patient-grouped splits)."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from pathxai.cli._common import fraction, positive_float, positive_int


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``train`` command."""
    p = sub.add_parser(
        "train",
        help="train a tumour patch classifier from a manifest",
        description="Train on the manifest's 'train' split (evaluating on 'test'), on K-1 of K "
        "patient-grouped "
        "folds (--folds K --fold k), or run K-fold cross-validation (--cv K). Splits never share a patient.",
    )
    p.add_argument("--manifest", required=True, help="CSV manifest (columns path and label/tumor at least)")
    p.add_argument(
        "--data-root", default=None, help="directory the manifest paths are relative to (default: its folder)"
    )
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
    p.add_argument(
        "--native-mpp", type=positive_float, default=None, help="µm/px of images whose row has no 'mpp'"
    )
    p.add_argument(
        "--min-tissue", type=fraction, default=0.3, help="drop patches with less tissue than this fraction"
    )
    p.add_argument("--hed-sigma", type=float, default=0.05, help="HED jitter scale (0 disables)")
    p.add_argument("--hed-bias", type=float, default=0.05, help="HED jitter shift (0 disables)")
    p.add_argument(
        "--pretrained",
        default=None,
        help="initial weights (.safetensors, or state-dict .pth read weights_only)",
    )
    p.add_argument("--licence", default=None, help="licence note written into the model card")
    p.add_argument("--max-steps-per-epoch", type=positive_int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and print the evaluation summary."""
    from pathxai.pipeline.train import DEFAULT_LICENCE, PatchSettings, train_from_manifest

    try:
        arch_kwargs = json.loads(args.arch_kwargs)
    except json.JSONDecodeError as exc:
        print(f"pathxai train: error: --arch-kwargs is not JSON ({exc})", file=sys.stderr)
        return 2
    if not isinstance(arch_kwargs, dict):
        print("pathxai train: error: --arch-kwargs must be a JSON object", file=sys.stderr)
        return 2
    if (args.folds is None) != (args.fold is None):
        print("pathxai train: error: --folds and --fold go together", file=sys.stderr)
        return 2
    if args.folds is not None and not 0 <= args.fold < args.folds:
        print(
            f"pathxai train: error: --fold must be in 0..{args.folds - 1}, got {args.fold}", file=sys.stderr
        )
        return 2
    if "train" in sys.argv[1:]:
        command = shlex.join(["pathxai", *sys.argv[sys.argv.index("train") :]])
    else:  # called programmatically: rebuild the command from the parsed options
        opts = [
            f"--{k.replace('_', '-')}" + ("" if v is True else f" {shlex.quote(str(v))}")
            for k, v in sorted(vars(args).items())
            if k not in ("func", "command", "debug") and v not in (None, False)
        ]
        command = " ".join(["pathxai train", *opts])
    result = train_from_manifest(
        args.manifest,
        args.out,
        data_root=args.data_root,
        arch=args.arch,
        arch_kwargs=arch_kwargs,
        patches=PatchSettings(
            mpp=args.mpp,
            size=args.size,
            stride=args.stride,
            native_mpp=args.native_mpp,
            min_tissue=args.min_tissue,
        ),
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        seed=args.seed,
        num_threads=args.threads,
        hed_sigma=args.hed_sigma,
        hed_bias=args.hed_bias,
        folds=args.folds,
        fold=args.fold,
        cv=args.cv,
        train_split=args.train_split,
        test_split=args.test_split,
        resume=args.resume,
        pretrained=args.pretrained,
        licence=args.licence or DEFAULT_LICENCE,
        command=command,
        max_steps_per_epoch=args.max_steps_per_epoch,
        progress=not args.quiet,
    )
    if result["mode"] == "cv":
        s = result["summary"]
        for key in (
            "patch_auc",
            "image_auc",
            "patch_accuracy",
            "patch_balanced_accuracy",
            "image_balanced_accuracy",
        ):
            v = s[key]
            sd = "n/a" if v["sd"] is None else f"{v['sd']:.3f}"
            mean = "n/a" if v["mean"] is None else f"{v['mean']:.3f}"
            print(f"{key:26s} {mean} ± {sd}")
        print(f"written: {args.out}/cv.json")
    else:
        ev = result["evaluation"]
        if ev:
            img = ev["image_level"]
            print(
                f"test patches: n={ev['n']} auc={ev['auc']} accuracy={ev['accuracy']} "
                f"balanced={ev['balanced_accuracy']}"
            )
            print(f"test images:  n={img['n']} auc={img['auc']} accuracy={img['accuracy']}")
        print(f"model written to {result['out']}")
    return 0
