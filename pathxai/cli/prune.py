"""``pathxai prune`` and ``pathxai prune-sweep``: explanation-guided structured pruning."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pathxai.cli._common import (
    add_inputs,
    add_quiet,
    checked,
    command,
    command_line,
    fail,
    non_negative_float,
    non_negative_int,
    pick,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from pathxai.pipeline.prune import PruneSettings

CRITERIA_NAMES = ("lrp", "ig", "gradient", "taylor", "pattern_attribution", "weight", "random")

#: Argparse type: a pruning ratio in [0, 1).
_ratio = checked(
    float,
    lambda v: 0.0 <= v < 1.0,
    "a number in [0, 1)",
    "pruning ratio must be in [0, 1) (fraction of channels removed), got {text}",
)


def _ratios(text: str) -> list[float]:
    return [_ratio(t) for t in text.split(",") if t.strip()]


def _common(p: argparse.ArgumentParser) -> None:
    add_inputs(
        p,
        "labelled patch manifest CSV (e.g. data_manifests/glas.csv)",
        model_help="'default' or a model directory (may be pruned already)",
    )
    p.add_argument(
        "--reference-per-class",
        type=positive_int,
        default=10,
        help="reference patches per class for the data-driven criteria (scarce-data setting: 10)",
    )
    p.add_argument("--global", dest="global_pruning", action="store_true", help="rank channels across layers")
    p.add_argument("--steps", type=positive_int, default=1, help="iterative pruning steps")
    p.add_argument(
        "--finetune-epochs", type=non_negative_float, default=0.0, help="fine-tuning epochs after each step"
    )
    p.add_argument(
        "--finetune-steps-per-epoch",
        type=positive_int,
        default=None,
        help="cap on fine-tuning steps per epoch",
    )
    p.add_argument("--finetune-lr", type=positive_float, default=5e-4, help="fine-tuning AdamW learning rate")
    p.add_argument(
        "--drift-patches", type=non_negative_int, default=32, help="held-out patches for heatmap drift"
    )
    p.add_argument(
        "--ig-steps", type=positive_int, default=16, help="integrated-gradients steps (criterion ig)"
    )
    p.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads for the run")
    _stability(p)
    add_quiet(p)


def _stability(p: argparse.ArgumentParser) -> None:
    """Options that keep a pruned network working without fine-tuning (recorded in every sweep row)."""
    p.add_argument(
        "--bn-recalibrate",
        choices=("none", "full", "shift"),
        default="shift",
        help="BatchNorm statistics after each step, from the reference images' patches (inputs only, "
        "no labels, no gradient steps): keep (none), re-estimate (full) or shift the trained ones by "
        "the change pruning causes (shift, default)",
    )
    p.add_argument(
        "--bn-tiles-per-image",
        type=non_negative_int,
        default=8,
        help="patches per reference image for the BatchNorm re-estimation (0: all)",
    )
    p.add_argument(
        "--normalizer",
        choices=("none", "mean", "max", "sum"),
        default="none",
        help="per-layer score normalisation (matters with --global)",
    )
    p.add_argument(
        "--relevance",
        choices=("abs", "signed"),
        default="abs",
        help="pool data-driven channel scores as mean |score| or mean signed score",
    )
    p.add_argument(
        "--lrp-rules",
        choices=("epsilon_plus_flat", "epsilon_gamma_box", "epsilon_alpha2_beta1_flat"),
        default="epsilon_plus_flat",
        help="LRP composite of the lrp criterion",
    )
    p.add_argument("--lrp-gamma", type=positive_float, default=0.25, help="gamma of epsilon_gamma_box")


HELP = "remove the least relevant channels of a model (LRP or baseline criteria)"
DESCRIPTION = (
    "Rank channels with a criterion on a small reference set, remove them with "
    "Torch-Pruning (residual couplings follow), optionally fine-tune, and write a smaller model "
    "that --model DIR and pathxai.model.load_model(DIR) accept, plus DIR/pruning.json with "
    "params, MACs, CPU latency, held-out AUC before/after and LRP heatmap drift."
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``prune`` and ``prune-sweep`` commands."""
    p = command(sub, run_prune, "prune", help=HELP, description=DESCRIPTION)
    _common(p)
    p.add_argument("--criterion", choices=CRITERIA_NAMES, default="lrp")
    p.add_argument("--ratio", type=_ratio, required=True, help="fraction of channels removed, in [0, 1)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the reference draw, random criterion, fine-tuning"
    )
    p.add_argument("--no-latency", action="store_true", help="skip the CPU latency measurement")
    p.add_argument(
        "--latency-threads", type=positive_int, default=1, help="threads for the latency measurement"
    )
    p.add_argument("--latency-batch", type=positive_int, default=16, help="patches per timed forward pass")
    p.add_argument("--out", required=True, help="output model directory")

    s = command(
        sub,
        run_sweep,
        "prune-sweep",
        help="AUC/accuracy vs fraction pruned for all criteria, seeds, with/without fine-tuning",
        description="One-shot pruning of the same model at several ratios with every criterion and "
        "seed (and, with --finetune-epochs, again with fine-tuning at --finetune-ratios). Writes "
        "OUT/sweep.csv (resumable: finished rows are kept) and OUT/sweep.png.",
    )
    _common(s)
    s.add_argument("--criteria", default=",".join(CRITERIA_NAMES), help="comma-separated criteria")
    s.add_argument("--ratios", type=_ratios, default=[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])
    s.add_argument("--finetune-ratios", type=_ratios, default=None, help="ratios repeated with fine-tuning")
    s.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    s.add_argument(
        "--pxp",
        action="store_true",
        help="PxP protocol: rates 0-95%% in 5%% steps, no fine-tuning, no drift; writes OUT/pxp.csv "
        "(area under the AUC-vs-rate curve per criterion and seed) and OUT/pxp.png",
    )
    s.add_argument("--out", required=True, help="output directory")

    f = command(
        sub,
        run_fit_patterns,
        "fit-patterns",
        help="fit PatternAttribution patterns on reference tiles and store them beside the model",
        description="Fit the patterns of PatternAttribution (Kindermans et al. 2018) once on tiles of "
        "--reference-per-class training images per class (never the held-out patients; inputs only) "
        "and write them as safetensors (default: MODEL_DIR/patterns.safetensors).",
    )
    add_inputs(
        f, "labelled patch manifest CSV (e.g. data_manifests/glas.csv)", model_help="a model directory"
    )
    f.add_argument("--reference-per-class", type=positive_int, default=10, help="reference images per class")
    f.add_argument("--tiles-per-image", type=non_negative_int, default=8, help="patches per image (0: all)")
    f.add_argument("--seed", type=int, default=0, help="seed of the reference draw")
    f.add_argument("--out", default=None, help="patterns file (default: beside the model's weights)")
    add_quiet(f)


