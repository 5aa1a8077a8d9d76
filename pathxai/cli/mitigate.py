"""``pathxai mitigate``: act on an audit finding, write a corrected model, and prove the shortcut is gone."""

from __future__ import annotations

import argparse

from pathxai.cli._common import (
    add_image_mpp,
    add_inputs,
    add_quiet,
    command,
    command_line,
    pick,
    positive_float,
    positive_int,
)
from pathxai.mitigate import METHODS


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``mitigate`` command."""
    p = command(
        sub,
        run,
        "mitigate",
        help="correct a model for an audit finding (ClArC, masking, stain, re-balancing) and stress-test it",
        description="Read the audit's report.json, act on its high-severity class-correlated findings (or "
        "--finding ID), write a new model folder, mitigation.json (before/after: shortcut stress test, "
        "relevance on the artifact, clean held-out AUC, re-audit) and mitigation.html. Label findings only "
        "write relabel_candidates.csv unless --confirm-labels names a person's confirmation file.",
    )
    add_inputs(p, "the model's training manifest: 'train' rows to correct on, clean 'test' rows held out")
    p.add_argument("--audit", required=True, help="the --out folder of 'pathxai audit' (report.json)")
    p.add_argument(
        "--finding", default=None, help="a finding id or check name, e.g. artifact.relevance:pen:blue"
    )
    p.add_argument("--method", choices=METHODS, default="auto", help="correction (auto: by kind of finding)")
    p.add_argument("--out", required=True, help="output model folder (+ mitigation.json, mitigation.html)")
    p.add_argument(
        "--layer", default=None, help="concept layer of the ClArC methods (default: last feature block)"
    )
    p.add_argument("--epochs", type=positive_int, default=3, help="fine-tuning epochs")
    p.add_argument("--lr", type=positive_float, default=3e-4, help="fine-tuning learning rate")
    p.add_argument("--batch-size", type=positive_int, default=32)
    p.add_argument("--stride", type=positive_int, default=None, help="patch step (default: half the patch)")
    p.add_argument("--rr-lambda", type=positive_float, default=100.0, help="RR-ClArC penalty weight")
    p.add_argument(
        "--prune-channels",
        type=positive_int,
        default=None,
        help="method prune: conv channels removed (default: 5 %% of the prunable ones)",
    )
    p.add_argument(
        "--no-freeze",
        action="store_true",
        help="ClArC fine-tuning trains the whole network (default: only the layers after --layer)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads")
    p.add_argument("--train-split", default="train")
    p.add_argument("--test-split", default="test")
    p.add_argument("--confirm-labels", default=None, help="confirmation CSV of relabelling candidates")
    p.add_argument("--no-reaudit", action="store_true", help="skip re-running the finding's audit checks")
    add_image_mpp(p)
    add_quiet(p)


def run(args: argparse.Namespace) -> int:
    """Mitigate and print one line per finding."""
    from pathxai.pipeline.mitigate import FinetuneSettings, mitigate

    settings = FinetuneSettings(
        **pick(args, "epochs", "lr", "batch_size", "stride", "rr_lambda", "seed", "threads"),
        freeze_below=not args.no_freeze,
        prune_channels=args.prune_channels or 0,
    )
    res = mitigate(
        args.model,
        args.manifest,
        args.audit,
        args.out,
        **pick(
            args, "data_root", "finding", "method", "layer", "train_split", "test_split", "confirm_labels"
        ),
        settings=settings,
        native_mpp=args.slide_mpp,
        reaudit=not args.no_reaudit,
        command=command_line("mitigate", args),
        progress=not args.quiet,
    )
    for s in res.steps:
        if "before" not in s:
            print(f"{s['finding']}: {s.get('note') or s.get('status')}")
            continue
        b, a = s["before"], s["after"]
        sens = (
            f"stress {b['stress']['sensitivity']:+.3f} -> {a['stress']['sensitivity']:+.3f}"
            if "stress" in b
            else "no stress test"
        )
        verdict = {True: "passed", False: "FAILED", None: ""}[s["passed"]]
        print(
            f"{s['finding']} [{s['method']}]: {sens} {verdict}; clean AUC {b['clean_auc']} -> {a['clean_auc']}"
        )
    print(f"written: {res.out}")
    return 0 if res.passed else 1
