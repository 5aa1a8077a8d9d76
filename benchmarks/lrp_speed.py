"""LRP speed: forward time vs zennit's stock LRP vs the fast LRP path, same batch.

Usage::

    python benchmarks/lrp_speed.py                      # default model (if present) + resnet18 at 224 px
    python benchmarks/lrp_speed.py --models default --batch-sizes 32 64 --repeats 7

Prints a markdown table: per model and batch size the median wall time of a forward pass (the caller's
model under ``torch.inference_mode``), of ``Explainer(model, "lrp_zennit")`` (zennit's stock
EpsilonPlusFlat, canonizers applied once) and of ``Explainer(model, "lrp")`` (fast path), and the ratios.
Timing uses ``torch.set_num_threads(--threads)``, warm-up calls, and the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathxai.explain import Explainer


def load_bench_model(name: str) -> tuple[nn.Module, int, str]:
    """Return (model, input size, description)."""
    if name == "default":
        from pathxai.model import load_model_with_card

        model, card = load_model_with_card("default")
        return model.eval(), int(card.input_size), f"default model ({card.arch}, trained)"
    if name == "compact_cnn":
        from pathxai.model import build_model  # type: ignore[attr-defined]

        return build_model("compact_cnn").eval(), 112, "compact_cnn (untrained)"
    if name == "vgg_proxy":
        layers: list[nn.Module] = []
        c = 3
        for w in (32, 64, 128, 256):
            for _ in range(2):
                layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU()]
                c = w
            layers.append(nn.MaxPool2d(2))
        head = [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, 2)]
        return nn.Sequential(*layers, *head).eval(), 112, "VGG-style proxy, 1.17M params (untrained)"
    if name == "resnet18":
        return torchvision.models.resnet18(num_classes=2).eval(), 224, "torchvision resnet18 (untrained)"
    raise SystemExit(f"unknown model {name!r}")


def median_time(fn: Callable[[], object], warmup: int, repeats: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_row(model: nn.Module, size: int, desc: str, batch_size: int, args: argparse.Namespace) -> str:
    """Time forward, stock LRP and fast LRP (NCHW and channels_last) on one random batch."""
    x = torch.randn(batch_size, 3, size, size)
    model_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x_cl = x.contiguous(memory_format=torch.channels_last)

    def forward() -> None:
        with torch.inference_mode():
            model(x)

    def forward_cl() -> None:
        with torch.inference_mode():
            model_cl(x_cl)

    t_fwd = median_time(forward, args.warmup, args.repeats)
    t_fwd_cl = median_time(forward_cl, args.warmup, args.repeats)
    with Explainer(model, "lrp", channels_last=False) as fast:
        t_fast = median_time(lambda: fast(x), args.warmup, args.repeats)
        rel_fast = fast(x).relevance
    with Explainer(model, "lrp", channels_last=True) as fast_cl:
        t_fast_cl = median_time(lambda: fast_cl(x), args.warmup, args.repeats)
    stock_s, stock_ratio, err = "-", "-", "-"
    if not args.skip_stock:
        with Explainer(model, "lrp_zennit", channels_last=False) as stock:
            t_stock = median_time(lambda: stock(x), 1, max(1, args.repeats // 2))
            rel_stock = stock(x).relevance
        stock_s, stock_ratio = f"{t_stock:.3f}", f"{t_stock / t_fwd:.2f}x"
        err = f"{float(abs(rel_fast - rel_stock).max() / max(abs(rel_stock).max(), 1e-30)):.1e}"
    best = min(t_fwd, t_fwd_cl)
    return (
        f"| {desc} | {size} | {batch_size} | {t_fwd:.3f} | {t_fwd_cl:.3f} | {stock_s} | {t_fast:.3f} | "
        f"{t_fast_cl:.3f} | {stock_ratio} | {t_fast / t_fwd:.2f}x | {t_fast_cl / best:.2f}x | {err} |"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["default", "resnet18"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[32, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-stock", action="store_true", help="do not time zennit's stock composite")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    load = os.getloadavg()
    print(
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, threads={args.threads}, "
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print()
    print(
        "| model | px | batch | forward s | forward CL s | stock zennit LRP s | fast LRP s | fast LRP CL s "
        "| stock/forward | fast/forward | fast CL/best forward | fast vs stock max rel err |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        model, size, desc = load_bench_model(name)
        for batch_size in args.batch_sizes:
            print(bench_row(model, size, desc, batch_size, args), flush=True)
    load = os.getloadavg()
    print()
    print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
