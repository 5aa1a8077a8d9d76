"""Helpers for the bad-input catalogue: run the real CLI in a subprocess and judge its failure."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pathxai.slide.testing import write_synthetic_slide

#: Names of files that a finished run would leave behind (the caller adds its own).
FINISHED_SUFFIXES = (".h5", ".png", ".json", ".tif", ".tiff", ".geojson", ".html", ".csv", ".safetensors")


@dataclass
class CliResult:
    """Exit code and output of one CLI run."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def error_lines(self) -> list[str]:
        """Non-empty stderr lines that are not tqdm progress bars."""
        lines = []
        for raw in self.stderr.replace("\r", "\n").splitlines():
            ln = raw.strip()
            if not ln or ("it/s]" in ln or "s/it]" in ln or "tile/s]" in ln or ln.endswith("?it/s]")):
                continue
            if "%|" in ln:  # a tqdm bar
                continue
            lines.append(ln)
        return lines


def run_cli(
    *args: str | Path,
    debug: bool = False,
    env: dict[str, str] | None = None,
    timeout: int = 180,
    prefix: list[str] | None = None,
) -> CliResult:
    """Run ``python -m pathxai ARGS`` (optionally behind a command ``prefix``) and capture everything."""
    argv = [
        *(prefix or []),
        sys.executable,
        "-m",
        "pathxai",
        *(["--debug"] if debug else []),
        *map(str, args),
    ]
    full_env = {**os.environ, "PYTHONWARNINGS": "ignore", **(env or {})}
    full_env.setdefault("OMP_NUM_THREADS", "1")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=full_env)
    return CliResult(tuple(map(str, args)), proc.returncode, proc.stdout, proc.stderr)


def unprivileged_prefix() -> list[str]:
    """A command prefix under which file permissions apply; skips the test when impossible.

    Root ignores permission bits, and ``/root`` (where the interpreter lives) is closed to other
    uids, so as root we drop the capabilities that override permissions (``setpriv``).
    """
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        prefix = [setpriv, "--bounding-set=-dac_override,-dac_read_search"]
        probe = subprocess.run([*prefix, sys.executable, "-c", "pass"], capture_output=True)
        if probe.returncode == 0:
            return prefix
    pytest.skip("running as root without setpriv: root reads any file, permissions cannot be tested")


def run_main(*args: str | Path) -> CliResult:
    """Run the CLI in this process (fast); an uncaught exception fails the calling test."""
    import contextlib
    import io

    from pathxai.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    return CliResult(tuple(map(str, args)), code, out.getvalue(), err.getvalue())


def assert_clean_failure(
    r: CliResult, *must_mention: str | Path, code: int | None = 2, usage_ok: bool = False
) -> str:
    """The catalogue's contract: non-zero exit, one clear line, no traceback; return that line.

    Parameters
    ----------
    r
        The CLI run.
    must_mention
        Substrings the error line must contain (the file, the reason, the remedy).
    code
        Expected exit code (``None``: any non-zero).
    usage_ok
        An argparse rejection: argparse's usage block may precede the one error line.
    """
    assert r.returncode != 0, f"exit 0 for {r.args}: stdout={r.stdout!r} stderr={r.stderr!r}"
    if code is not None:
        assert r.returncode == code, f"exit {r.returncode} for {r.args}: {r.stderr}"
    assert "Traceback" not in r.stderr, f"traceback for {r.args}:\n{r.stderr}"
    lines = r.error_lines
    if usage_ok:
        lines = [ln for ln in lines if ": error: " in ln]
    assert len(lines) == 1, f"expected one error line for {r.args}, got {lines}"
    line = lines[0]
    assert ": error: " in line, line
    for text in must_mention:
        assert str(text).lower() in line.lower(), f"{text!r} not in {line!r}"
    return line


def assert_traceback_with_debug(*args: str | Path) -> None:
    """With ``--debug`` the same failure shows its traceback."""
    r = run_cli(*args, debug=True)
    assert r.returncode != 0
    assert "Traceback" in r.stderr, r.stderr


def leftovers(directory: Path, allowed: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Files under ``directory`` that look finished or half-written (temp ``.part`` files)."""
    out = []
    if not directory.exists():
        return out
    for p in directory.rglob("*"):
        if p.is_file() and p.name not in allowed and (".part" in p.name or p.suffix in FINISHED_SUFFIXES):
            out.append(str(p.relative_to(directory)))
    return sorted(out)


def save_tiny_model(out: Path, widths: tuple[int, ...] = (4, 8, 8, 8, 8)) -> Path:
    """Save a randomly initialised (seed 0) compact CNN with a card: 64 px tiles at 2 µm/px."""
    from pathxai.model.testing import save_tiny_model as save

    return save(out, widths, std=0.2)


def tiny_audit_cohort(d: Path) -> tuple[Path, Path]:
    """Four 256 x 192 px H&E-like images (two patients per class, two sites) in ``d/m.csv``, and a tiny model.

    Returns ``(d, model directory)``; small enough that an audit of it takes seconds.
    """
    from PIL import Image

    d.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["id,path,label,patient,site,mpp"]
    for i in range(4):
        img = np.full((192, 256, 3), 235, np.uint8)
        img[30:170, 30:230] = rng.integers(0, 60, (140, 200, 3)) + np.array(
            [110 + 20 * (i % 2), 50, 140], np.uint8
        )
        Image.fromarray(img).save(d / f"i{i}.png")
        rows.append(f"i{i},i{i}.png,{'malignant' if i % 2 else 'benign'},p{i // 2},s{i % 2},1.0")
    (d / "m.csv").write_text("\n".join(rows) + "\n")
    return d, save_tiny_model(d / "model")


@pytest.fixture(scope="session")
def small_slide(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A valid 1024x768 generated pyramidal TIFF (zlib tiles of 128 px, 0.5 mpp, one tissue blob)."""
    path = tmp_path_factory.mktemp("slides") / "small.tiff"
    return write_synthetic_slide(path, 1024, 768, mpp=0.5, levels=2, tile=128, compression="zlib")


@pytest.fixture(scope="session")
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
