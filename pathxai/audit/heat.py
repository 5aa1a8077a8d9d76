"""The model's view of an audit item (:class:`~pathxai.audit.cohort.Heat`): from an image, a store, or a cache.

Images go through the same geometry and stitching as slides: the image (already at the model's
µm/px) becomes an in-memory :class:`~pathxai.slide.ArraySlide`, padded with white to whole tiles,
:func:`~pathxai.geometry.build_grid` lays the tiles (origins at multiples of the tile size, as on
every slide), :func:`~pathxai.tiling.read_tiles` reads them, and a :class:`~pathxai.stitch.Stitcher`
puts the relevance back. Slide cohorts read the :class:`~pathxai.store.HeatmapStore` of
``pathxai heatmap`` instead.
"""

from __future__ import annotations

import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage.measure import block_reduce

from pathxai.atomic import atomic_path
from pathxai.audit.cohort import Heat, TileHeat
from pathxai.errors import AuditError
from pathxai.geometry import Grid, build_grid
from pathxai.model.card import ModelCard
from pathxai.pixels import tissue_fraction
from pathxai.stitch import Stitcher

__all__ = [
    "MIN_TISSUE",
    "SPRAY_SIDE",
    "TILING",
    "heat_from_npz",
    "heat_from_store",
    "heat_of_image",
    "heat_to_npz",
    "image_predictor",
    "image_tiles",
]

#: Side of the downsized per-tile heatmaps used for SpRAy.
SPRAY_SIDE = 16
#: Tiles with at least this tissue fraction make an item's probability (all tiles when none has).
MIN_TISSUE = 0.3
#: Name of the image tiling rule (part of the heatmap cache key: a new rule invalidates old caches).
TILING = "grid-v2"


