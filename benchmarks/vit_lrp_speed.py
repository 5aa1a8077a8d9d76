"""AttnLRP speed on a timm ViT: LRP time / forward time on the same batch, interleaved rounds.

Usage::

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/vit_lrp_speed.py                 # ViT-S/16, 224 px, batch 16
    python benchmarks/vit_lrp_speed.py --model vit_tiny_patch16_224 --rounds 7 --threads 2

Each round times, one after the other on one random batch: the forward pass of the caller's model (timm's
own, fused scaled-dot-product attention, ``torch.inference_mode``), the forward pass of the AttnLRP copy
(attention written out, no gradient) and ``Explainer(model, "lrp")`` (forward + modified backward). The
ratios are per round (so a load change between rounds does not bias them); the medians are printed with the
load average before and after. The model is randomly initialised (no weights are downloaded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathxai.explain import Explainer


def timed(fn: Callable[[], object]) -> float:
    """Wall time of one call."""
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    """Run the benchmark and print a markdown summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vit_small_patch16_224")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    import timm

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = timm.create_model(args.model, num_classes=2, img_size=args.size).eval()
    x = torch.randn(args.batch_size, 3, args.size, args.size)
    load_before = os.getloadavg()
    with Explainer(model, "lrp", channels_last=False) as explainer:
        copy = explainer._impl.model  # type: ignore[union-attr]

        def forward() -> None:
            with torch.inference_mode():
                model(x)

        def copy_forward() -> None:
            with torch.inference_mode():
                copy(x)

        def lrp() -> None:
            explainer(x)

        for fn in (forward, copy_forward, lrp):  # warm-up
            fn()
        rows = []
        for _ in range(args.rounds):
            rows.append((timed(forward), timed(copy_forward), timed(lrp)))
    load_after = os.getloadavg()
    fwd = statistics.median(r[0] for r in rows)
    cfwd = statistics.median(r[1] for r in rows)
    lrp_t = statistics.median(r[2] for r in rows)
    ratios = [r[2] / r[0] for r in rows]
    print(
        f"{args.model}, {args.size} px, batch {args.batch_size}, {args.threads} thread(s), "
        f"torch {torch.__version__}, load {load_before[0]:.1f} -> {load_after[0]:.1f}"
    )
    print("| forward (timm) s | forward (AttnLRP copy) s | lrp s | lrp / forward, per round | median |")
    print("|---|---|---|---|---|")
    print(
        f"| {fwd:.3f} | {cfwd:.3f} | {lrp_t:.3f} | {', '.join(f'{r:.2f}' for r in ratios)} | "
        f"**{statistics.median(ratios):.2f}x** |"
    )


if __name__ == "__main__":
    main()
