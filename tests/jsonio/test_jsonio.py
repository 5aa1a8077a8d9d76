"""The one JSON writer: no bare NaN, numpy values as plain JSON, atomic writes."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from pathxai.jsonio import dumps_json, to_jsonable, write_json


def _strict_load(text: str) -> object:
    def refuse(name: str) -> object:
        raise ValueError(f"bare {name} in JSON")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_becomes_null_everywhere() -> None:
    obj = {
        "nan": float("nan"),
        "inf": float("inf"),
        "ninf": -math.inf,
        "np_nan": np.float32("nan"),
        "arr": np.array([1.0, np.nan, np.inf]),
        "nested": [{"x": (float("nan"), 2)}],
    }
    text = dumps_json(obj)
    assert "NaN" not in text and "Infinity" not in text
    back = _strict_load(text)
    assert back == {
        "nan": None,
        "inf": None,
        "ninf": None,
        "np_nan": None,
        "arr": [1.0, None, None],
        "nested": [{"x": [None, 2]}],
    }


def test_numpy_paths_and_keys_become_plain_json() -> None:
    obj = {
        1: np.int64(3),
        "f": np.float64(0.25),
        "b": np.bool_(True),
        "a": np.arange(4, dtype=np.uint8).reshape(2, 2),
        "p": Path("/tmp/x.h5"),
    }
    out = to_jsonable(obj)
    assert out == {"1": 3, "f": 0.25, "b": True, "a": [[0, 1], [2, 3]], "p": "/tmp/x.h5"}
    assert type(out["1"]) is int and type(out["f"]) is float and type(out["b"]) is bool
    # an int stays an int (json.dumps(default=float) used to write 3.0)
    assert dumps_json({"n": np.int64(3)}, indent=None) == '{"n": 3}\n'


def test_formatting_options() -> None:
    obj = {"b": 1, "a": [1, 2]}
    assert dumps_json(obj, indent=None, sort_keys=True) == '{"a": [1, 2], "b": 1}\n'
    assert dumps_json(obj, indent=None, compact=True, newline=False) == '{"b":1,"a":[1,2]}'
    assert dumps_json(obj) == json.dumps(obj, indent=2) + "\n"


def test_unserialisable_value_raises() -> None:
    with pytest.raises(TypeError):
        dumps_json({"s": {1, 2}})


def test_write_json_atomic_and_strict(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "out.json"
    assert write_json(target, {"v": float("nan")}) == target
    assert _strict_load(target.read_text()) == {"v": None}
    assert [p.name for p in target.parent.iterdir()] == ["out.json"]  # no temporary left behind
    with pytest.raises(TypeError):
        write_json(target, {"v": object()})
    assert _strict_load(target.read_text()) == {"v": None}  # a failed write leaves the old file
