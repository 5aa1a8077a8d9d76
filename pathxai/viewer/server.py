"""A small tile HTTP server (a daemon thread) for the viewer's OpenSeadragon component.

Routes (GET/HEAD only; every file argument is a root index plus a relative path; ``T`` is a random
token made per server, known only to the viewer page, so other web pages open in the same browser
cannot read tiles even though the server answers cross-origin requests):

- ``/health``
- ``/T/slide/info?root=I&path=P``: deep-zoom geometry (JSON)
- ``/T/slide/tile/Z/C_R.jpeg?root=I&path=P``: a slide tile
- ``/T/overlay/tile/Z/C_R.png?store=S&layer=relevance|probability``: an overlay tile

It binds ``127.0.0.1`` unless told otherwise, answers 403 for a missing or wrong token and for any
path outside the roots (``..``, absolute paths, symlinks escaping, percent-encoded traversal), 404
for unknown routes or missing files, and never serves anything but rendered tiles and geometry.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
import urllib.parse
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from pathxai.errors import ConfinementError, PathXAIError
from pathxai.jsonio import dumps_json
from pathxai.viewer.tiles import TileService

_SLIDE_TILE = re.compile(r"^/slide/tile/(\d{1,2})/(\d{1,6})_(\d{1,6})\.jpeg$")
_OVERLAY_TILE = re.compile(r"^/overlay/tile/(\d{1,2})/(\d{1,6})_(\d{1,6})\.png$")
MAX_URL = 4096


def _one(query: dict[str, list[str]], key: str) -> str:
    vals = query.get(key, [])
    if len(vals) != 1:
        raise ValueError(f"expected exactly one '{key}' parameter")
    return vals[0]


def route(service: TileService, raw_path: str, token: str) -> tuple[int, str, bytes]:
    """Answer one request path (with query): ``(status, content type, body)``.

    Kept free of HTTP machinery so it can be tested directly.
    """
    if len(raw_path) > MAX_URL:
        return HTTPStatus.REQUEST_URI_TOO_LONG, "text/plain", b"URL too long"
    parts = urllib.parse.urlsplit(raw_path)
    path = parts.path
    if path == "/health":
        return HTTPStatus.OK, "text/plain", b"ok"
    head, _, rest = path.lstrip("/").partition("/")
    if not token or not hmac.compare_digest(head.encode(), token.encode()):
        return HTTPStatus.FORBIDDEN, "text/plain", b"forbidden: missing or wrong access token"
    path = "/" + rest
    try:
        query = urllib.parse.parse_qs(parts.query, keep_blank_values=True, strict_parsing=False)
        if path == "/slide/info":
            info = service.slide_info(int(_one(query, "root")), _one(query, "path"))
            return HTTPStatus.OK, "application/json", dumps_json(info, indent=None, newline=False).encode()
        if m := _SLIDE_TILE.match(path):
            z, c, r = (int(g) for g in m.groups())
            body = service.slide_tile(int(_one(query, "root")), _one(query, "path"), z, c, r)
            return HTTPStatus.OK, "image/jpeg", body
        if m := _OVERLAY_TILE.match(path):
            z, c, r = (int(g) for g in m.groups())
            body = service.overlay_tile(_one(query, "store"), _one(query, "layer"), z, c, r)
            return HTTPStatus.OK, "image/png", body
    except ConfinementError as exc:
        return HTTPStatus.FORBIDDEN, "text/plain", f"forbidden: {exc}".encode()
    except ValueError as exc:
        return HTTPStatus.BAD_REQUEST, "text/plain", f"bad request: {exc}".encode()
    except PathXAIError as exc:
        return HTTPStatus.NOT_FOUND, "text/plain", f"not available: {exc}".encode()
    return HTTPStatus.NOT_FOUND, "text/plain", b"not found"


class _Handler(BaseHTTPRequestHandler):
    server_version = "pathxai-tiles"
    service: TileService  # set on the subclass made by TileServer
    token: str

    def _send(self, head_only: bool) -> None:
        status, ctype, body = route(self.service, self.path, self.token)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        # Tiles are drawn into a canvas by OpenSeadragon in the Streamlit component's frame.
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("Cache-Control", "max-age=600" if status == HTTPStatus.OK else "no-store")
        self.end_headers()
        if not head_only:
            self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(head_only=False)

    def do_HEAD(self) -> None:
        self._send(head_only=True)

    def log_message(self, format: str, *args: Any) -> None:
        """Keep the console quiet (Streamlit owns it)."""


class _HTTPServer(ThreadingHTTPServer):
    """One thread per connection, with a listen backlog sized for many browsers at once."""

    daemon_threads = True
    #: socketserver's default backlog of 5 overflowed with 20 viewers (each browser opens several
    #: connections for tiles): the kernel dropped the extra connection attempts and clients retried
    #: only after 1 s, 3 s, ... (issue 21, benchmarks/viewer_load.py).
    request_queue_size = 128


class TileServer:
    """The tile server in a daemon thread.

    Parameters
    ----------
    service
        What to serve.
    host
        Bind address (``127.0.0.1`` by default; ``0.0.0.0`` only inside a container).
    port
        Port (0: a free one).
    token
        Access token (default: 128 random bits).
    """

    def __init__(
        self, service: TileService, host: str = "127.0.0.1", port: int = 0, token: str | None = None
    ) -> None:
        self.token = token or secrets.token_urlsafe(16)
        handler = type("PathxaiTileHandler", (_Handler,), {"service": service, "token": self.token})
        self.service = service
        self.httpd = _HTTPServer((host, port), handler)
        self.host = host
        self.port = int(self.httpd.server_address[1])
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="pathxai-tiles", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """Base URL (token included) as seen from this machine."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/{self.token}"

    def close(self) -> None:
        """Stop serving and close every open file."""
        self.httpd.shutdown()
        self.httpd.server_close()
        self.service.close()
