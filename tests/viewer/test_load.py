"""The viewer under load, short and bounded: `benchmarks/viewer_load.py` against the real tile server.

Twelve browser-like clients for a few seconds (at most 400 requests) on 127.0.0.1: no request fails,
every request without the token or naming a path outside the roots is refused with 403, and the tile
server's memory stays bounded. No timing is asserted (the machine is shared); the full figure with
20 clients and the Streamlit page is in ROBUSTNESS.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "viewer_load.py"


def _load(viewer_run: dict[str, Path], tmp_path: Path, *extra: str) -> tuple[int, dict, str]:
    out = tmp_path / "load.json"
    cmd = [sys.executable, str(SCRIPT), "--viewer-dir", str(viewer_run["out"]), "--work", str(tmp_path)]
    proc = subprocess.run(
        [*cmd, "--json", str(out), *extra], capture_output=True, text=True, timeout=240, check=False
    )
    return proc.returncode, json.loads(out.read_text()), proc.stdout + proc.stderr


def test_tile_server_under_load_has_no_errors_refuses_outsiders_and_stays_bounded(
    viewer_run: dict[str, Path], tmp_path: Path
) -> None:
    rc, res, log = _load(
        viewer_run,
        tmp_path,
        *("--no-page", "--clients", "12", "--seconds", "6", "--max-requests", "400", "--bad-every", "8"),
    )
    assert rc == 0, log
    assert res["errors"] == 0, res["error_examples"]
    assert res["servers_alive_at_end"] == {"tile_server": True}
    lat = res["latency"]
    assert lat["slide_tile"]["n"] > 0 and lat["overlay_tile"]["n"] > 0 and lat["info"]["n"] >= 12, log
    # about one request in eight must be refused; every one of them was, with 403
    assert res["refused_sent"] > 0 and res["refused_403"] == res["refused_sent"], log
    assert res["requests"] <= 400
    rss = res["rss"]["tile_server"]
    assert 0 < rss["start_mb"] and rss["peak_mb"] < rss["start_mb"] + 300, rss


@pytest.mark.slow
def test_page_and_tiles_under_load(viewer_run: dict[str, Path], tmp_path: Path) -> None:
    """The same with the Streamlit page (`pathxai view`): page, its scripts and the tiles, no error."""
    rc, res, log = _load(viewer_run, tmp_path, *("--clients", "8", "--seconds", "5", "--max-requests", "600"))
    assert rc == 0, log
    assert res["errors"] == 0 and res["page"] is True, res["error_examples"]
    assert res["latency"]["page"]["n"] >= 8 and res["latency"]["asset"]["n"] > 0, log
    assert res["refused_403"] == res["refused_sent"] > 0, log
    assert res["servers_alive_at_end"] == {"tile_server": True, "page": True}
    assert res["rss"]["page"]["peak_mb"] < res["rss"]["page"]["start_mb"] + 300


def test_overlay_tiles_do_not_reread_the_store_attributes(
    viewer_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the load: every overlay tile decoded all HDF5 attributes of its store four times while
    holding the store lock, so overlay tiles queued behind each other (~1.2 s under 20 clients, slide
    tiles ~10 ms). They are read once when the store is opened (and again only when it is replaced)."""
    from pathxai.store import HeatmapStore
    from pathxai.viewer.catalog import make_roots
    from pathxai.viewer.tiles import TileService

    reads = {"n": 0}
    plain = HeatmapStore.attrs.fget
    assert plain is not None

    def counted(self: HeatmapStore) -> dict:
        reads["n"] += 1
        return plain(self)

    monkeypatch.setattr(HeatmapStore, "attrs", property(counted))
    svc = TileService(make_roots(viewer_run["out"]))
    try:
        top = svc.overlay_geometry("heatmaps/synth.h5").max_level
        opened = reads["n"]
        assert opened > 0
        for layer in ("relevance", "probability"):
            for z in (top - 2, top - 1, top):
                svc.overlay_tile("heatmaps/synth.h5", layer, z, 0, 0)
        assert reads["n"] == opened
    finally:
        svc.close()


def test_tile_server_queues_many_connections_while_busy(viewer_run: dict[str, Path]) -> None:
    """Found by the load: the default listen backlog (5) dropped connection attempts of 20 viewers
    and their kernels retried only after 1 s, 3 s, ... With the accept loop stopped (a server busy
    with other requests), 40 connections still complete; with a backlog of 5 the 7th timed out."""
    import socket

    from pathxai.viewer.catalog import make_roots
    from pathxai.viewer.server import TileServer
    from pathxai.viewer.tiles import TileService

    server = TileServer(TileService(make_roots(viewer_run["out"])))
    socks: list[socket.socket] = []
    try:
        server.httpd.shutdown()  # stop accepting; the socket keeps listening
        for _ in range(40):
            s = socket.create_connection(("127.0.0.1", server.port), timeout=10)
            socks.append(s)
        assert len(socks) == 40
    finally:
        for s in socks:
            s.close()
        server.close()
