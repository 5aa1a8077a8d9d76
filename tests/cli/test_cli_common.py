"""CLI plumbing: shared argument types, --slide-mpp everywhere, and no torch for --help / info."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from pathxai.cli import build_parser
from pathxai.cli._common import command_line, non_negative_float, pick, positive_int
from pathxai.manifest import read_manifest
from pathxai.slide.testing import write_synthetic_slide

HEAVY = ("torch", "torchvision", "zennit", "torch_pruning", "h5py", "matplotlib", "streamlit")


def _loaded(code: str) -> list[str]:
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()


def test_help_imports_no_heavy_module() -> None:
    code = (
        "import sys\nfrom pathxai.cli import build_parser\nbuild_parser().format_help()\n"
        f"print(*[m for m in {HEAVY!r} if m in sys.modules])"
    )
    assert _loaded(code) == []


def test_info_imports_no_torch(tmp_path: Path) -> None:
    slide = write_synthetic_slide(tmp_path / "s.tiff", 1024, 768, levels=2, blobs=[(500, 400, 200, 150)])
    code = (
        "import sys\nfrom pathxai.cli import main\n"
        f"assert main(['info', {str(slide)!r}, '--json']) == 0\n"
        "print(*[m for m in ('torch', 'torchvision', 'zennit') if m in sys.modules])"
    )
    out = _loaded(code)
    assert out[-1] == "}"  # only the JSON was printed: no torch module was loaded


@pytest.mark.parametrize(
    "argv",
    [
        ["info", "s.svs"],
        ["tiles", "s.svs", "--mpp", "1", "--out", "c.h5"],
        ["heatmap", "s.svs", "--out", "o"],
        ["audit", "--manifest", "m.csv", "--out", "o"],
        ["demo", "--out", "o"],
        ["train", "--manifest", "m.csv", "--out", "o"],
        ["evaluate", "--manifest", "m.csv", "--out", "o.json"],
    ],
)
def test_slide_mpp_on_every_command_with_a_level0_resolution(argv: list[str]) -> None:
    args = build_parser().parse_args([*argv, "--slide-mpp", "0.5"])
    assert args.slide_mpp == 0.5


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_native_mpp_stays_an_alias(command: str) -> None:
    argv = [command, "--manifest", "m.csv", "--out", "o", "--native-mpp", "0.62"]
    assert build_parser().parse_args(argv).slide_mpp == 0.62


def test_slide_mpp_rejects_implausible_values_on_audit(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["audit", "--manifest", "m.csv", "--out", "o", "--slide-mpp", "5000"])
    assert "not a plausible resolution" in capsys.readouterr().err


def test_argument_types_keep_their_messages() -> None:
    assert positive_int("3") == 3
    with pytest.raises(argparse.ArgumentTypeError, match="expected an integer, got 'x'"):
        positive_int("x")
    with pytest.raises(argparse.ArgumentTypeError, match="expected a positive integer, got 0"):
        positive_int("0")
    assert non_negative_float("0") == 0.0
    with pytest.raises(argparse.ArgumentTypeError, match=">= 0, got -1"):
        non_negative_float("-1")


def test_pick_and_command_line() -> None:
    args = argparse.Namespace(a=1, b_c="x y", flag=True, off=False, none=None, func=print, command="train")
    assert pick(args, "a", renamed="b_c") == {"a": 1, "renamed": "x y"}
    assert command_line("train", args, argv=["--debug", "train", "--a", "1"]) == "pathxai train --a 1"
    assert command_line("train", args, argv=[]) == "pathxai train --a 1 --b-c 'x y' --flag"


def test_manifest_default_mpp_fills_only_rows_without_one(tmp_path: Path) -> None:
    csv = tmp_path / "m.csv"
    csv.write_text("path,tumor,mpp\na.png,1,0.62\nb.png,0,\n")
    man = read_manifest(csv)
    assert man.with_default_mpp(None) is man
    filled = man.with_default_mpp(0.5)
    assert [r.mpp for r in filled.records] == [0.62, 0.5]
    assert filled.sha256 == man.sha256 and [r.mpp for r in man.records] == [0.62, None]
