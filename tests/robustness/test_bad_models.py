"""Bad-input catalogue, models: every broken, foreign, tampered or malicious model file is refused.

Each case goes through ``pathxai evaluate --model ...`` (the landed CLI entry point that loads a
model) and must give one clear line, exit 2, no output file. The pickle cases also prove the
payload never runs: unpickling it would create a marker file.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from pathxai.model import build_model, save_model
from pathxai.model.card import CARD_FILENAME, WEIGHTS_FILENAME, ModelCard
from pathxai.model.io import load_model_with_card, sha256_bytes

from .conftest import assert_clean_failure, leftovers, run_cli, run_main

WIDTHS = [4, 8, 8, 8, 8]


class Payload:
    """Unpickling this runs ``touch MARKER``: the attack a ``.pt`` file can carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def _card(**over: object) -> ModelCard:
    base: dict[str, object] = dict(
        arch="compact_cnn",
        classes=("non-tumour", "tumour"),
        tumour_index=1,
        input_size=32,
        mpp=1.24,
        mean=(0.5, 0.5, 0.5),
        std=(0.2, 0.2, 0.2),
        arch_kwargs={"widths": WIDTHS},
    )
    base.update(over)
    return ModelCard(**base)  # type: ignore[arg-type]


@pytest.fixture()
def good_model(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    return save_model(build_model("compact_cnn", widths=WIDTHS), _card(), tmp_path / "good")


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A two-image manifest (generated H&E-ish PNGs) for ``pathxai evaluate``."""
    root = tmp_path_factory.mktemp("cohort")
    rng = np.random.default_rng(0)
    rows = ["id,path,label,patient,mpp"]
    for i, label in enumerate(("benign", "malignant", "benign", "malignant")):
        img = rng.integers(60, 200, (64, 64, 3), dtype=np.uint8)
        Image.fromarray(img).save(root / f"{i}.png")
        rows.append(f"i{i},{i}.png,{label},p{i},1.24")
    manifest = root / "m.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest, root


def _evaluate(model: Path | str, cohort: tuple[Path, Path], out_dir: Path) -> object:
    manifest, root = cohort
    return run_main(
        "evaluate", "--manifest", manifest, "--data-root", root, "--model", model,
        "--out", out_dir / "eval.json", "--quiet",
    )  # fmt: skip


def _set_card_sha(model_dir: Path) -> None:
    """Make the card vouch for whatever weights file is there now (an attacker controls both)."""
    card = json.loads((model_dir / CARD_FILENAME).read_text())
    card["weights_sha256"] = sha256_bytes((model_dir / WEIGHTS_FILENAME).read_bytes())
    (model_dir / CARD_FILENAME).write_text(json.dumps(card))


def _edit_card(model_dir: Path, **changes: object) -> None:
    """Hand-edit the model card: set ``changes`` and write it back."""
    card = json.loads((model_dir / CARD_FILENAME).read_text())
    card.update(changes)
    (model_dir / CARD_FILENAME).write_text(json.dumps(card))


def _expect_refused(model: Path | str, cohort: tuple[Path, Path], tmp_path: Path, *mention: str) -> str:
    out_dir = tmp_path / "eval_out"
    line = assert_clean_failure(_evaluate(model, cohort, out_dir), *mention)
    assert leftovers(out_dir) == []
    return line


def test_good_model_control(good_model: Path, cohort: tuple[Path, Path], tmp_path: Path) -> None:
    """The fixture model itself loads and evaluates: the failures below are caused by the damage."""
    r = _evaluate(good_model, cohort, tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "eval.json").is_file()


def test_truncated_weights(good_model: Path, cohort: tuple[Path, Path], tmp_path: Path) -> None:
    w = good_model / WEIGHTS_FILENAME
    w.write_bytes(w.read_bytes()[:1000])
    _expect_refused(good_model, cohort, tmp_path, w, "does not match", "truncated")


def test_truncated_weights_with_matching_card(
    good_model: Path, cohort: tuple[Path, Path], tmp_path: Path
) -> None:
    w = good_model / WEIGHTS_FILENAME
    w.write_bytes(w.read_bytes()[:1000])
    _set_card_sha(good_model)
    _expect_refused(good_model, cohort, tmp_path, w, "not a valid safetensors")


def test_one_flipped_byte_is_tampering(good_model: Path, cohort: tuple[Path, Path], tmp_path: Path) -> None:
    w = good_model / WEIGHTS_FILENAME
    data = bytearray(w.read_bytes())
    data[-5] ^= 0x01  # a tensor byte: still a valid safetensors file, only the hash tells
    w.write_bytes(bytes(data))
    _expect_refused(good_model, cohort, tmp_path, w, "sha256", "modified")


def test_weights_from_another_architecture(
    good_model: Path, cohort: tuple[Path, Path], tmp_path: Path
) -> None:
    other = build_model("resnet18", num_classes=2)
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(good_model / WEIGHTS_FILENAME))
    _set_card_sha(good_model)
    _expect_refused(good_model, cohort, tmp_path, "do not fit architecture", "compact_cnn")


def test_card_does_not_match_weights_shape(
    good_model: Path, cohort: tuple[Path, Path], tmp_path: Path
) -> None:
    _edit_card(good_model, arch_kwargs={"widths": [4, 8, 8, 8, 16]})
    _expect_refused(good_model, cohort, tmp_path, "has shape", "expects")


def test_card_with_three_classes_for_two_class_weights(
    good_model: Path, cohort: tuple[Path, Path], tmp_path: Path
) -> None:
    _edit_card(good_model, classes=["a", "b", "c"])
    _expect_refused(good_model, cohort, tmp_path, "shape")


def test_nan_weights(tmp_path: Path, cohort: tuple[Path, Path]) -> None:
    model = build_model("compact_cnn", widths=WIDTHS)
    with torch.no_grad():
        next(model.parameters())[0, 0, 0, 0] = float("nan")
    d = save_model(model, _card(), tmp_path / "nan")
    _expect_refused(d, cohort, tmp_path, "NaN")


def test_inf_in_batchnorm_buffer(tmp_path: Path, cohort: tuple[Path, Path]) -> None:
    model = build_model("compact_cnn", widths=WIDTHS)
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    bn.running_var[0] = float("inf")
    d = save_model(model, _card(), tmp_path / "inf")
    _expect_refused(d, cohort, tmp_path, "infinite")


@pytest.mark.parametrize(
    ("text", "mention"),
    [
        ("{not json", "not valid json"),
        ("[1, 2, 3]", "json object"),
        ('{"arch": "compact_cnn"}', "lacks required keys"),
        ('{"arch": "compact_cnn", "evil": 1}', "unknown keys"),
    ],
)
def test_broken_card(
    good_model: Path, cohort: tuple[Path, Path], tmp_path: Path, text: str, mention: str
) -> None:
    (good_model / CARD_FILENAME).write_text(text)
    _expect_refused(good_model, cohort, tmp_path, good_model / CARD_FILENAME, mention)


def test_card_with_absurd_values(good_model: Path, cohort: tuple[Path, Path], tmp_path: Path) -> None:
    _edit_card(good_model, mpp=-3, std=[0, 1, 1], tumour_index=7)
    line = _expect_refused(good_model, cohort, tmp_path, "invalid model card")
    assert "mpp" in line and "std" in line and "tumour_index" in line


@pytest.mark.parametrize(
    ("over", "mention"),
    [
        ({"input_size": 100000}, "'input_size' must be an integer in [8, 4096]"),
        ({"std": [1e-30, 0.2, 0.2]}, "'std' must lie in"),
        ({"mean": [123.7, 116.3, 103.5]}, "'mean' must lie in"),
        ({"classes": ["tumour", "tumour"], "tumour_index": 1}, "'classes' must be distinct"),
    ],
)
def test_hand_edited_card_with_accepted_looking_but_absurd_values(
    good_model: Path, cohort: tuple[Path, Path], tmp_path: Path, over: dict, mention: str
) -> None:
    """Issue 21: such cards crashed evaluate/prune with torch errors or ran with absurd inputs."""
    _edit_card(good_model, **over)
    line = _expect_refused(good_model, cohort, tmp_path, "invalid model card", mention)
    assert line.count("fix or regenerate the card") == 1  # the hint once, not twice


def test_card_input_size_the_network_cannot_run_on(
    good_model: Path, cohort: tuple[Path, Path], tmp_path: Path
) -> None:
    """input_size 8 passes the card check, but five 2x poolings cannot run on it: one line at load."""
    _edit_card(good_model, input_size=8)
    _expect_refused(good_model, cohort, tmp_path, "cannot run on the card's 8 x 8 px input", "input_size")


def test_card_mpp_that_leaves_images_smaller_than_a_tile(
    good_model: Path, cohort: tuple[Path, Path], tmp_path: Path
) -> None:
    """mpp 19 (plausible for a slide, absurd here): the 64 px images at 1.24 um/px shrink to 4 px."""
    _edit_card(good_model, mpp=19)
    _expect_refused(good_model, cohort, tmp_path, "smaller than half the model's 32 px input", "mpp")


def test_missing_card_and_missing_model(good_model: Path, cohort: tuple[Path, Path], tmp_path: Path) -> None:
    (good_model / CARD_FILENAME).unlink()
    _expect_refused(good_model, cohort, tmp_path, "model_card.json not found")
    _expect_refused(tmp_path / "no_such_model", cohort, tmp_path, "model not found")


def test_unknown_architecture_in_card(good_model: Path, cohort: tuple[Path, Path], tmp_path: Path) -> None:
    _edit_card(good_model, arch="os.system")
    _expect_refused(good_model, cohort, tmp_path, "unknown architecture")


# ---- pickles with a payload ---------------------------------------------------------------
def test_payload_control_really_runs_when_unpickled(tmp_path: Path) -> None:
    """Control: the payload is live; plain ``pickle.loads`` (never done by pathxai) runs it."""
    marker = tmp_path / "pwned"
    blob = pickle.dumps(Payload(marker))
    subprocess.run([sys.executable, "-c", "import pickle,sys; pickle.loads(sys.stdin.buffer.read())"], input=blob,
                   check=True)  # fmt: skip
    assert marker.exists()


@pytest.mark.parametrize("protocol", [2, 4])
def test_pickle_payload_as_weights(
    good_model: Path, cohort: tuple[Path, Path], tmp_path: Path, protocol: int
) -> None:
    marker = tmp_path / "pwned"
    w = good_model / WEIGHTS_FILENAME
    torch.save({"state_dict": Payload(marker)}, w, pickle_protocol=protocol)
    _set_card_sha(good_model)  # the attacker also rewrites the card's hash
    _expect_refused(good_model, cohort, tmp_path, "pickle", "never unpickles")
    assert not marker.exists()


def test_legacy_pickle_pt_file_passed_directly(
    tmp_path: Path, cohort: tuple[Path, Path], good_model: Path
) -> None:
    """``--model evil.pt`` beside a card: still refused, payload never runs."""
    marker = tmp_path / "pwned"
    evil = good_model / "evil.pt"
    torch.save(Payload(marker), evil, _use_new_zipfile_serialization=False)
    _edit_card(good_model, weights_sha256=sha256_bytes(evil.read_bytes()))
    _expect_refused(evil, cohort, tmp_path, "pickle")
    assert not marker.exists()


def test_pickle_payload_as_pretrained_weights(tmp_path: Path, cohort: tuple[Path, Path]) -> None:
    """``pathxai train --pretrained evil.pth`` reads with weights_only=True: refused, never run."""
    marker = tmp_path / "pwned"
    evil = tmp_path / "imagenet.pth"
    torch.save({"state_dict": Payload(marker)}, evil)
    manifest, root = cohort
    out = tmp_path / "trained"
    r = run_main(
        "train", "--manifest", manifest, "--data-root", root, "--out", out, "--pretrained", evil,
        "--epochs", "1", "--size", "32", "--stride", "32", "--min-tissue", "0", "--quiet",
        "--arch-kwargs", json.dumps({"widths": WIDTHS}), "--folds", "2", "--fold", "0",
    )  # fmt: skip
    assert_clean_failure(r, evil, "cannot read pretrained weights")
    assert not marker.exists()
    assert leftovers(out) == []


def test_python_api_refuses_pickle_too(tmp_path: Path, good_model: Path) -> None:
    from pathxai.errors import ModelError

    marker = tmp_path / "pwned"
    torch.save(Payload(marker), good_model / WEIGHTS_FILENAME)
    _set_card_sha(good_model)
    with pytest.raises(ModelError, match="never unpickles"):
        load_model_with_card(good_model)
    assert not marker.exists()


def test_subprocess_refusal_is_one_line(good_model: Path, cohort: tuple[Path, Path], tmp_path: Path) -> None:
    w = good_model / WEIGHTS_FILENAME
    w.write_bytes(w.read_bytes()[:1000])
    manifest, root = cohort
    r = run_cli("evaluate", "--manifest", manifest, "--data-root", root, "--model", good_model,
                "--out", tmp_path / "e.json", "--quiet")  # fmt: skip
    assert_clean_failure(r, "truncated")
    assert not (tmp_path / "e.json").exists()


# ---- training options that used to escape as ValueError tracebacks ------------------------
def _train(cohort: tuple[Path, Path], out: Path, *extra: str) -> object:
    manifest, root = cohort
    return run_main("train", "--manifest", manifest, "--data-root", root, "--out", out, "--epochs", "1",
                    "--size", "32", "--stride", "32", "--quiet", *extra)  # fmt: skip


@pytest.mark.parametrize(
    ("extra", "mention"),
    [
        (["--arch-kwargs", "{widths: 3"], "--arch-kwargs is not JSON"),
        (["--arch-kwargs", "[1]"], "JSON object"),
        (["--folds", "2"], "--folds and --fold go together"),
        (["--folds", "2", "--fold", "5"], "--fold must be in 0..1"),
        (["--folds", "4", "--fold", "0"], "cannot make 4 patient-grouped folds"),
    ],
)
def test_bad_training_options(
    cohort: tuple[Path, Path], tmp_path: Path, extra: list[str], mention: str
) -> None:
    out = tmp_path / "trained"
    assert_clean_failure(_train(cohort, out, *extra), mention)
    assert leftovers(out) == []
