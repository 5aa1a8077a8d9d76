"""CPU latency of the default model versus pruned model directories, measured interleaved.

On a shared machine the load drifts; timing the models in alternation (A, B, C, A, B, C, ...) exposes
them to the same load, and the median over rounds is reported. Each timing is one forward pass of a
batch of 112-px patches with a fixed number of torch threads.

Usage::

    python benchmarks/prune_latency.py DIR [DIR ...] [--batch 16] [--threads 1] [--rounds 30]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from pathxai.model import load_model_with_card
from pathxai.prune import count_macs_params


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("models", nargs="+")
    ap.add_argument("--base", default="default")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=30)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    names = [args.base, *args.models]
    models = []
    for name in names:
        model, card = load_model_with_card(name)
        models.append((name, model.eval(), card.input_size))
    size = models[0][2]
    x = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    times: dict[str, list[float]] = {name: [] for name in names}
    with torch.inference_mode():
        for _, model, _ in models:  # warm-up
            for _ in range(3):
                model(x)
        for _ in range(args.rounds):
            for name, model, _ in models:
                t0 = time.perf_counter()
                model(x)
                times[name].append((time.perf_counter() - t0) * 1000)
    base = statistics.median(times[args.base])
    print(
        f"batch {args.batch} x {size}px, {args.threads} thread(s), median of {args.rounds} interleaved rounds\n"
    )
    print("| model | params | MMACs/patch | latency (ms/batch) | IQR (ms) | speed-up |")
    print("|---|---|---|---|---|---|")
    for name, model, _ in models:
        macs, params = count_macs_params(model, size)
        q = statistics.quantiles(times[name], n=4)
        med = statistics.median(times[name])
        print(
            f"| {name} | {params:,} | {macs / 1e6:.1f} | {med:.1f} | {q[0]:.1f}–{q[2]:.1f} | {base / med:.2f}x |"
        )


if __name__ == "__main__":
    main()
