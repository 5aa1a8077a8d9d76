"""QuPath-importable GeoJSON: polygons of a boolean region mask, in level-0 pixel coordinates.

Each connected region becomes one ``Feature`` with a ``Polygon`` geometry (exterior ring first,
then its holes) and QuPath's annotation properties (``objectType``, ``classification`` with
``name`` and ``color``). Coordinates are level-0 pixels of the slide, the frame QuPath uses.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from skimage import measure

from pathxai.errors import StoreError
from pathxai.jsonio import write_json

__all__ = ["mask_features", "read_geojson", "simplify_chain", "write_geojson"]


def _signed_area(xy: np.ndarray) -> float:
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def simplify_chain(coords: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker simplification of a polygonal chain ``(K, 2)``: the points kept, first and last always.

    The same algorithm and distances as ``skimage.measure.approximate_polygon`` (perpendicular
    distance to a segment where a point projects inside it, else the distance to the nearer end),
    without its module's import of ``scipy.signal`` (seconds on a busy 2-core machine).
    """
    if tolerance <= 0 or len(coords) < 3:
        return coords
    keep = np.zeros(len(coords), dtype=bool)
    keep[0] = keep[-1] = True
    stack = [(0, len(coords) - 1)]
    while stack:
        start, end = stack.pop()
        if end - start < 2:
            continue
        p0, p1 = coords[start], coords[end]
        d = p1 - p0
        inner = coords[start + 1 : end]
        v0, v1 = inner - p0, inner - p1
        perp = (v0 @ d > 0) & (-(v1 @ d) > 0)
        angle = -np.arctan2(d[0], d[1])
        cos, sin = np.cos(angle), np.sin(angle)
        line = p0[1] * sin + p0[0] * cos
        dist = np.where(
            perp,
            np.abs(inner[:, 0] * cos + inner[:, 1] * sin - line),
            np.minimum(np.hypot(v0[:, 0], v0[:, 1]), np.hypot(v1[:, 0], v1[:, 1])),
        )
        if bool((dist > tolerance).any()):
            mid = start + int(np.argmax(dist)) + 1
            keep[mid] = True
            stack += [(mid, end), (start, mid)]
    return coords[keep]


def _ring(contour_rc: np.ndarray, offset_rc: tuple[int, int], scale: float, tolerance: float) -> np.ndarray:
    """Convert a ``find_contours`` ring (row, col in padded-crop indices) to closed level-0 ``(x, y)``."""
    ring = simplify_chain(contour_rc, tolerance)
    # Index i of the padded crop is canvas pixel i - 1 + offset; its centre is at edge coordinate + 0.5.
    rows = ring[:, 0] - 1 + offset_rc[0] + 0.5
    cols = ring[:, 1] - 1 + offset_rc[1] + 0.5
    xy = np.stack([cols, rows], axis=1) * scale
    if not np.array_equal(xy[0], xy[-1]):
        xy = np.vstack([xy, xy[:1]])
    return xy


