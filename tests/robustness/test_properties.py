"""Property-based fuzzing (hypothesis, bounded to seconds): parsers fail only with their domain error.

- manifest parser: arbitrary bytes and arbitrary CSV tables -> a ``Manifest`` or ``ManifestError``;
  ``validate`` never raises and returns ``Problem`` objects; valid manifests round-trip.
- model card: arbitrary JSON -> a ``ModelCard`` or ``ModelError``; valid cards round-trip and a
  single corrupted field is always caught.
- grid geometry over continuous resolutions: tiles inside the slide, windows the exact image of
  the target window, coordinates survive the HDF5 store unchanged.

The longer campaign with many more examples is ``benchmarks/fuzz_campaign.py``.
"""

from __future__ import annotations

import csv
import io
import json
import math
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pathxai.errors import ManifestError, ModelError
from pathxai.geometry import build_grid
from pathxai.manifest import ALIASES, Problem, read_manifest, validate
from pathxai.model.card import ModelCard
from pathxai.store import read_coords, write_coords

FAST = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---- strategies (shared with benchmarks/fuzz_campaign.py) -------------------------------------
COLUMN_NAMES = sorted({n for names in ALIASES.values() for n in names} | {"notes", "", "grade"})
cell = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["benign", "malignant", "tumor", "0", "1", "a.png", "../x.png", "/etc/passwd", "0.5", "nan"]
    ),
    st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
)


@st.composite
def csv_tables(draw: st.DrawFn) -> bytes:
    cols = draw(st.lists(st.sampled_from(COLUMN_NAMES), min_size=0, max_size=7))
    rows = draw(st.lists(st.lists(cell, min_size=0, max_size=len(cols) + 1), max_size=8))
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    w.writerows(rows)
    text = buf.getvalue()
    enc = draw(st.sampled_from(["utf-8", "utf-8-sig", "latin-1"]))
    try:
        return text.encode(enc)
    except UnicodeEncodeError:
        return text.encode("utf-8")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=10),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)

VALID_CARD: dict[str, Any] = {
    "arch": "compact_cnn",
    "classes": ["non-tumour", "tumour"],
    "tumour_index": 1,
    "input_size": 112,
    "mpp": 1.24,
    "mean": [0.7, 0.5, 0.7],
    "std": [0.15, 0.2, 0.15],
    "weights_sha256": "ab" * 32,
    "arch_kwargs": {"widths": [24, 48, 96, 192, 256]},
    "channel_plan": None,
    "training": {},
    "metrics": {"auc": 0.95},
    "licence": "research",
    "command": "pathxai train",
    "pathxai_version": "0.1.0",
    "extra": {},
}


@st.composite
def card_dicts(draw: st.DrawFn) -> Any:
    """Arbitrary JSON, or a valid card with keys dropped, added or replaced by arbitrary JSON."""
    kind = draw(st.sampled_from(["any", "mutate", "mutate", "mutate"]))
    if kind == "any":
        return draw(json_values)
    card = dict(VALID_CARD)
    for key in draw(st.lists(st.sampled_from(sorted(card)), max_size=3)):
        if draw(st.booleans()):
            card[key] = draw(json_values)
        else:
            card.pop(key, None)
    if draw(st.booleans()):
        card[draw(st.text(max_size=6))] = draw(json_values)
    return card


def check_manifest_bytes(raw: bytes, workdir: Path) -> None:
    """The manifest contract for one input (used by the tests and the campaign)."""
    path = workdir / "m.csv"
    path.write_bytes(raw)
    try:
        m = read_manifest(path)
    except ManifestError as exc:
        assert str(exc)
    else:
        assert len(m) >= 1
        ids = [r.id for r in m]
        assert len(set(ids)) == len(ids), "read_manifest accepted duplicate ids"
        for r in m:
            assert r.tumour in (None, 0, 1)
            assert r.sha256 is None or (len(r.sha256) == 64 and set(r.sha256) <= set("0123456789abcdef"))
            assert r.mpp is None or (math.isfinite(r.mpp) and r.mpp > 0)
    problems = validate(path, workdir, checksums=True)
    assert all(isinstance(p, Problem) and p.message for p in problems)
    for p in problems:
        p.format(path)


