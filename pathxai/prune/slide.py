"""Pruning on the tiles of one unlabelled slide (the demo): the model's own predictions as targets.

The slide's heatmap store says which tiles were analysed and what the model predicted; a seeded draw
splits them into reference tiles (channel scores) and disjoint drift tiles (LRP heatmaps of both
models compared). The labelled study is :func:`pathxai.pipeline.prune.prune_from_manifest`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pathxai.errors import PathXAIError
from pathxai.model import load_model_with_card, preprocess
from pathxai.prune.drift import explanation_drift
from pathxai.prune.heldout import lrp_heatmaps
from pathxai.prune.plan import PruningPlan
from pathxai.prune.report import PruneReport, SlideStudy, summary
from pathxai.prune.save import pruned_card, save_pruned_model
from pathxai.slide import open_slide
from pathxai.store import HeatmapStore

__all__ = ["prune_on_slide", "split_tiles"]


def _tile_batch(slide: Path, store: HeatmapStore, idx: np.ndarray, card: Any) -> torch.Tensor:
    """The model inputs of the store's tiles ``idx``, read again from the slide at the store's mpp."""
    a = store.attrs
    mpp, size = float(a["mpp"]), int(a["size"])
    coords = store.coords
    with open_slide(slide, mpp=float(a["slide_mpp"])) as sl:
        pixels = np.stack(
            [sl.read_region((int(coords[i][0]), int(coords[i][1])), (size, size), mpp) for i in idx]
        )
    return preprocess(pixels, card)


def split_tiles(
    probs: np.ndarray, store_path: Path, reference: int, drift: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, disjoint reference and drift tile indices among the tiles with probabilities.

    Raises
    ------
    PathXAIError
        With fewer than 4 analysed tiles.
    """
    ok = np.flatnonzero(np.isfinite(probs).all(axis=1))
    need = reference + drift
    if ok.size < 4:
        raise PathXAIError("too few analysed tiles to prune on", path=store_path, hint="use a larger slide")
    rng = np.random.default_rng(seed)
    pick = rng.permutation(ok)[: min(need, ok.size)]
    n_ref = max(2, round(pick.size * reference / need))
    return np.sort(pick[:n_ref]), np.sort(pick[n_ref:])


def prune_on_slide(
    slide: Path,
    store_path: Path,
    out_dir: Path,
    model: str,
    criterion: str,
    ratio: float,
    tiles: tuple[int, int] = (16, 16),
    seed: int = 0,
    log: Callable[[str], None] = print,
    command: str = "pathxai demo",
) -> PruneReport:
    """Prune ``model`` with ``criterion`` scored on the slide's tiles; save model + ``pruning.json``.

    Parameters
    ----------
    slide, store_path
        The slide and its heatmap store (which tiles were analysed, the model's probabilities).
    out_dir
        The pruned model's folder (:func:`~pathxai.prune.save.save_pruned_model`).
    model, criterion, ratio
        The model to prune, the criterion and the fraction of channels removed.
    tiles
        Reference and drift tiles drawn (fewer when the slide has fewer).
    seed
        Seed of the draw and of the pruning.
    log
        Takes a one-line progress message.
    command
        The command recorded in ``pruning.json``.

    Returns
    -------
    PruneReport
        The content of ``pruning.json``.
    """
    net, card = load_model_with_card(model)
    with HeatmapStore.open(store_path) as store:
        probs = store.probabilities
        ref_idx, drift_idx = split_tiles(probs, store_path, tiles[0], tiles[1], seed)
        log(f"pruning: {ref_idx.size} reference tiles, {drift_idx.size} drift tiles from {store_path.name}")
        x_ref = _tile_batch(slide, store, ref_idx, card)
        x_drift = _tile_batch(slide, store, drift_idx, card) if drift_idx.size else x_ref[:0]
        y_ref = torch.from_numpy(np.argmax(probs[ref_idx], axis=1).astype(np.int64))
    t0 = time.perf_counter()
    plan, pruned = PruningPlan.compute_and_prune(
        net, criterion, ratio, [(x_ref, y_ref)], input_size=card.input_size, seed=seed
    )
    prune_s = time.perf_counter() - t0
    drift = None
    if x_drift.shape[0]:
        target = torch.full((x_drift.shape[0],), card.tumour_index, dtype=torch.long)
        drift = explanation_drift(net, pruned, x_drift, target, lrp_heatmaps(card.tumour_index))
    report = PruneReport(
        plan=plan,
        drift=drift,
        summary=summary(plan.metrics_before, plan.metrics_after),
        source_model=model,
        source_weights_sha256=card.weights_sha256,
        prune_seconds=prune_s,
        study=SlideStudy(str(slide), [int(i) for i in ref_idx], [int(i) for i in drift_idx]),
        command=command,
    )
    save_pruned_model(pruned, pruned_card(card, plan), report, out_dir)
    return report
