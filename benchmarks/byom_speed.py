"""Imported (bring-your-own) CNNs: LRP/forward time ratio, and pruning a ResNet-50.

Usage::

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/byom_speed.py lrp --rounds 3
    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/byom_speed.py prune --rounds 5

``lrp``: for each randomly initialised torchvision model (ResNet-50, DenseNet-121, EfficientNet-B0,
ConvNeXt-Tiny; two classes, BatchNorm statistics randomised as after training) and one random batch
(224 px, batch 16), time the forward pass (``torch.inference_mode``, NCHW and channels-last, the
faster one is the reference) and ``Explainer(model, method)`` (the fast LRP path; ``gradient`` for a
model without LRP rules, e.g. ConvNeXt's LayerNorm), in interleaved rounds: every round times every
model and method once, so load changes hit all of them alike. Prints the per-round ratios and their
median per model.

``prune``: builds a ResNet-50 model folder as ``pathxai model import`` writes it (random weights,
``--size`` px), prunes it with the ``lrp`` criterion at ``--ratio`` on a few random reference
images through :class:`pathxai.prune.PruningPlan` and :func:`pathxai.prune.save.save_pruned_model`
(the code path of ``pathxai prune``), loads the folder back and times the forward pass of the
unpruned and pruned models in alternation at 224 px, batch 16. Prints params/MACs/channels before
and after and the forward-time ratio.
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathxai.errors import ExplainError
from pathxai.explain import Explainer
from pathxai.model.external import build_external

MODELS = ("resnet50", "densenet121", "efficientnet_b0", "convnext_tiny")


def _randomise_bn(model: nn.Module, seed: int = 1) -> nn.Module:
    """Non-trivial BatchNorm statistics, as after training (random init has mean 0, var 1)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
    return model.eval()


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run() -> object:
        with torch.inference_mode():
            return model(x)

    return run


def _explainer(model: nn.Module) -> tuple[Explainer, str]:
    """The fast LRP explainer, or the gradient explainer when the model has a layer LRP has no rule for."""
    try:
        return Explainer(model, "lrp"), "lrp"
    except ExplainError as exc:
        print(f"  no LRP for {type(model).__name__}: {' '.join(str(exc).split())[:160]}")
        return Explainer(model, "gradient"), "gradient"


def run_lrp(args: argparse.Namespace) -> None:
    """Interleaved rounds of forward vs explanation time per model."""
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    x_cl = x.contiguous(memory_format=torch.channels_last)
    setups = []
    for name in args.models:
        torch.manual_seed(0)
        model = _randomise_bn(build_external(f"torchvision:{name}", 2))
        model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        explainer, method = _explainer(model)
        fns = {
            "fwd": _forward(model, x),
            "fwd_cl": _forward(model_cl, x_cl),
            "explain": lambda e=explainer: e(x),
        }
        for fn in fns.values():  # warm-up
            fn()
        setups.append((name, method, fns))
    ratios: dict[str, list[float]] = {name: [] for name in args.models}
    print("| round | model | method | forward s | forward CL s | explain s | explain / best forward |")
    print("|---|---|---|---|---|---|---|")
    for r in range(args.rounds):
        for name, method, fns in setups:
            t = {k: _timed(fn) for k, fn in fns.items()}
            ratio = t["explain"] / min(t["fwd"], t["fwd_cl"])
            ratios[name].append(ratio)
            print(
                f"| {r} | {name} | {method} | {t['fwd']:.3f} | {t['fwd_cl']:.3f} | {t['explain']:.3f} | {ratio:.2f}x |",
                flush=True,
            )
    print()
    for name, method, _ in setups:
        vals = ratios[name]
        print(
            f"{name} ({method}): median {statistics.median(vals):.2f}x, rounds {min(vals):.2f}-{max(vals):.2f}x"
        )


class _RandomReference:
    """The study of this benchmark: random reference images, no held-out data."""

    def to_dict(self) -> dict[str, object]:
        """JSON-ready keys of ``pruning.json``."""
        return {"data": {"reference": "4 random images (benchmark)"}}


