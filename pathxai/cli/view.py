"""``pathxai view DIR``: start the Streamlit slide viewer on a demo or batch output folder."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from pathxai.cli._common import command, positive_int
from pathxai.errors import PathXAIError

#: Largest upload Streamlit accepts, in MB (the viewer has no upload widget; this bounds any future one).
MAX_UPLOAD_MB = 50


def free_port(host: str = "127.0.0.1") -> int:
    """A currently free TCP port on ``host``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def streamlit_command(args: argparse.Namespace, script: Path) -> list[str]:
    """The ``streamlit run`` command line for ``args``."""
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(script),
        "--server.address",
        args.host,
        "--server.port",
        str(args.port),
        "--server.headless",
        "true",
        "--server.maxUploadSize",
        str(MAX_UPLOAD_MB),
        "--server.maxMessageSize",
        "200",
        "--server.fileWatcherType",
        "none",
        "--server.enableXsrfProtection",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--global.developmentMode",
        "false",
        "--client.toolbarMode",
        "viewer",
    ]


def viewer_env(args: argparse.Namespace, out: Path, tile_port: int) -> dict[str, str]:
    """Environment for the page (see :mod:`pathxai.viewer.page`)."""
    env = dict(os.environ)
    env["PATHXAI_VIEW_DIR"] = str(out)
    env["PATHXAI_SLIDE_ROOTS"] = os.pathsep.join(str(Path(p).resolve()) for p in args.slide_root)
    env["PATHXAI_TILE_HOST"] = args.host
    env["PATHXAI_TILE_PORT"] = str(tile_port)
    if args.tile_url:
        env["PATHXAI_TILE_URL"] = args.tile_url
    return env


def _run(args: argparse.Namespace) -> int:
    out = Path(args.dir).expanduser().resolve()
    if not out.is_dir():
        raise PathXAIError("no such folder", path=out, hint="run `pathxai demo --out DIR` first")
    for root in args.slide_root:
        if not Path(root).is_dir():
            raise PathXAIError("slide root is not a folder", path=root)
    script = Path(__file__).resolve().parents[1] / "viewer" / "streamlit_main.py"
    tile_port = args.tile_port or free_port(args.host if args.host != "0.0.0.0" else "127.0.0.1")
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print(
            f"warning: binding {args.host}: the viewer and its tile server (port {tile_port}) are reachable "
            "from other machines; they serve only files under the configured roots",
            file=sys.stderr,
        )
    shown = "localhost" if args.host in ("0.0.0.0", "127.0.0.1") else args.host
    print(
        f"pathxai viewer on http://{shown}:{args.port}  (folder {out}; tiles on port {tile_port}; Ctrl+C stops)"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    cmd = streamlit_command(args, script)
    # Replace this process by Streamlit: signals (Ctrl+C, docker stop, a test's terminate) reach the
    # server itself and no orphan is left behind.
    os.execve(cmd[0], cmd, viewer_env(args, out, tile_port))
    return 0  # pragma: no cover - execve does not return


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``view`` command."""
    p = command(
        subparsers,
        _run,
        "view",
        help="open a demo or batch output folder in the Streamlit slide viewer (binds 127.0.0.1)",
    )
    p.add_argument("dir", help="output folder of `pathxai demo` or `pathxai heatmap`")
    p.add_argument("--port", type=positive_int, default=8501, help="viewer port (default 8501)")
    p.add_argument(
        "--host", default="127.0.0.1", help="bind address (default 127.0.0.1; 0.0.0.0 only in a container)"
    )
    p.add_argument(
        "--slide-root",
        action="append",
        default=[],
        metavar="DIR",
        help="folder whose slides may be served (repeatable); the output folder and the roots listed "
        "in its pathxai-view.json are always included",
    )
    p.add_argument(
        "--tile-port", type=positive_int, default=None, help="tile server port (default: a free one)"
    )
    p.add_argument(
        "--tile-url",
        default=None,
        help="tile server URL as the browser sees it (behind a proxy); default http://<page host>:<tile port>",
    )
