"""A run's trust summary: how faithful its method's maps are on the slide, and whether they need the weights.

* Faithfulness: region perturbation (:func:`pathxai.explain.metrics.region_perturbation`) of at most
  :data:`N_TILES` of the slide's own tiles, chosen with a fixed seed among the tiles that were read, on
  the explained (tumour) class's *probability*, most relevant regions first (MoRF), blurred; reported as
  the ratio of its area to that of a random order (below 1: the map finds evidence faster than chance).
* Randomisation: the cascading model-parameter randomisation test
  (:func:`pathxai.explain.randomisation.cascading_randomisation`) on a few of those tiles: the mean
  Spearman correlation of ``|R|`` after every layer is re-initialised, with its verdict. It depends on the
  model and method only, so it is computed once and cached as JSON in ``$PATHXAI_TRUST_CACHE`` (default
  ``trust/`` in ``$PATHXAI_CACHE`` or ``~/.cache/pathxai``), keyed by the weights' sha256 and the method.

Both run after the slide's tiles are done, in the calling process.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pathxai.geometry import TileSpec
from pathxai.jsonio import write_json
from pathxai.slide import BaseSlide
from pathxai.tiling import read_tiles

__all__ = [
    "NO_RELEVANCE",
    "N_TILES",
    "choose_tiles",
    "faithfulness",
    "randomisation",
    "randomisation_cache",
    "slide_trust",
]

#: Most tiles of a slide the faithfulness is measured on (the issue allows up to 64; 32 tiles and 4
#: steps keep it to 2 x 5 forward passes of 32 tiles, about 1 % of a big slide's tile time and a few
#: seconds on a small one, where 64 tiles x 8 steps cost ~35 s under load).
N_TILES = 32
#: Perturbation steps and region side (pixels) of the faithfulness curve.
STEPS, REGION = 4, 16
#: Tiles the randomisation test explains (with every randomised copy of the model).
N_RANDOMISATION = 4
#: Methods that draw no relevance map (nothing to trust).
NO_RELEVANCE = frozenset({"none"})
#: Version of the cached randomisation entries (a new one ignores older files).
CACHE_VERSION = 1


def choose_tiles(ok: np.ndarray, n: int = N_TILES, seed: int = 0) -> np.ndarray:
    """Indices of at most ``n`` of the tiles with ``ok`` True, drawn with ``seed``, in grid order."""
    candidates = np.flatnonzero(np.asarray(ok, dtype=bool))
    if len(candidates) <= n:
        return candidates
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=n, replace=False))


def faithfulness(model: Any, x: Any, relevance: np.ndarray, target: int, seed: int = 0) -> dict[str, Any]:
    """MoRF area of ``relevance`` over that of a random order, on the target probability.

    Parameters
    ----------
    model : torch.nn.Module
        The classifier.
    x : torch.Tensor
        ``(N, C, H, W)`` model inputs.
    relevance : numpy.ndarray
        ``(N, H, W)`` the method's relevance for ``target``.
    target : int
        Explained class.
    seed : int
        Seed of the random order.

    Returns
    -------
    dict
        ``ratio`` (mean MoRF area / mean random area), ``morf_auc``, ``random_auc``, ``n_tiles``,
        ``steps``, ``region``.
    """
    from pathxai.explain.metrics import random_relevance, region_perturbation

    def area(rel: np.ndarray) -> float:
        curve = region_perturbation(
            model, x, rel, target, patch=REGION, steps=STEPS, baseline="blur", score="probability"
        )
        return float(curve.auc.mean())

    n, _, h, w = x.shape
    morf, rand = area(relevance), area(random_relevance((n, h, w), seed=seed))
    ratio = morf / rand if rand > 0 else None
    return {
        "ratio": ratio,
        "morf_auc": morf,
        "random_auc": rand,
        "n_tiles": int(n),
        "steps": STEPS,
        "region": REGION,
    }


def randomisation(model: Any, method: str, x: Any, target: int, reference: np.ndarray) -> dict[str, Any]:
    """Mean Spearman correlation of ``|R|`` after every layer is randomised, and its verdict."""
    import torch

    from pathxai.explain.randomisation import cascading_randomisation, randomisable_layers, verdict

    targets = torch.full((len(x),), int(target), dtype=torch.int64)
    res = cascading_randomisation(model, method, x, targets, reference, seed=0, last_only=True)
    full = res.full[np.isfinite(res.full)]
    rho = float(full.mean()) if full.size else None
    return {
        "spearman": rho,
        "verdict": verdict(rho),
        "n_tiles": len(x),
        "layers": len(randomisable_layers(model)),
    }


def _cache_root() -> Path:
    """``$PATHXAI_TRUST_CACHE``, else ``trust/`` in ``$PATHXAI_CACHE`` or ``~/.cache/pathxai``."""
    own = os.environ.get("PATHXAI_TRUST_CACHE")
    if own:
        return Path(own).expanduser()
    env = os.environ.get("PATHXAI_CACHE")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "pathxai") / "trust"


def randomisation_cache(weights_sha256: str, method: str) -> Path:
    """The cache file of a model's (by weights sha256) randomisation score for ``method``."""
    safe = re.sub(r"[^A-Za-z0-9_+-]", "_", method)
    return _cache_root() / f"{re.sub(r'[^0-9a-fA-F]', '', weights_sha256)[:64]}-{safe}.json"


