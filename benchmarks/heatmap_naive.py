"""The naive baseline: a per-tile loop read_region -> preprocess -> zennit stock LRP -> numpy -> paste.

Usage::

    python benchmarks/heatmap_naive.py --tiles 3000 --limit 300 --threads 2

What a first script would do: open the slide with the same facade (OpenSlide decoding), loop over the same
tissue tiles one at a time, read each with ``read_region`` at the model's mpp, run zennit's stock
``EpsilonPlusFlat`` composite with its ``SequentialMergeBatchNorm`` canonizer through
``zennit.attribution.Gradient`` (registered once, as a careful user would), move the relevance to numpy and
paste it into an in-memory canvas. Times the first ``--limit`` tiles (after one warm-up tile) and reports
tiles/s, to compare with ``heatmap_throughput.py``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from heatmap_common import machine_state, slide_for_tiles
from zennit.attribution import Gradient
from zennit.composites import EpsilonPlusFlat
from zennit.torchvision import SequentialMergeBatchNorm

from pathxai.model import load_model_with_card, preprocess
from pathxai.slide import open_slide
from pathxai.tiling import tile_slide


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument(
        "--tiles", type=int, default=3000, help="size of the generated slide (as the throughput run)"
    )
    ap.add_argument("--limit", type=int, default=300, help="tiles timed")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, card = load_model_with_card(args.model)
    size, mpp = card.input_size, card.mpp
    path = slide_for_tiles(args.tiles, size, mpp)
    print(f"# naive per-tile baseline ({machine_state()} at start), torch threads {args.threads}")
    composite = EpsilonPlusFlat(canonizers=[SequentialMergeBatchNorm()])
    with open_slide(path, decoder="openslide") as slide, Gradient(model, composite) as attributor:
        grid, _ = tile_slide(slide, mpp, size, None, 0.25, None)
        w, h = slide.dimensions
        scale = mpp / slide.mpp
        canvas = np.zeros((int(h / scale), int(w / scale)), dtype=np.float32)
        specs = grid.specs[: args.limit + 1]
        t0 = 0.0
        for i, s in enumerate(specs):
            if i == 1:
                t0 = time.perf_counter()
            pixels = slide.read_region((s.l0_x, s.l0_y), (size, size), mpp)
            x = preprocess(pixels, card)
            out_grad = torch.zeros(1, len(card.classes))
            out_grad[0, card.tumour_index] = 1.0
            logits, rel = attributor(x, out_grad)
            torch.softmax(logits, 1).detach().numpy()
            r = rel.sum(1)[0].detach().numpy()
            canvas[s.m_y : s.m_y + size, s.m_x : s.m_x + size] = r
        dt = time.perf_counter() - t0
    n = len(specs) - 1
    print(
        f"naive loop: {n} tiles in {dt:.1f}s = {n / dt:.1f} tiles/s (slide has {len(grid.specs)} tissue tiles)"
    )
    print(f"machine at end: {machine_state()}")


if __name__ == "__main__":
    main()