def _channels(model: nn.Module) -> int:
    return sum(m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d))


def run_prune(args: argparse.Namespace) -> None:
    """Import, prune with LRP, save, load back and time unpruned vs pruned forward in alternation."""
    from pathxai.model import load_model_with_card, save_model
    from pathxai.model.importer import ImportSpec, import_model
    from pathxai.prune import PruningPlan
    from pathxai.prune.report import PruneReport, summary
    from pathxai.prune.save import pruned_card, save_pruned_model

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="byom_prune_"))
    work.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    user = _randomise_bn(build_external("torchvision:resnet50", 2))
    torch.save(user.state_dict(), work / "resnet50.pt")
    spec = ImportSpec(
        arch="torchvision:resnet50",
        weights=work / "resnet50.pt",
        classes=("normal", "tumour"),
        mpp=0.5,
        input_size=args.size,
    )
    model, card = import_model(spec)
    save_model(model, card, work / "imported")
    model, card = load_model_with_card(work / "imported")
    g = torch.Generator().manual_seed(2)
    ref = [(torch.randn(4, 3, args.size, args.size, generator=g), torch.tensor([0, 1, 0, 1]))]
    start = time.perf_counter()
    plan, pruned = PruningPlan.compute_and_prune(model, "lrp", args.ratio, ref)
    prune_s = time.perf_counter() - start
    report = PruneReport(
        plan=plan,
        drift=None,
        summary=summary(plan.metrics_before, plan.metrics_after),
        source_model=str(work / "imported"),
        source_weights_sha256=card.weights_sha256,
        prune_seconds=prune_s,
        study=_RandomReference(),
        command="benchmarks/byom_speed.py prune",
    )
    save_pruned_model(pruned, pruned_card(card, plan), report, work / "pruned")
    start = time.perf_counter()
    reloaded, _ = load_model_with_card(work / "pruned")
    load_s = time.perf_counter() - start
    before, after = plan.metrics_before, plan.metrics_after
    print(f"ResNet-50 imported at {args.size} px, lrp criterion, ratio {args.ratio}: prune {prune_s:.1f} s")
    print(
        f"params {before['params']:.0f} -> {after['params']:.0f} ({after['params'] / before['params']:.3f})"
    )
    print(f"MACs at {args.size} px {before['macs']:.3g} -> {after['macs']:.3g}")
    print(
        f"conv channels {_channels(model)} -> {_channels(reloaded)}; load of the pruned folder {load_s:.2f} s"
    )
    x = torch.randn(args.batch, 3, 224, 224)
    fns = {"unpruned": _forward(model, x), "pruned": _forward(reloaded, x)}
    for fn in fns.values():
        fn()
    ratios = []
    for r in range(args.rounds):
        t = {k: _timed(fn) for k, fn in fns.items()}
        ratios.append(t["pruned"] / t["unpruned"])
        print(
            f"round {r}: unpruned {t['unpruned']:.3f} s, pruned {t['pruned']:.3f} s, ratio {ratios[-1]:.3f}",
            flush=True,
        )
    print(f"pruned / unpruned forward at 224 px, batch {args.batch}: median {statistics.median(ratios):.3f}")
    print(f"folders in {work}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    lrp = sub.add_parser("lrp", help="LRP/forward time ratio per imported model")
    lrp.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    lrp.add_argument("--size", type=int, default=224)
    lrp.add_argument("--batch", type=int, default=16)
    lrp.add_argument("--rounds", type=int, default=3)
    pr = sub.add_parser("prune", help="prune an imported ResNet-50 with LRP; size and speed")
    pr.add_argument("--size", type=int, default=224, help="input size of the imported model (tracing, MACs)")
    pr.add_argument("--ratio", type=float, default=0.3)
    pr.add_argument("--batch", type=int, default=16)
    pr.add_argument("--rounds", type=int, default=5)
    pr.add_argument("--out", default=None, help="folder for the model folders (default: a temp dir)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, threads {args.threads}, load before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    run_lrp(args) if args.what == "lrp" else run_prune(args)
    load = os.getloadavg()
    print(f"load after {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