def _cached(path: Path, key: dict[str, Any], compute: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The entry at ``path`` when it was made for ``key``; else ``compute()``, stored there.

    The value does not say whether it came from the cache, so a store's attributes (and checksums) are
    the same whether its run computed the score or read it.
    """
    try:
        entry = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(entry, dict) and entry.get("key") == key and isinstance(entry.get("value"), dict):
            return dict(entry["value"])
    except (OSError, ValueError):
        pass
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, {"key": key, "value": value})
    except OSError:
        pass  # a read-only cache only costs the next run the same computation
    return value


def slide_trust(
    slide: BaseSlide,
    specs: Sequence[TileSpec],
    ok: np.ndarray,
    model: Any,
    card: Any,
    explainer: Any,
    method: str,
    seed: int = 0,
) -> dict[str, Any]:
    """The trust summary of one slide's run.

    Parameters
    ----------
    slide
        The open slide.
    specs
        The grid's tiles.
    ok
        ``(len(specs),)`` True for the tiles that were read (the store's ``~failed``).
    model, card, explainer
        The run's model, its card and the explainer of ``method`` (:func:`pathxai.heatmap.pool.prepared`).
    method
        The run's attribution method.
    seed
        Seed of the tile choice and the random order.

    Returns
    -------
    dict
        ``{"method", "faithfulness": {...}, "randomisation": {...}}``, or ``{"method", "status":
        "no relevance"}`` for a method without maps.
    """
    if method in NO_RELEVANCE:
        return {"method": method, "status": "no relevance"}
    import torch

    from pathxai.model import preprocess

    chosen = choose_tiles(ok, N_TILES, seed)
    if len(chosen) == 0:
        return {"method": method, "status": "no tiles"}
    pixels, _failed = read_tiles(slide, [specs[int(i)] for i in chosen])
    target = int(card.tumour_index)
    with torch.inference_mode(False):
        x = preprocess(pixels, card)
        relevance = explainer(x, target).relevance
        faith = faithfulness(model, x, relevance, target, seed)
        k = min(N_RANDOMISATION, len(x))
        sha = str(card.weights_sha256 or "")

        def compute() -> dict[str, Any]:
            return randomisation(model, method, x[:k], target, relevance[:k])

        if sha:
            key = {"version": CACHE_VERSION, "weights_sha256": sha, "method": method}
            rand = _cached(randomisation_cache(sha, method), key, compute)
        else:  # weights without a checksum: nothing to key a cache on
            rand = compute()
    return {"method": method, "seed": seed, "faithfulness": faith, "randomisation": rand}