def check_card_data(data: Any) -> ModelCard | None:
    """The model-card contract for one input: a valid card or ModelError, never anything else."""
    try:
        card = ModelCard.from_dict(data)
    except ModelError as exc:
        assert str(exc)
        return None
    assert ModelCard.from_json(card.to_json()) == card
    assert 0 <= card.tumour_index < card.num_classes
    assert all(math.isfinite(v) for v in (*card.mean, *card.std, card.mpp))
    return card


# ---- manifest -----------------------------------------------------------------------------
@FAST
@given(raw=st.binary(max_size=400))
def test_manifest_arbitrary_bytes(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        check_manifest_bytes(raw, Path(d))


@FAST
@given(raw=csv_tables())
def test_manifest_arbitrary_tables(raw: bytes) -> None:
    with tempfile.TemporaryDirectory() as d:
        check_manifest_bytes(raw, Path(d))


@FAST
@given(
    n=st.integers(1, 6),
    labels=st.lists(st.sampled_from(["benign", "malignant", "tumor", "normal"]), min_size=6, max_size=6),
)
def test_valid_manifest_round_trip(n: int, labels: list[str]) -> None:
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        lines = ["id,path,label,patient"]
        for i in range(n):
            (root / f"{i}.png").write_bytes(b"x")
            lines.append(f"s{i},{i}.png,{labels[i]},p{i % 2}")
        (root / "m.csv").write_text("\n".join(lines) + "\n")
        m = read_manifest(root / "m.csv")
        assert [r.id for r in m] == [f"s{i}" for i in range(n)]
        assert validate(root / "m.csv", root) == []


# ---- model card ---------------------------------------------------------------------------
def test_valid_card_control() -> None:
    assert check_card_data(dict(VALID_CARD)) is not None


@FAST
@given(data=card_dicts())
def test_model_card_arbitrary_json(data: Any) -> None:
    check_card_data(data)


@FAST
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(str.encode))
def test_model_card_arbitrary_bytes(raw: bytes) -> None:
    try:
        ModelCard.from_json(raw)
    except ModelError:
        pass


@FAST
@given(key=st.sampled_from(["classes", "tumour_index", "input_size", "mpp", "mean", "std", "weights_sha256"]),
       value=json_values)  # fmt: skip
def test_single_bad_field_is_caught(key: str, value: Any) -> None:
    card = dict(VALID_CARD)
    card[key] = value
    result = check_card_data(card)
    if result is not None:  # the replacement happened to be valid: it must then really be valid
        assert getattr(result, key) == (tuple(value) if isinstance(value, list) else value)


# ---- geometry and the coordinates store ---------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    w=st.integers(1, 6000),
    h=st.integers(1, 6000),
    slide_mpp=st.floats(0.1, 2.0),
    mpp=st.floats(0.2, 4.0),
    size=st.integers(8, 300),
    stride_frac=st.floats(0.3, 1.5),
)
def test_grid_inside_slide_for_any_resolution(w, h, slide_mpp, mpp, size, stride_frac) -> None:
    stride = max(1, round(size * stride_frac))
    scale = mpp / slide_mpp
    assume((w / scale) * (h / scale) / (stride * stride) < 50_000)  # keep examples fast
    grid = build_grid(w, h, slide_mpp, mpp, size, stride)
    assert len(grid) == grid.n_cols * grid.n_rows
    for s in grid.specs:
        assert s.m_x + size <= grid.m_width and s.m_y + size <= grid.m_height
        assert 0 <= s.l0_x and s.l0_x + s.l0_w <= w + 1e-9
        assert 0 <= s.l0_y and s.l0_y + s.l0_h <= h + 1e-9
        assert abs(s.l0_x - s.m_x * scale) <= 0.5 and abs(s.l0_y - s.m_y * scale) <= 0.5
        assert abs((s.l0_x + s.l0_w) - (s.m_x + size) * scale) <= 0.5 or s.l0_w == 1
    if grid.n_cols:
        assert grid.m_width - ((grid.n_cols - 1) * stride + size) < stride


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    slide_mpp=st.floats(0.2, 1.0),
    mpp=st.floats(0.5, 2.0),
    size=st.integers(16, 64),
    min_tissue=st.floats(0.0, 1.0),
)
def test_coords_store_round_trip(seed, slide_mpp, mpp, size, min_tissue) -> None:
    rng = np.random.default_rng(seed)
    mask = rng.random((30, 40)) < rng.random()
    grid = build_grid(1600, 1200, slide_mpp, mpp, size, size, mask, 8.0 * slide_mpp, min_tissue)
    with tempfile.TemporaryDirectory() as d:
        path = write_coords(Path(d) / "c.h5", grid, {"slide": "x.tiff", "tissue_settings": {"mpp": 8}})
        back = read_coords(path).grid
        assert list(Path(d).iterdir()) == [path]  # no temp file left
    assert back.specs == grid.specs
    np.testing.assert_array_equal(back.tissue, grid.tissue)
    assert (back.slide_mpp, back.mpp, back.size, back.stride) == (
        grid.slide_mpp,
        grid.mpp,
        grid.size,
        grid.stride,
    )
    assert (grid.tissue >= min_tissue).all() if min_tissue > 0 else True


