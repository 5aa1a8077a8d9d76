"""The one JSON writer: plain, standard JSON that never holds a bare ``NaN``.

Python's :mod:`json` writes ``NaN`` and ``Infinity`` by default, which strict parsers (browsers'
``JSON.parse``, ``jq``, most other languages) reject. Every JSON file pathxai writes goes through
:func:`dumps_json` / :func:`write_json`: non-finite floats become ``null``, numpy scalars and arrays
become plain numbers and lists, tuples become lists, paths become strings, and the file is
written atomically.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

from pathxai.atomic import write_text_atomic

__all__ = ["dumps_json", "to_jsonable", "write_json"]


def to_jsonable(obj: Any) -> Any:
    """Return ``obj`` as plain JSON values.

    Parameters
    ----------
    obj
        Dicts (keys become strings), lists, tuples, numpy scalars and arrays (anything with
        ``tolist``), paths, and plain JSON values, nested in any way.

    Returns
    -------
    Any
        The same data with ``NaN``/``±inf`` replaced by ``None``; other values are kept as they are
        (:func:`json.dumps` rejects whatever it cannot write).
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, str | bool | int) or obj is None:
        return obj
    if isinstance(obj, float):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, PurePath):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalars and arrays, without importing numpy
        return to_jsonable(obj.tolist())
    return obj


def dumps_json(
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    compact: bool = False,
    newline: bool = True,
) -> str:
    """Serialise ``obj`` (through :func:`to_jsonable`) to standard JSON text.

    Parameters
    ----------
    obj
        What to write.
    indent
        Spaces per nesting level; ``None`` writes one line.
    sort_keys
        Sort the keys of every object.
    compact
        No spaces after ``,`` and ``:`` (for large one-line files such as GeoJSON).
    newline
        End the text with a newline.

    Returns
    -------
    str
        The JSON text.

    Raises
    ------
    TypeError
        If ``obj`` holds a value JSON cannot represent (a set, an arbitrary object).
    """
    text = json.dumps(
        to_jsonable(obj),
        indent=indent,
        sort_keys=sort_keys,
        separators=(",", ":") if compact else None,
        allow_nan=False,
    )
    return text + "\n" if newline else text


def write_json(
    path: str | Path,
    obj: Any,
    *,
    indent: int | None = 2,
    sort_keys: bool = False,
    compact: bool = False,
    newline: bool = True,
) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`dumps_json`) and return the path."""
    text = dumps_json(obj, indent=indent, sort_keys=sort_keys, compact=compact, newline=newline)
    return write_text_atomic(path, text)