def _settings(args: argparse.Namespace, **extra: Any) -> PruneSettings:
    from pathxai.pipeline.prune import PruneSettings

    return PruneSettings(
        **pick(
            args,
            "reference_per_class",
            "global_pruning",
            "drift_patches",
            "ig_steps",
            iterative_steps="steps",
        ),
        **pick(args, "finetune_epochs", "finetune_steps_per_epoch", "finetune_lr"),
        **pick(args, "bn_recalibrate", "bn_tiles_per_image", "relevance", "lrp_gamma"),
        normalizer=None if args.normalizer == "none" else args.normalizer,
        lrp_method="lrp" if args.lrp_rules == "epsilon_plus_flat" else f"lrp_{args.lrp_rules}",
        **extra,
    )


def _data_root(args: argparse.Namespace) -> str:
    return args.data_root if args.data_root is not None else str(Path(args.manifest).resolve().parent)


def _threads(args: argparse.Namespace) -> None:
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)


def run_prune(args: argparse.Namespace) -> int:
    """Prune, save and print the before/after summary."""
    from pathxai.pipeline.prune import prune_from_manifest

    _threads(args)
    settings = _settings(args, latency=not args.no_latency, **pick(args, "latency_threads", "latency_batch"))
    report = prune_from_manifest(
        args.model,
        args.manifest,
        _data_root(args),
        args.criterion,
        args.ratio,
        args.out,
        settings,
        seed=args.seed,
        command=command_line("prune", args),
        progress=not args.quiet,
    ).report
    plan = report.plan
    b, a = plan.metrics_before, plan.metrics_after
    print(f"criterion {plan.criterion} ratio {plan.ratio:g}: {len(plan.channels)} layers pruned")
    print(f"params  {b['params']:.0f} -> {a['params']:.0f}   MACs {b['macs']:.3g} -> {a['macs']:.3g}")
    if "latency_ms" in a:
        print(
            f"latency {b['latency_ms']:.1f} ms -> {a['latency_ms']:.1f} ms per batch of {args.latency_batch}"
        )
    for key in ("auc", "accuracy", "image_auc"):
        if key in b and key in a:
            print(f"held-out {key:9s} {b[key]:.4f} -> {a[key]:.4f}")
    if report.drift is not None:
        d = report.drift
        print(
            f"heatmap drift on {d.n} patches: pearson {d.pearson:.3f} spearman {d.spearman:.3f} "
            f"top-10% IoU {d.topk_iou:.3f}"
        )
    print(f"pruned model written to {args.out} (details in {args.out}/pruning.json)")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    """Run the sweep and print where the CSV and plot are."""
    from pathxai.pipeline.prune import prune_sweep

    _threads(args)
    criteria = [c.strip() for c in args.criteria.split(",") if c.strip()]
    bad = [c for c in criteria if c not in CRITERIA_NAMES]
    if bad:
        return fail("prune-sweep", f"unknown criteria {bad}; choose from {CRITERIA_NAMES}")
    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        return fail("prune-sweep", f"--seeds must be comma-separated integers, got {args.seeds!r}")
    settings = _settings(args, latency=False)
    result = prune_sweep(
        args.model,
        args.manifest,
        _data_root(args),
        args.out,
        criteria=criteria,
        seeds=seeds,
        **pick(args, "ratios", "finetune_epochs", "finetune_ratios", "pxp"),
        settings=dataclasses.replace(settings, finetune_epochs=0.0),  # per row instead
        progress=not args.quiet,
    )
    print(f"sweep written to {result.csv} and {result.plot}")
    if result.pxp_csv is not None:
        from pathxai.prune.pxp import pxp_table

        for crit, mean, sd, n in pxp_table(result.pxp_areas):
            print(f"PxP area {crit:10s} {mean:.3f} ± {sd:.3f} ({n} run{'s' if n > 1 else ''})")
        print(f"PxP areas written to {result.pxp_csv}")
    return 0


def run_fit_patterns(args: argparse.Namespace) -> int:
    """Fit and store the patterns; print where."""
    from pathxai.pipeline.prune import fit_patterns_from_manifest

    path = fit_patterns_from_manifest(
        args.model,
        args.manifest,
        _data_root(args),
        args.out,
        **pick(args, "reference_per_class", "tiles_per_image", "seed"),
        progress=not args.quiet,
    )
    print(f"patterns written to {path}")
    return 0
