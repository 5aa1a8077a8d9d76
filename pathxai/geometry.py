"""Tiles and grids, and the coordinate frames they live in.

Frames are named by prefix, as OpenSlide's deepzoom does:

- ``l0_``: level-0 pixels of the slide (the scanner's full resolution);
- ``t_``: tile indices (column, row) of a :class:`Grid`;
- ``m_``: pixels at the grid's *target* mpp (the model's resolution); ``l0 = m * scale``;
- ``c_``: pixels of an overlay canvas at ``target mpp * canvas_downsample``.

Tile origins are integers in the ``m_`` frame, so stitching in that frame (and in any canvas
whose downsample is an integer) is exact. Level-0 read windows are the rounded images of the
``m_`` windows; the rounding error is below half a level-0 pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class TileSpec:
    """One tile of a grid.

    Attributes
    ----------
    t_col, t_row
        Tile indices in the grid.
    m_x, m_y
        Origin in pixels at the target mpp.
    size
        Side of the tile in pixels at the target mpp.
    l0_x, l0_y, l0_w, l0_h
        The level-0 window that is read and resized to ``size`` x ``size``.
    mpp
        Target resolution in µm per pixel.
    """

    t_col: int
    t_row: int
    m_x: int
    m_y: int
    size: int
    l0_x: int
    l0_y: int
    l0_w: int
    l0_h: int
    mpp: float


@dataclass(frozen=True)
class Grid:
    """All tile specs of a slide at a target mpp, tile size and stride.

    Attributes
    ----------
    l0_width, l0_height
        Level-0 slide dimensions.
    slide_mpp
        Level-0 resolution in µm per pixel.
    mpp
        Target resolution in µm per pixel.
    size, stride
        Tile side and step, in pixels at the target mpp (``stride < size`` means overlap).
    specs
        The kept tiles in row-major order.
    tissue
        Tissue fraction of each kept tile, in ``[0, 1]`` (1 when no mask was used).
    min_tissue
        The tissue fraction a tile needed to be kept.
    """

    l0_width: int
    l0_height: int
    slide_mpp: float
    mpp: float
    size: int
    stride: int
    specs: tuple[TileSpec, ...]
    tissue: np.ndarray = field(compare=False, repr=False)
    min_tissue: float = 0.0

    @property
    def scale(self) -> float:
        """Level-0 pixels per target pixel (``mpp / slide_mpp``)."""
        return self.mpp / self.slide_mpp

    @property
    def m_width(self) -> int:
        """Slide width in pixels at the target mpp (floor)."""
        return math.floor(self.l0_width / self.scale + 1e-9)

    @property
    def m_height(self) -> int:
        """Slide height in pixels at the target mpp (floor)."""
        return math.floor(self.l0_height / self.scale + 1e-9)

    @property
    def n_cols(self) -> int:
        """Number of tile columns of the full (unfiltered) grid."""
        return n_positions(self.m_width, self.size, self.stride)

    @property
    def n_rows(self) -> int:
        """Number of tile rows of the full (unfiltered) grid."""
        return n_positions(self.m_height, self.size, self.stride)

    def __len__(self) -> int:
        return len(self.specs)

    def coords(self) -> np.ndarray:
        """Return the tiles' level-0 origins as an ``(N, 2)`` int64 array of ``(l0_x, l0_y)``."""
        return np.array([(s.l0_x, s.l0_y) for s in self.specs], dtype=np.int64).reshape(-1, 2)

    def m_coords(self) -> np.ndarray:
        """Return the tiles' origins at the target mpp as an ``(N, 2)`` int64 array of ``(m_x, m_y)``."""
        return np.array([(s.m_x, s.m_y) for s in self.specs], dtype=np.int64).reshape(-1, 2)

    def to_dict(self) -> dict[str, float | int]:
        """Describe the grid (without its tiles) for metadata."""
        return {
            "l0_width": self.l0_width,
            "l0_height": self.l0_height,
            "slide_mpp": self.slide_mpp,
            "mpp": self.mpp,
            "size": self.size,
            "stride": self.stride,
            "min_tissue": self.min_tissue,
            "n_tiles": len(self.specs),
        }


def n_positions(extent: int, size: int, stride: int) -> int:
    """Number of tile positions ``0, stride, 2*stride, ...`` with the whole tile inside ``extent``."""
    if size <= 0 or stride <= 0:
        raise ValueError(f"tile size and stride must be positive, got size={size}, stride={stride}")
    if extent < size:
        return 0
    return (extent - size) // stride + 1


def m_to_l0(m: float, scale: float) -> float:
    """Convert a target-mpp coordinate to level-0 pixels."""
    return m * scale


def l0_to_m(l0: float, scale: float) -> float:
    """Convert a level-0 coordinate to target-mpp pixels."""
    return l0 / scale


