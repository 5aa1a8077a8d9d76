"""Numbers behind the correctness guards: fast LRP vs zennit's stock composite, and conservation.

Usage::

    python benchmarks/explain_correctness.py --model default      # trained default model + references

Prints, per model: the max relative error ``max|R_fast - R_stock| / max|R_stock|`` of the fast path
against zennit's stock composite (same inputs: held-out GlaS patches for the trained model, random
normal inputs for the others), for the three LRP composites; the same with batch-norm eps set to 0
(where zennit's merged batch norm is an exact identity); and the LRP-epsilon conservation error
``|sum R - logit| / |logit|`` after zeroing every bias (float64, tiny stabilisers, and float32 defaults).
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch
import torchvision
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pathxai.explain import Explainer
from pathxai.model import build_model, load_model_with_card, preprocess

COMPOSITES = ["lrp_epsilon_plus_flat", "lrp_epsilon_gamma_box", "lrp_epsilon_alpha2_beta1_flat"]


def rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


def zero_biases(model: nn.Module) -> nn.Module:
    model = copy.deepcopy(model)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.zero_()
                m.bias.zero_()
            elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
                m.bias.zero_()
    return model


def report(name: str, model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        logits = model(x)[:, 1].abs()
    print(
        f"#### {name}: input {tuple(x.shape)}; |class-1 logit| min {logits.min():.2e}, max {logits.max():.2e}"
    )
    for method in COMPOSITES:
        with (
            Explainer(model, method) as fast,
            Explainer(model, method, fast=False, channels_last=False) as stock,
        ):
            err = rel_err(fast(x).relevance, stock(x).relevance)
        eps0 = copy.deepcopy(model)
        for m in eps0.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = 0.0
        with (
            Explainer(eps0, method) as fast,
            Explainer(eps0, method, fast=False, channels_last=False) as stock,
        ):
            err0 = rel_err(fast(x).relevance, stock(x).relevance)
        print(f"- {method}: fast vs stock max rel err {err:.1e} (BN eps 1e-5), {err0:.1e} (BN eps 0)")
    with torch.no_grad():
        truth = model(x)
        with (
            Explainer(model, "lrp", channels_last=False) as fast,
            Explainer(model, "lrp_zennit", channels_last=False) as stock,
        ):
            dev_fast = float((fast.model(x) - truth).abs().max() / truth.abs().max())
            dev_stock = float((stock.model(x) - truth).abs().max() / truth.abs().max())
    print(
        f"- logits of the prepared model vs the original model (max rel dev): fast (BN fused, removed) "
        f"{dev_fast:.1e}; stock zennit (merged BN left as x / sqrt(1 + eps)) {dev_stock:.1e}"
    )
    zb = zero_biases(model)
    with Explainer(zb, "lrp") as explainer:
        result = explainer(x)
    total = result.relevance.reshape(len(x), -1).astype(np.float64).sum(1)
    logit = result.logits[:, 1].astype(np.float64)
    print(
        f"- conservation, biases zeroed, float32 defaults (eps 1e-6): max |sum R - logit| / |logit| = "
        f"{float(np.max(np.abs(total - logit) / np.abs(logit))):.1e}"
    )
    zb64 = zb.double()
    x64 = x.double()
    with Explainer(zb64, "lrp", epsilon=1e-12, stabilizer=1e-12) as explainer:
        result = explainer(x64)
        with torch.no_grad():
            logit64 = explainer.model(x64)[:, 1].numpy()
    total = result.relevance.reshape(len(x), -1).astype(np.float64).sum(1)
    print(
        f"- conservation, biases zeroed, float64, stabilisers 1e-12: max rel error "
        f"{float(np.max(np.abs(total - logit64) / np.abs(logit64))):.1e} (relevance returned as float32)"
    )
    print()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    if args.model != "none":
        from explain_faithfulness import glas_patches

        model, card = load_model_with_card(args.model)
        pixels, _, _ = glas_patches(card, args.n, 0)
        report(
            f"trained model {args.model} ({card.arch}), held-out GlaS patches",
            model,
            preprocess(pixels, card),
        )
    report(
        "compact_cnn (untrained, default init), random inputs",
        build_model("compact_cnn").eval(),
        torch.randn(args.n, 3, 112, 112),
    )
    report(
        "torchvision resnet18 (untrained), random inputs",
        torchvision.models.resnet18(num_classes=2).eval(),
        torch.randn(2, 3, 224, 224),
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