@settings(max_examples=40, deadline=None)
@given(raw=st.binary(max_size=2000))
def test_coords_reader_rejects_garbage(raw: bytes) -> None:
    from pathxai.errors import StoreError

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "c.h5"
        p.write_bytes(raw)
        try:
            read_coords(p)
        except StoreError:
            pass
        else:
            raise AssertionError("garbage accepted as a coordinates file")


def test_card_json_is_strict() -> None:
    """NaN cannot sneak in through JSON's non-standard literals."""
    text = json.dumps({**VALID_CARD, "mpp": float("nan")})
    try:
        ModelCard.from_json(text)
    except ModelError as exc:
        assert "mpp" in str(exc)
    else:
        raise AssertionError("NaN mpp accepted")


# ---- GeoJSON export / import --------------------------------------------------------------
def _polygon_area(ring: list[list[float]]) -> float:
    xy = np.asarray(ring, dtype=np.float64)
    return 0.5 * abs(float(np.dot(xy[:-1, 0], xy[1:, 1]) - np.dot(xy[1:, 0], xy[:-1, 1])))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**16), scale=st.sampled_from([1.0, 2.5, 16.0]), density=st.floats(0.05, 0.6))
def test_geojson_round_trip(seed: int, scale: float, density: float) -> None:
    from scipy import ndimage

    from pathxai.export.geojson import mask_features, read_geojson, write_geojson

    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.random((40, 56)), 2.5)
    mask = field > np.quantile(field, 1 - density)  # smooth blobs, some with holes
    feats = mask_features(mask, scale, "Tumor", (200, 0, 0), min_area_px=1, tolerance=0.0)
    with tempfile.TemporaryDirectory() as d:
        p = write_geojson(Path(d) / "f.geojson", feats)
        back = read_geojson(p)
        assert [x.name for x in Path(d).iterdir()] == ["f.geojson"]
    assert json.loads(json.dumps(feats)) == back
    h, w = mask.shape
    area = 0.0
    for f in back:
        geom = f["geometry"]
        polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
        for rings in polys:
            for k, ring in enumerate(rings):
                assert len(ring) >= 4 and ring[0] == ring[-1]
                xy = np.asarray(ring)
                assert np.isfinite(xy).all()
                assert (
                    (xy >= -1e-9).all()
                    and (xy[:, 0] <= w * scale + 1e-9).all()
                    and (xy[:, 1] <= h * scale + 1e-9).all()
                )
                area += _polygon_area(ring) * (1 if k == 0 else -1)
    # contours run through pixel centres: the area is the mask's minus about half a pixel per boundary pixel
    boundary = mask & ~ndimage.binary_erosion(mask)
    assert abs(area / scale**2 - mask.sum()) <= 0.75 * boundary.sum() + 4, (area / scale**2, mask.sum())


@settings(max_examples=60, deadline=None)
@given(doc=json_values)
def test_geojson_reader_rejects_garbage(doc: Any) -> None:
    from pathxai.errors import StoreError
    from pathxai.export.geojson import read_geojson

    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / "g.geojson"
        p.write_text(json.dumps(doc))
        try:
            feats = read_geojson(p)
        except StoreError:
            return
        assert isinstance(feats, list)


def test_card_with_non_finite_free_form_values_is_refused() -> None:
    """Found by the long campaign: such a card loaded, then crashed with ValueError when re-saved."""
    for key in ("metrics", "training", "extra", "arch_kwargs"):
        for bad in (float("nan"), float("inf"), [1.0, float("-inf")]):
            data = {**VALID_CARD, key: {"x": {"y": bad}}}
            try:
                ModelCard.from_dict(data)
            except ModelError as exc:
                assert key in str(exc)
            else:
                raise AssertionError(f"{key}={bad} accepted")
