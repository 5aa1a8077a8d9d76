"""bf16 vs fp32 LRP heatmaps on the trained model: per-patch Pearson correlation and speed.

Usage::

    python benchmarks/explain_bf16.py --model default --patches 128

The issue allows bf16 only if its heatmaps correlate >= 0.99 with fp32 on the trained default model;
this script measures that on held-out GlaS patches (same patches as ``explain_faithfulness.py``) and
times both paths on one batch of 64.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from explain_faithfulness import glas_patches

from pathxai.explain import Explainer
from pathxai.model import load_model_with_card, preprocess


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--patches", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, card = load_model_with_card(args.model)
    pixels, labels, _ = glas_patches(card, args.patches, 0)
    x = preprocess(pixels, card)
    with Explainer(model, "lrp") as fp32, Explainer(model, "lrp", dtype=torch.bfloat16) as bf16:
        a = fp32(x, torch.as_tensor(labels))
        b = bf16(x, torch.as_tensor(labels))
        corr = np.array(
            [np.corrcoef(a.relevance[i].ravel(), b.relevance[i].ravel())[0, 1] for i in range(len(x))]
        )
        prob_diff = np.abs(a.probabilities - b.probabilities).max()
        batch = x[:64]
        times = {}
        for name, explainer in (("fp32", fp32), ("bf16", bf16)):
            explainer(batch)
            runs = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                explainer(batch)
                runs.append(time.perf_counter() - start)
            times[name] = statistics.median(runs)
    print(f"model {args.model}; {len(x)} held-out GlaS patches; load {os.getloadavg()[0]:.2f}")
    print(
        f"per-patch Pearson r(bf16, fp32): min {corr.min():.4f}, 5th pct {np.percentile(corr, 5):.4f}, "
        f"median {np.median(corr):.4f}, share >= 0.99: {(corr >= 0.99).mean():.3f}"
    )
    print(f"max |prob bf16 - prob fp32|: {prob_diff:.4f}")
    print(f"batch 64 LRP time: fp32 {times['fp32']:.3f} s, bf16 {times['bf16']:.3f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
