"""Viewer path confinement: cases beyond ``tests/viewer`` (symlink chains, a symlinked root,
over-long and overlong-UTF-8 names, UNC paths, hypothesis-generated traversal strings) and
raw HTTP requests whose paths no client library would normalise.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

paths_mod = pytest.importorskip("pathxai.viewer.paths")
ConfinementError = paths_mod.ConfinementError
resolve_under = paths_mod.resolve_under


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("conf")
    root = base / "root"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "ok.txt").write_text("ok")
    (root / "...").write_text("three dots is a file name")
    secret = base / "secret.txt"
    secret.write_text("TOPSECRET-CONTENT-42")
    os.symlink(secret, base / "hop2")  # outside -> outside
    os.symlink(base / "hop2", root / "hop1")  # inside -> outside link -> secret
    os.symlink(root / "sub", root / "subdir-link")  # a directory link that stays inside
    os.symlink(base, root / "up")  # a directory link that leaves
    os.symlink(root, base / "root-link")  # the configured root itself is a symlink
    return {"base": base, "root": root, "secret": secret}


@pytest.mark.parametrize(
    "bad",
    [
        "hop1",  # symlink chain ending outside
        "up/secret.txt",
        "up/root/../secret.txt",
        "subdir-link/../../secret.txt",
        "\\\\server\\share\\x",  # UNC
        "//etc/passwd",
        "..%5csecret.txt",  # encoded backslash
        "%c0%ae%c0%ae/secret.txt",  # overlong UTF-8 dots
        "%2E%2E/secret.txt",
        "sub/%2e%2e/%2e%2e/secret.txt",
        "a/" * 300 + "x",  # deeper than PATH_MAX allows
        "x" * 5000,  # name too long
        "sub/ok.txt\x00.png",
        "D:secret.txt",
    ],
)
def test_more_escapes_refused(tree: dict[str, Path], bad: str) -> None:
    with pytest.raises(ConfinementError):
        resolve_under(tree["root"], bad)


def test_legal_odd_names_and_symlinked_root(tree: dict[str, Path]) -> None:
    root = tree["root"].resolve()
    assert resolve_under(tree["root"], "...") == root / "..."
    assert resolve_under(tree["root"], "subdir-link/ok.txt") == root / "sub" / "ok.txt"
    # a root configured through a symlink serves its own files, and still nothing outside
    assert resolve_under(tree["base"] / "root-link", "sub/ok.txt") == root / "sub" / "ok.txt"
    with pytest.raises(ConfinementError):
        resolve_under(tree["base"] / "root-link", "hop1")


SEGMENTS = [
    "..",
    ".",
    "sub",
    "ok.txt",
    "hop1",
    "up",
    "secret.txt",
    "%2e",
    "%2f",
    "%252e",
    "\\",
    "/",
    "~",
    "",
    "...",
]


@settings(max_examples=300, deadline=None)
@given(
    parts=st.lists(st.sampled_from(SEGMENTS), min_size=1, max_size=6), sep=st.sampled_from(["/", "\\", "//"])
)
def test_generated_paths_never_leave_the_root(tree: dict[str, Path], parts: list[str], sep: str) -> None:
    rel = sep.join(parts)
    root = tree["root"].resolve()
    try:
        got = resolve_under(tree["root"], rel)
    except ConfinementError:
        return
    assert got.is_relative_to(root) and got.is_file(), (rel, got)
    assert got.read_text() != "TOPSECRET-CONTENT-42"


def test_raw_http_traversal_is_refused(tree: dict[str, Path]) -> None:
    """Requests sent byte for byte (no client-side normalisation of ``..``) never reach outside files."""
    server_mod = pytest.importorskip("pathxai.viewer.server")
    tiles_mod = pytest.importorskip("pathxai.viewer.tiles")
    roots = paths_mod.Roots.make(tree["root"], [tree["root"]])
    server = server_mod.TileServer(tiles_mod.TileService(roots))
    try:
        host, port = server.host, server.port
        token = server.url.rstrip("/").rsplit("/", 1)[-1]
        targets = [
            f"/{token}/slide/info?root=0&path=../secret.txt",
            f"/{token}/slide/info?root=0&path=hop1",
            f"/{token}/slide/info?root=0&path=up/secret.txt",
            f"/{token}/slide/tile/0/0_0.jpeg?root=0&path=%2e%2e%2fsecret.txt",
            f"/{token}/overlay/tile/0/0_0.png?store=../secret.txt&layer=relevance",
            f"/{token}/../secret.txt",
            "/../secret.txt",
            f"/{token}/slide/info?root=0&path=/etc/passwd",
            f"/{token}/slide/info?root=1&path=..%2f..%2fsecret.txt",
        ]
        for target in targets:
            with socket.create_connection((host, port), timeout=10) as sock:
                sock.sendall(
                    f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode("latin-1")
                )
                data = b""
                while chunk := sock.recv(65536):
                    data += chunk
            status = int(data.split(b" ", 2)[1])
            assert status in (400, 403, 404), (target, data[:200])
            assert b"TOPSECRET-CONTENT-42" not in data, target
    finally:
        server.close()
