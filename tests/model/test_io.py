from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathxai.errors import ModelError
from pathxai.model import ModelCard, build_model, load_model, load_model_with_card, preprocess, save_model
from pathxai.model.card import CARD_FILENAME, WEIGHTS_FILENAME
from pathxai.model.io import sha256_bytes

TINY = {"widths": [8, 16, 16, 32, 32]}


def _card(**kw) -> ModelCard:
    base = dict(
        arch="compact_cnn",
        classes=("non-tumour", "tumour"),
        tumour_index=1,
        input_size=64,
        mpp=1.24,
        mean=(0.7, 0.5, 0.7),
        std=(0.15, 0.2, 0.15),
        arch_kwargs=dict(TINY),
        licence="test",
    )
    base.update(kw)
    return ModelCard(**base)


@pytest.fixture()
def saved(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    torch.manual_seed(0)
    model = build_model("compact_cnn", **TINY)
    # make BN buffers non-trivial so the round trip covers them
    model.train()
    with torch.no_grad():
        model(torch.randn(4, 3, 64, 64))
    model.eval()
    out = save_model(model, _card(), tmp_path / "m")
    return model, out


def test_round_trip_is_bit_exact(saved: tuple[torch.nn.Module, Path]) -> None:
    model, out = saved
    loaded, card = load_model_with_card(out)
    assert not loaded.training
    assert loaded.pathxai_card == card
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert card.weights_sha256 == sha256_bytes((out / WEIGHTS_FILENAME).read_bytes())
    # loading via the weights file or the card file works too
    assert load_model(out / WEIGHTS_FILENAME).pathxai_card == card
    assert load_model(out / CARD_FILENAME).pathxai_card == card


def test_save_writes_no_temporary_files(saved: tuple[torch.nn.Module, Path]) -> None:
    _, out = saved
    assert sorted(p.name for p in out.iterdir()) == [WEIGHTS_FILENAME, CARD_FILENAME]


def test_card_dict_round_trip_and_unknown_keys() -> None:
    card = _card(training={"split": {"mode": "x"}}, channel_plan={"features.0": [0, 2, 3]})
    d = json.loads(card.to_json())
    assert ModelCard.from_dict(d) == card
    d["surprise"] = 1
    with pytest.raises(ModelError, match="unknown keys"):
        ModelCard.from_dict(d)


@pytest.mark.parametrize(
    "bad",
    [
        {"tumour_index": 2},
        {"input_size": 0},
        {"mpp": -1.0},
        {"mpp": float("nan")},
        {"std": (0.1, 0.0, 0.1)},
        {"mean": (0.1, 0.2)},
        {"classes": ("only",)},
        {"weights_sha256": "xyz"},
        {"channel_plan": {"features.0": []}},
    ],
)
def test_invalid_card_values_are_model_errors(bad: dict) -> None:
    with pytest.raises(ModelError):
        _card(**bad)


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def test_tampered_weights_rejected(saved: tuple[torch.nn.Module, Path]) -> None:
    _, out = saved
    _flip_byte(out / WEIGHTS_FILENAME, -10)
    with pytest.raises(ModelError, match="sha256"):
        load_model(out)


def test_truncated_weights_rejected(saved: tuple[torch.nn.Module, Path]) -> None:
    _, out = saved
    w = out / WEIGHTS_FILENAME
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(ModelError, match=r"truncated|sha256"):
        load_model(out)


def _rewrite_card(out: Path, **changes) -> None:
    d = json.loads((out / CARD_FILENAME).read_text())
    d.update(changes)
    (out / CARD_FILENAME).write_text(json.dumps(d))


def test_truncated_weights_with_matching_card_rejected(saved: tuple[torch.nn.Module, Path]) -> None:
    _, out = saved
    w = out / WEIGHTS_FILENAME
    data = w.read_bytes()[:-100]
    w.write_bytes(data)
    _rewrite_card(out, weights_sha256=sha256_bytes(data))
    with pytest.raises(ModelError, match="safetensors"):
        load_model(out)


class _Payload:
    def __reduce__(self):
        return (Path("/tmp/pathxai_io_pwned").touch, ())


def test_pickle_disguised_as_safetensors_never_unpickled(saved: tuple[torch.nn.Module, Path]) -> None:
    model, out = saved
    Path("/tmp/pathxai_io_pwned").unlink(missing_ok=True)
    data = pickle.dumps({"state": model.state_dict(), "x": _Payload()}, protocol=4)
    (out / WEIGHTS_FILENAME).write_bytes(data)
    _rewrite_card(out, weights_sha256=sha256_bytes(data))
    with pytest.raises(ModelError, match="pickle"):
        load_model(out)
    torch.save(model.state_dict(), out / WEIGHTS_FILENAME)  # torch zip archive
    _rewrite_card(out, weights_sha256=sha256_bytes((out / WEIGHTS_FILENAME).read_bytes()))
    with pytest.raises(ModelError, match="pickle"):
        load_model(out)
    assert not Path("/tmp/pathxai_io_pwned").exists()


def test_nan_weights_rejected(tmp_path: Path) -> None:
    model = build_model("compact_cnn", **TINY)
    with torch.no_grad():
        model.classifier.weight[0, 0] = float("nan")
    out = save_model(model, _card(), tmp_path / "nan")
    with pytest.raises(ModelError, match="NaN"):
        load_model(out)


def test_wrong_architecture_rejected(saved: tuple[torch.nn.Module, Path]) -> None:
    _, out = saved
    _rewrite_card(out, arch="resnet18", arch_kwargs={})
    with pytest.raises(ModelError, match="do not fit architecture"):
        load_model(out)


def test_wrong_arch_kwargs_shape_mismatch_rejected(saved: tuple[torch.nn.Module, Path]) -> None:
    _, out = saved
    _rewrite_card(out, arch_kwargs={"widths": [8, 16, 16, 32, 64]})
    with pytest.raises(ModelError, match="shape"):
        load_model(out)


def test_unknown_arch_and_missing_files(saved: tuple[torch.nn.Module, Path], tmp_path: Path) -> None:
    _, out = saved
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nowhere")
    other = tmp_path / "copy"
    shutil.copytree(out, other)
    (other / CARD_FILENAME).unlink()
    with pytest.raises(ModelError, match="model card"):
        load_model(other)
    _rewrite_card(out, arch="alexnet")
    with pytest.raises(ModelError, match="unknown architecture"):
        load_model(out)
    (out / CARD_FILENAME).write_text("{not json")
    with pytest.raises(ModelError, match="JSON"):
        load_model(out)


def test_preprocess_shapes_and_values() -> None:
    card = _card()
    px = np.zeros((5, 7, 3), np.uint8)
    px[..., 0] = 255
    x = preprocess(px, card)
    assert x.shape == (1, 3, 5, 7) and x.dtype == torch.float32
    assert torch.allclose(x[0, 0], torch.full((5, 7), (1.0 - 0.7) / 0.15))
    assert torch.allclose(x[0, 1], torch.full((5, 7), (0.0 - 0.5) / 0.2))
    assert preprocess(np.zeros((4, 9, 9, 3), np.uint8), card).shape == (4, 3, 9, 9)
    with pytest.raises(ValueError):
        preprocess(np.zeros((9, 9, 3), np.float32), card)
    with pytest.raises(ValueError):
        preprocess(np.zeros((9, 9, 4), np.uint8), card)


def test_preprocess_matches_the_plain_formula_per_channel() -> None:
    """Every pixel and channel gets its own channel's normalisation, in channels-last memory order."""
    card = _card()
    px = np.random.default_rng(3).integers(0, 256, (3, 6, 11, 3), dtype=np.uint8)
    x = preprocess(px, card)
    mean = np.asarray(card.mean, np.float64)
    std = np.asarray(card.std, np.float64)
    expected = ((px / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    assert x.shape == (3, 3, 6, 11)
    np.testing.assert_allclose(x.numpy(), expected, rtol=0, atol=1e-5)
    assert x.is_contiguous(memory_format=torch.channels_last)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(
            [
                "arch",
                "classes",
                "tumour_index",
                "input_size",
                "mpp",
                "mean",
                "std",
                "weights_sha256",
                "arch_kwargs",
                "channel_plan",
                "training",
                "extra",
                "licence",
                "bogus",
            ]
        ),
        _json,
    )
    | _json
)
def test_fuzz_card_parser_only_raises_model_error(data: object) -> None:
    base = json.loads(_card().to_json())
    if isinstance(data, dict):
        base.update(data)
        data = base
    try:
        ModelCard.from_dict(data)  # type: ignore[arg-type]
    except ModelError:
        pass