def _padded(img: np.ndarray, size: int) -> np.ndarray:
    """``img`` padded with white on the right and bottom to whole tiles of ``size``."""
    h, w = img.shape[:2]
    ph, pw = -(-h // size) * size, -(-w // size) * size
    if (ph, pw) == (h, w):
        return img
    out = np.full((ph, pw, 3), 255, np.uint8)
    out[:h, :w] = img
    return out


def image_tiles(img: np.ndarray, size: int, batch_size: int = 64) -> Iterator[tuple[Grid, int, np.ndarray]]:
    """Tile an image at the model's µm/px on the slide grid: ``(grid, first tile index, pixels)`` per batch.

    The image is an :class:`~pathxai.slide.ArraySlide` padded with white to whole tiles, so every
    pixel lies in exactly one tile and tile origins are multiples of ``size`` (the slide rule).
    """
    from pathxai.slide import ArraySlide
    from pathxai.tiling import read_tiles

    work = _padded(img, size)
    slide = ArraySlide(work, mpp=1.0, name="audit image")
    grid = build_grid(work.shape[1], work.shape[0], 1.0, 1.0, size, size)
    for b in range(0, len(grid.specs), batch_size):
        pix, failed = read_tiles(slide, grid.specs[b : b + batch_size])
        if failed:
            raise AuditError(f"cannot read an in-memory tile: {failed[0][1]}")
        yield grid, b, pix


def _item_probability(probs: np.ndarray, tissue: np.ndarray) -> float:
    use = tissue >= MIN_TISSUE
    return float(probs[use].mean() if use.any() else probs.mean())


def heat_of_image(img: np.ndarray, explainer: Any, card: ModelCard, batch_size: int = 64) -> Heat:
    """Explain every tile of ``img`` (at ``card.mpp``) and stitch the relevance into an image-sized map.

    Parameters
    ----------
    img
        uint8 RGB image already at ``card.mpp``.
    explainer
        A :class:`pathxai.explain.Explainer` for the model (tumour class).
    card
        The model card.
    batch_size
        Tiles per forward/backward pass.

    Returns
    -------
    Heat
        Relevance ``(H, W)``, mean tumour probability over tissue tiles, and the tiles.
    """
    from pathxai.model.io import preprocess

    size = card.input_size
    h, w = img.shape[:2]
    k = max(1, size // SPRAY_SIDE)
    stitcher: Stitcher | None = None
    tiles: list[TileHeat] = []
    tissue: list[float] = []
    for grid, b, pix in image_tiles(img, size, batch_size):
        stitcher = stitcher or Stitcher(grid.m_width, grid.m_height, size)
        ex = explainer(preprocess(pix, card), target=card.tumour_index)
        specs = grid.specs[b : b + len(pix)]
        for s, r, p, px in zip(specs, ex.relevance, ex.probabilities[:, card.tumour_index], pix, strict=True):
            stitcher.add(s.m_x, s.m_y, r)
            small = block_reduce(r[: k * SPRAY_SIDE, : k * SPRAY_SIDE], (k, k), np.sum).astype(np.float32)
            tiles.append(TileHeat(s.m_y, s.m_x, size, float(p), small))
            tissue.append(tissue_fraction(px))
    assert stitcher is not None  # a padded image has at least one tile
    canvas, _ = stitcher.result()
    relevance = np.nan_to_num(canvas[:h, :w]).astype(np.float32)
    prob = _item_probability(np.asarray([p.probability for p in tiles]), np.asarray(tissue))
    return Heat(relevance, prob, tuple(tiles), method=str(getattr(explainer, "method", "lrp")))


def image_predictor(net: Any, card: ModelCard) -> Callable[[Sequence[np.ndarray]], np.ndarray]:
    """``images -> tumour probabilities``: the mean over tissue tiles of the same tiling as :func:`heat_of_image`."""
    import torch

    from pathxai.model.io import preprocess

    def predict(images: Sequence[np.ndarray]) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for img in images:
                probs, tissue = [], []
                for _, _, pix in image_tiles(img, card.input_size):
                    p = torch.softmax(net(preprocess(pix, card)), dim=1)[:, card.tumour_index].numpy()
                    probs += list(p)
                    tissue += [tissue_fraction(q) for q in pix]
                out.append(_item_probability(np.asarray(probs), np.asarray(tissue)))
        return np.asarray(out)

    return predict


def heat_to_npz(path: Path, heat: Heat, key: str) -> None:
    """Cache ``heat`` atomically under ``key`` (the model, method and tiling it was made with)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(
            fh,
            key=np.asarray(key),
            relevance=heat.relevance,
            probability=np.asarray(heat.probability),
            yx=np.asarray([(p.y, p.x) for p in heat.tiles], np.int64).reshape(-1, 2),
            size=np.asarray(heat.tiles[0].size if heat.tiles else 0),
            probs=np.asarray([p.probability for p in heat.tiles], np.float32),
            small=np.stack([p.relevance for p in heat.tiles]) if heat.tiles else np.zeros((0, 1, 1)),
            method=np.asarray(heat.method),
        )


def heat_from_npz(path: Path, key: str) -> Heat | None:
    """The cached heat of ``path`` when it was made under ``key``, else ``None``.

    A damaged cache file (cut short, a flipped bit failing the zip's CRC-32, not a zip at all) also
    gives ``None`` with a warning naming it, so the caller recomputes and rewrites it: it is never
    read as valid.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["key"]) != key:
                return None
            size = int(z["size"])
            tiles = tuple(
                TileHeat(int(y), int(x), size, float(p), s)
                for (y, x), p, s in zip(z["yx"], z["probs"], z["small"], strict=True)
            )
            return Heat(np.asarray(z["relevance"]), float(z["probability"]), tiles, str(z["method"]))
    except KeyError:
        return None  # an older cache layout: recomputed
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        warnings.warn(
            f"{path}: damaged heatmap cache ({type(exc).__name__}: {exc}); recomputing it",
            RuntimeWarning,
            stacklevel=2,
        )
        return None


def _open_store(directory: Path, slide_id: str, card: ModelCard | None) -> Any:
    from pathxai.store import HeatmapStore
    from pathxai.store.heatmap import final_path

    path = final_path(directory, slide_id)
    if not path.is_file():
        raise AuditError(
            f"no heatmap store for slide {slide_id!r} in {directory}",
            path=path,
            hint="run 'pathxai heatmap' for every slide of the manifest, or drop --heatmaps",
        )
    st = HeatmapStore.open(path)
    a = st.attrs
    if (
        card is not None
        and a.get("model_sha256")
        and card.weights_sha256
        and a["model_sha256"] != card.weights_sha256
    ):
        st.close()
        raise AuditError(
            "heatmap store was made with another model than the one audited",
            path=path,
            hint="pass the same --model as 'pathxai heatmap' used",
        )
    return st


def heat_from_store(
    directory: Path,
    slide_id: str,
    shape: tuple[int, int],
    down: float,
    slide_mpp: float,
    card: ModelCard | None,
) -> Heat:
    """A slide's heat from its ``pathxai heatmap`` store, resampled to its thumbnail (``shape``, ``down``).

    Raises
    ------
    AuditError
        When the store is missing, was made with another model, or has no relevance (a
        probability-only run, ``pathxai heatmap --method none``).
    """
    with _open_store(directory, slide_id, card) as st:
        a = st.attrs
        if not st.has_relevance:
            raise AuditError(
                f"heatmap store of slide {slide_id!r} has no relevance (made with method "
                f"{a.get('method')!r}: probabilities only); the audit's relevance checks need it",
                path=st.path,
                hint="rerun 'pathxai heatmap' with an attribution method (e.g. --method lrp), or drop --heatmaps",
            )
        level = 0
        while level < st.levels and max(st.level_shape(level)) > 2 * max(shape):
            level += 1
        canvas = np.nan_to_num(st.relevance(level)).astype(np.float32)
        c_l0 = st.l0_per_pixel(level)
        probs_all = st.probabilities
        tidx = int(a.get("target_class", card.tumour_index if card else 1))
        probs = probs_all[:, tidx] if probs_all.ndim == 2 and probs_all.shape[1] > tidx else probs_all[:, -1]
        coords, tissue, small = st.coords, st.tissue, st.tile_relevance()
        size_l0 = float(a["size"]) * float(a["mpp"]) / float(a.get("slide_mpp", slide_mpp))
        method = str(a.get("method", "lrp"))
    # canvas -> thumbnail grid (both start at level-0 origin)
    h, w = shape
    ys = np.clip((np.arange(h) * down / c_l0).astype(int), 0, canvas.shape[0] - 1)
    xs = np.clip((np.arange(w) * down / c_l0).astype(int), 0, canvas.shape[1] - 1)
    rel = canvas[np.ix_(ys, xs)] * (down / c_l0) ** 2
    ok = np.isfinite(probs)
    size_px = max(1, round(size_l0 / down))
    tiles = tuple(
        TileHeat(int(c[1] / down), int(c[0] / down), size_px, float(p), np.asarray(s, np.float32))
        for c, p, s, good in zip(coords, probs, small, ok, strict=True)
        if good
    )
    use = ok & (tissue >= MIN_TISSUE)
    prob = (
        float(np.nanmean(probs[use])) if use.any() else float(np.nanmean(probs)) if ok.any() else float("nan")
    )
    return Heat(rel.astype(np.float32), prob, tiles, method)