def make_spec(t_col: int, t_row: int, size: int, stride: int, scale: float, mpp: float) -> TileSpec:
    """Build the spec of tile ``(t_col, t_row)``.

    Parameters
    ----------
    t_col, t_row
        Tile indices.
    size, stride
        Tile side and step at the target mpp.
    scale
        Level-0 pixels per target pixel.
    mpp
        Target mpp.

    Returns
    -------
    TileSpec
        The spec; its level-0 window is ``[round(m * scale), round((m + size) * scale))``.
    """
    m_x, m_y = t_col * stride, t_row * stride
    l0_x, l0_y = round(m_x * scale), round(m_y * scale)
    l0_x1, l0_y1 = round((m_x + size) * scale), round((m_y + size) * scale)
    return TileSpec(
        t_col=t_col,
        t_row=t_row,
        m_x=m_x,
        m_y=m_y,
        size=size,
        l0_x=l0_x,
        l0_y=l0_y,
        l0_w=max(1, l0_x1 - l0_x),
        l0_h=max(1, l0_y1 - l0_y),
        mpp=mpp,
    )


def tissue_fractions(
    mask: np.ndarray, mask_mpp: float, m_xy: np.ndarray, size: int, mpp: float
) -> np.ndarray:
    """Fraction of each tile covered by a boolean mask, via an integral image.

    Parameters
    ----------
    mask
        Boolean ``(H, W)`` tissue mask.
    mask_mpp
        Resolution of the mask in µm per pixel.
    m_xy
        ``(N, 2)`` tile origins at the target mpp.
    size
        Tile side at the target mpp.
    mpp
        Target mpp.

    Returns
    -------
    np.ndarray
        ``(N,)`` float64 fractions in ``[0, 1]``.
    """
    if len(m_xy) == 0:
        return np.zeros(0)
    f = mpp / mask_mpp  # mask pixels per target pixel
    integral = np.zeros((mask.shape[0] + 1, mask.shape[1] + 1), dtype=np.int64)
    integral[1:, 1:] = np.cumsum(np.cumsum(mask.astype(np.int64), axis=0), axis=1)
    h, w = mask.shape
    x0 = np.clip(np.floor(m_xy[:, 0] * f).astype(np.int64), 0, w)
    y0 = np.clip(np.floor(m_xy[:, 1] * f).astype(np.int64), 0, h)
    x1 = np.clip(np.ceil((m_xy[:, 0] + size) * f).astype(np.int64), 0, w)
    y1 = np.clip(np.ceil((m_xy[:, 1] + size) * f).astype(np.int64), 0, h)
    x1 = np.maximum(x1, np.minimum(x0 + 1, w))
    y1 = np.maximum(y1, np.minimum(y0 + 1, h))
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    area = np.maximum((x1 - x0) * (y1 - y0), 1)
    return np.clip(total / area, 0.0, 1.0)


def build_grid(
    l0_width: int,
    l0_height: int,
    slide_mpp: float,
    mpp: float,
    size: int,
    stride: int | None = None,
    mask: np.ndarray | None = None,
    mask_mpp: float | None = None,
    min_tissue: float = 0.0,
) -> Grid:
    """Lay a regular grid of tiles over a slide and keep tiles with enough tissue.

    Parameters
    ----------
    l0_width, l0_height
        Level-0 slide dimensions.
    slide_mpp
        Level-0 µm per pixel.
    mpp
        Target µm per pixel.
    size
        Tile side at the target mpp.
    stride
        Step between tiles at the target mpp; defaults to ``size`` (no overlap).
    mask, mask_mpp
        Optional boolean tissue mask and its resolution.
    min_tissue
        Keep tiles whose tissue fraction is at least this (ignored without a mask).

    Returns
    -------
    Grid
        Tiles in row-major order.

    Raises
    ------
    ValueError
        On non-positive sizes, resolutions or a ``min_tissue`` outside ``[0, 1]``.
    """
    stride = size if stride is None else stride
    if size <= 0 or stride <= 0:
        raise ValueError(f"tile size and stride must be positive, got size={size}, stride={stride}")
    if not (slide_mpp > 0 and mpp > 0):
        raise ValueError(f"resolutions must be positive, got slide_mpp={slide_mpp}, mpp={mpp}")
    if not 0.0 <= min_tissue <= 1.0:
        raise ValueError(f"min_tissue must be in [0, 1], got {min_tissue}")
    if mask is not None and mask_mpp is None:
        raise ValueError("mask_mpp is required with a mask")
    scale = mpp / slide_mpp
    m_w = math.floor(l0_width / scale + 1e-9)
    m_h = math.floor(l0_height / scale + 1e-9)
    cols, rows = n_positions(m_w, size, stride), n_positions(m_h, size, stride)
    rr, cc = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
    m_xy = np.stack([cc.ravel() * stride, rr.ravel() * stride], axis=1).astype(np.int64)
    if mask is not None and mask_mpp is not None:
        frac = tissue_fractions(mask, mask_mpp, m_xy, size, mpp)
        keep = frac >= min_tissue if min_tissue > 0 else np.ones(len(frac), dtype=bool)
    else:
        frac = np.ones(len(m_xy))
        keep = np.ones(len(m_xy), dtype=bool)
    specs = tuple(
        make_spec(int(c), int(r), size, stride, scale, mpp)
        for c, r in zip(cc.ravel()[keep], rr.ravel()[keep], strict=True)
    )
    return Grid(
        l0_width=l0_width,
        l0_height=l0_height,
        slide_mpp=slide_mpp,
        mpp=mpp,
        size=size,
        stride=stride,
        specs=specs,
        tissue=frac[keep].astype(np.float32),
        min_tissue=min_tissue if mask is not None else 0.0,
    )
