"""Resuming a slide's heatmap run: reuse its complete store, continue its partial store, or start anew.

Both decisions check first that an old store is this slide's with this run's settings
(:func:`pathxai.store.compat.check_compatible`): another slide's or other settings' store raises
:class:`~pathxai.errors.StoreMismatchError` and is left untouched (its work is never thrown away);
only an unreadable leftover of a killed run is deleted and started over.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pathxai.errors import StoreError, StoreMismatchError
from pathxai.geometry import Grid
from pathxai.store.heatmap import HeatmapStore, final_path, partial_path

__all__ = ["OpenedRun", "find_complete", "open_run"]


@dataclass(frozen=True)
class OpenedRun:
    """A writable partial store for a run, and whether it continues an earlier run's progress."""

    store: HeatmapStore
    resumed: bool


def find_complete(directory: str | Path, slide_id: str, expected: Mapping[str, Any]) -> Path | None:
    """Return the complete store of ``slide_id`` in ``directory`` if a run with ``expected`` may reuse it.

    A partial file left beside a complete store (a run killed between renaming the store into place
    and removing its partial file) is deleted.

    Parameters
    ----------
    directory
        The output directory.
    slide_id
        The slide's output name.
    expected
        The attributes the run would write (slide fingerprint and settings).

    Returns
    -------
    Path or None
        The complete store, or ``None`` when there is none (the run computes it).

    Raises
    ------
    StoreMismatchError
        If the store there belongs to another slide or was made with other settings.
    StoreError
        If the file there is not a readable heatmap store.
    """
    path = final_path(directory, slide_id)
    if not path.exists():
        return None
    with HeatmapStore.open(path) as existing:
        existing.check_compatible(expected)
        complete = existing.attrs.get("status") == "complete"
    if not complete:
        return None
    partial_path(directory, slide_id).unlink(missing_ok=True)
    return path


def open_run(
    directory: str | Path,
    slide_id: str,
    grid: Grid,
    expected: Mapping[str, Any],
    n_classes: int,
    tile_px: int | None,
    batch_size: int,
    overwrite: bool = False,
) -> OpenedRun:
    """Continue the partial store of ``slide_id`` if it matches this run, else create a new one.

    Parameters
    ----------
    directory, slide_id
        Where the run writes and the slide's output name there.
    grid
        This run's tiles.
    expected
        The attributes the run writes; a partial store must match them.
    n_classes
        Model classes (columns of ``/probabilities``).
    tile_px
        Side of a tile's pooled relevance map (``None``: a probability-only store).
    batch_size
        Tiles per batch, recorded in a new store (a resumed run keeps its store's).
    overwrite
        Replace any partial store instead of continuing it.

    Returns
    -------
    OpenedRun
        The writable store and whether it was resumed.

    Raises
    ------
    StoreMismatchError
        If the partial store belongs to another slide, was made with other settings, or holds
        other tiles than ``grid`` (the slide changed); it is left as it is.
    """
    ppath = partial_path(directory, slide_id)
    if ppath.exists() and not overwrite:
        try:
            store = HeatmapStore.resume(ppath, expected)
        except StoreMismatchError:
            raise  # another slide's or other settings' work in progress: never thrown away
        except StoreError:
            ppath.unlink(missing_ok=True)  # unreadable leftovers of a killed run: start over
        else:
            if store.n_tiles == len(grid.specs) and np.array_equal(store.coords, grid.coords()):
                return OpenedRun(store, True)
            store.close()
            raise StoreMismatchError(
                "partial store has other tiles than this run's grid (slide changed?)",
                path=ppath,
                hint="rerun with --overwrite to start this slide again",
            )
    t_index = np.array([(s.t_col, s.t_row) for s in grid.specs], dtype=np.int32).reshape(-1, 2)
    store = HeatmapStore.create(
        ppath,
        coords=grid.coords(),
        m_coords=grid.m_coords(),
        t_index=t_index,
        tissue=grid.tissue,
        n_classes=n_classes,
        tile_px=tile_px,
        attrs={**expected, "batch_size": batch_size},
    )
    return OpenedRun(store, False)
