"""`pathxai view`: the streamlit command line it builds and its argument errors (no server started)."""

from __future__ import annotations

import argparse
from pathlib import Path

from pathxai.cli import build_parser, main
from pathxai.cli.view import MAX_UPLOAD_MB, streamlit_command, viewer_env


def _args(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["view", *argv])


def test_binds_localhost_limits_uploads_and_passes_roots(tmp_path: Path) -> None:
    args = _args(str(tmp_path), "--slide-root", str(tmp_path))
    cmd = streamlit_command(args, Path("page.py"))
    assert cmd[cmd.index("--server.address") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--server.port") + 1] == "8501"
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == str(MAX_UPLOAD_MB)
    assert cmd[cmd.index("--server.enableXsrfProtection") + 1] == "true"
    env = viewer_env(args, tmp_path, 9999)
    assert env["PATHXAI_VIEW_DIR"] == str(tmp_path) and env["PATHXAI_TILE_HOST"] == "127.0.0.1"
    assert env["PATHXAI_TILE_PORT"] == "9999" and env["PATHXAI_SLIDE_ROOTS"] == str(tmp_path.resolve())


def test_missing_folder_or_slide_root_is_one_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["view", str(tmp_path / "nope")]) == 2
    assert "no such folder" in capsys.readouterr().err
    assert main(["view", str(tmp_path), "--slide-root", str(tmp_path / "nope")]) == 2
    assert "slide root is not a folder" in capsys.readouterr().err
