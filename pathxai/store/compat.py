"""Whether a heatmap store holds the result of *this* slide with *these* settings.

A store records its slide (content fingerprint and path) and every setting that changes its numbers
as HDF5 attributes (:func:`check_schema` first checks that a file is a store of this schema at all).
Before a run reuses a store, finished or partial, :func:`check_compatible` compares
them with the run's and raises :class:`~pathxai.errors.StoreMismatchError` (never a message to parse)
for another slide's store or for each setting that differs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from pathxai.errors import StoreError, StoreMismatchError
from pathxai.store.layout import HEATMAP_SCHEMA, PER_TILE, RELEVANCE_DATASETS

__all__ = [
    "MATCH_KEYS",
    "attr_value",
    "check_compatible",
    "check_same_slide",
    "check_schema",
    "first_line",
    "plain",
]

#: Attributes that must agree between a store and a requested run (else :class:`StoreMismatchError`).
MATCH_KEYS = (
    "model_sha256",
    "method",
    "target_class",
    "mpp",
    "size",
    "stride",
    "slide_mpp",
    "canvas_downsample",
    "min_tissue",
    "tissue_settings",
    "window",
)


def attr_value(value: Any) -> Any:
    """A Python value as an HDF5 attribute: containers as sorted JSON, ``None`` as ``""``."""
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value, sort_keys=True)
    if value is None:
        return ""
    return value


def plain(value: Any) -> Any:
    """An HDF5 attribute as a plain Python value (``bytes`` decoded, numpy scalars unwrapped)."""
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _same(a: Any, b: Any) -> bool:
    a, b = plain(a), plain(b)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return bool(np.isclose(float(a), float(b), rtol=1e-9, atol=0.0))
    if isinstance(a, str) and isinstance(b, str) and a[:1] in "{[" and b[:1] in "{[":
        try:
            return bool(json.loads(a) == json.loads(b))
        except json.JSONDecodeError:
            return a == b
    return bool(a == b)


def _same_path(a: Any, b: Any) -> bool:
    """Whether two recorded slide paths name the same file (resolved; missing counts as different)."""
    if a is None or b is None:
        return False
    try:
        return Path(str(plain(a))).resolve() == Path(str(b)).resolve()
    except OSError:
        return str(plain(a)) == str(b)


def check_same_slide(attrs: Mapping[str, Any], expected: Mapping[str, Any], path: str | Path) -> None:
    """Raise :class:`StoreMismatchError` when a store's ``attrs`` are of another slide than ``expected``.

    Stores record the slide's content fingerprint (``slide_fingerprint``): two different slides with
    the same file name (multi-site cohorts) never share a result, and a byte-identical copy under
    another path does. Stores written before fingerprints are matched by resolved path.
    """
    have, want = attrs.get("slide_fingerprint"), expected.get("slide_fingerprint")
    if have is not None and want is not None:
        same = plain(have) == want
    else:
        same = _same_path(attrs.get("slide"), expected.get("slide"))
    if not same:
        raise StoreMismatchError(
            f"holds the heatmap of another slide ({plain(attrs.get('slide'))!s}), not of "
            f"{expected.get('slide')!s} (same output name, different content)",
            path=path,
            hint="use another --out directory, give the slides distinct ids (a manifest "
            "'slide_id' column), or --overwrite to replace it",
        )


def check_compatible(
    attrs: Mapping[str, Any],
    expected: Mapping[str, Any],
    path: str | Path,
    keys: Iterable[str] = MATCH_KEYS,
) -> None:
    """Raise :class:`StoreMismatchError` for another slide's store or naming every setting that differs.

    Parameters
    ----------
    attrs
        The store's attributes (:attr:`HeatmapStore.attrs <pathxai.store.heatmap.HeatmapStore.attrs>`).
    expected
        The attributes the run would write; keys it lacks are not compared.
    path
        The store, for the message.
    keys
        The settings compared after the slide.
    """
    check_same_slide(attrs, expected, path)
    diffs = []
    for key in keys:
        if key not in expected:
            continue
        want = attr_value(expected[key])
        have = attrs.get(key)
        if have is None or not _same(have, want):
            diffs.append(f"{key}: store has {have!r}, run wants {plain(want)!r}")
    if diffs:
        raise StoreMismatchError(
            "store was made with other settings (" + "; ".join(diffs) + ")",
            path=path,
            hint="use --overwrite to replace it, or another --out directory",
        )


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message (HDF5's are long)."""
    return next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)


def check_schema(h5: h5py.File, path: Path) -> None:
    """Raise :class:`StoreError` unless ``h5`` is a heatmap store of this schema with its datasets."""
    try:
        schema = plain(h5.attrs.get("schema"))
        if schema != HEATMAP_SCHEMA:
            raise StoreError(
                f"not a pathxai heatmap store of this version (schema {schema!r}, expected {HEATMAP_SCHEMA!r})",
                path=path,
                hint="rerun with --overwrite to rebuild it",
            )
        missing = [k for k in PER_TILE if k not in h5 and k not in RELEVANCE_DATASETS]
        if missing:
            raise StoreError(
                f"heatmap store lacks datasets {missing}",
                path=path,
                hint="rerun with --overwrite to rebuild it",
            )
    except (OSError, RuntimeError, KeyError, ValueError) as exc:  # damaged metadata
        raise StoreError(
            f"damaged HDF5 file ({first_line(exc)})", path=path, hint="delete it and rerun"
        ) from exc