def mask_features(
    mask: np.ndarray,
    l0_per_pixel: float,
    classification: str,
    color: tuple[int, int, int],
    values: np.ndarray | None = None,
    min_area_px: int = 4,
    tolerance: float = 0.5,
    properties: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Polygons of the connected regions of ``mask`` as GeoJSON features.

    Parameters
    ----------
    mask
        Boolean ``(H, W)`` mask on a canvas whose pixel ``(r, c)`` covers level-0
        ``[c, c + 1) x [r, r + 1)`` times ``l0_per_pixel``.
    l0_per_pixel
        Level-0 pixels per mask pixel.
    classification
        QuPath class name (e.g. ``"Tumor"``).
    color
        RGB colour of the class.
    values
        Optional ``(H, W)`` map whose mean and max inside each region are added to its measurements.
    min_area_px
        Regions smaller than this (mask pixels) are dropped.
    tolerance
        Polygon simplification tolerance in mask pixels (0: none).
    properties
        Extra properties for every feature.

    Returns
    -------
    list[dict]
        GeoJSON ``Feature`` dicts.
    """
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    labels = measure.label(np.asarray(mask, bool), connectivity=2)
    features: list[dict[str, Any]] = []
    for region in measure.regionprops(labels):
        if region.area < min_area_px:
            continue
        rings = _polygon(region, l0_per_pixel, tolerance)
        if rings is None:
            continue
        props: dict[str, Any] = {
            "objectType": "annotation",
            "name": classification,
            "classification": {"name": classification, "color": [int(c) for c in color]},
            "isLocked": False,
            "measurements": _measurements(region, l0_per_pixel, values),
        }
        props.update(properties or {})
        features.append(
            {
                "type": "Feature",
                "geometry": {"type": "Polygon", "coordinates": [np.round(r, 2).tolist() for r in rings]},
                "properties": props,
            }
        )
    return features


def _polygon(region: Any, l0_per_pixel: float, tolerance: float) -> list[np.ndarray] | None:
    """The exterior ring (counter-clockwise) then the holes (clockwise) of a labelled region, level-0."""
    r0, c0, r1, c1 = region.bbox
    crop = np.zeros((r1 - r0 + 2, c1 - c0 + 2), dtype=np.float32)
    crop[1:-1, 1:-1] = region.image
    # fully_connected="high": diagonal neighbours join, as in the 8-connected labelling above, so a
    # region has exactly one exterior ring (otherwise a diagonal part became a "hole" outside it).
    contours = measure.find_contours(crop, 0.5, fully_connected="high")
    rings = [_ring(c, (r0, c0), l0_per_pixel, tolerance) for c in contours]
    rings = [r for r in rings if len(r) >= 4 and abs(_signed_area(r)) > 0]
    if not rings:
        return None
    areas = [abs(_signed_area(r)) for r in rings]
    outer_i = int(np.argmax(areas))
    outer = rings[outer_i] if _signed_area(rings[outer_i]) > 0 else rings[outer_i][::-1]
    holes = [r if _signed_area(r) < 0 else r[::-1] for i, r in enumerate(rings) if i != outer_i]
    return [outer, *holes]


def _measurements(region: Any, l0_per_pixel: float, values: np.ndarray | None) -> dict[str, float]:
    """A region's level-0 area, and the mean and max of ``values`` inside it."""
    measurements: dict[str, float] = {"area_l0_px": float(region.area * l0_per_pixel**2)}
    if values is not None:
        r0, c0, r1, c1 = region.bbox
        inside = values[r0:r1, c0:c1][region.image]
        inside = inside[np.isfinite(inside)]
        if inside.size:
            measurements["mean"] = float(inside.mean())
            measurements["max"] = float(inside.max())
    return measurements


def write_geojson(path: str | Path, features: Sequence[Mapping[str, Any]], **collection: Any) -> Path:
    """Write a ``FeatureCollection`` atomically (extra keyword fields go on the collection)."""
    doc = {"type": "FeatureCollection", **collection, "features": list(features)}
    return write_json(path, doc, indent=None, compact=True, newline=False)


def read_geojson(path: str | Path) -> list[dict[str, Any]]:
    """Read the features of a GeoJSON ``FeatureCollection`` (or a bare feature list, as QuPath writes).

    Raises
    ------
    StoreError
        If the file is not valid JSON or not GeoJSON features with polygon geometry.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StoreError(f"not a readable GeoJSON file ({exc})", path=path) from exc
    feats = doc.get("features") if isinstance(doc, dict) else doc
    if isinstance(doc, dict) and doc.get("type") == "Feature":
        feats = [doc]
    if not isinstance(feats, list):
        raise StoreError("GeoJSON has no feature list", path=path)
    for i, f in enumerate(feats):
        geom = f.get("geometry") if isinstance(f, dict) else None
        if not isinstance(geom, dict) or geom.get("type") not in ("Polygon", "MultiPolygon"):
            raise StoreError(f"feature {i} has no Polygon/MultiPolygon geometry", path=path)
        coords = geom.get("coordinates")
        if not isinstance(coords, list) or not coords:
            raise StoreError(f"feature {i} has no coordinates", path=path)
    return feats
