from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pathxai.cli import main
from pathxai.errors import ManifestError
from pathxai.manifest import read_manifest, resolve, resolve_mask, validate

REPO = Path(__file__).resolve().parents[2]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@pytest.fixture()
def root(tmp_path: Path) -> Path:
    d = tmp_path / "data"
    (d / "img").mkdir(parents=True)
    for name in ("a", "b", "c"):
        (d / "img" / f"{name}.png").write_bytes(name.encode() * 10)
    return d


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_good_manifest_reads_and_validates(root: Path, tmp_path: Path) -> None:
    m = _write(
        tmp_path / "m.csv",
        "id,path,sha256,label,patient,split,stain\n"
        f"a,img/a.png,{_sha(b'a' * 10)},malignant,p1,train,x\n"
        f"b,img/b.png,{_sha(b'b' * 10)},benign,p2,test,y\n",
    )
    man = read_manifest(m)
    assert [r.tumour for r in man] == [1, 0]
    assert man.records[0].extra == {"stain": "x"}
    assert man.records[1].line == 3 and man.records[1].group == "p2"
    assert validate(m, root) == []
    assert resolve(man.records[0], root) == (root / "img" / "a.png").resolve()


def test_minimal_manifest_path_and_tumor(root: Path, tmp_path: Path) -> None:
    m = _write(tmp_path / "m.csv", "path,tumor\nimg/a.png,1\nimg/b.png,0\n")
    man = read_manifest(m)
    assert [r.id for r in man] == ["img/a.png", "img/b.png"]
    assert validate(m, root) == []


def test_each_planted_problem_is_found_with_line_and_column(root: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path, root / "img" / "escape")
    (tmp_path / "secret.png").write_bytes(b"s")
    m = _write(
        tmp_path / "m.csv",
        "id,path,sha256,label,tumor\n"
        f"a,img/a.png,{_sha(b'a' * 10)},x,1\n"  # 2 ok
        f"a,img/b.png,{_sha(b'b' * 10)},x,0\n"  # 3 duplicate id
        f"c,img/c.png,{'0' * 64},x,1\n"  # 4 checksum mismatch
        "d,img/missing.png,,x,0\n"  # 5 missing file
        "e,../outside.png,,x,0\n"  # 6 escapes with ..
        "f,/etc/passwd,,x,0\n"  # 7 absolute
        "g,img/escape/secret.png,,x,0\n"  # 8 symlink out of the root
        "h,img/a.png,,x,2\n"  # 9 bad tumor value
        "i,img/a.png,nothex,x,1\n"  # 10 bad sha256
        "j,img/a.png,x\n",  # 11 wrong field count
    )
    problems = validate(m, root)
    found = {(p.line, p.column) for p in problems}
    expected = {
        (3, "id"),
        (4, "sha256"),
        (5, "path"),
        (6, "path"),
        (7, "path"),
        (8, "path"),
        (9, "tumor"),
        (10, "sha256"),
    }
    assert expected <= found, problems
    assert any(p.line == 11 for p in problems)
    assert not any(p.line == 2 for p in problems)
    msgs = " ".join(p.message for p in problems)
    assert "duplicate id" in msgs and "checksum mismatch" in msgs and "outside the data root" in msgs
    with pytest.raises(ManifestError, match="problem"):
        read_manifest(m)


def test_mask_path_is_a_known_optional_column(root: Path, tmp_path: Path) -> None:
    m = _write(
        tmp_path / "m.csv",
        "path,label,mask_path,stain\nimg/a.png,malignant,img/b.png,x\nimg/c.png,benign,,y\n",
    )
    man = read_manifest(m)
    assert [r.mask_path for r in man] == ["img/b.png", None]
    assert man.records[0].extra == {"stain": "x"}  # a schema column, not an extra one
    assert resolve_mask(man.records[0], root) == (root / "img" / "b.png").resolve()
    with pytest.raises(ManifestError, match="no mask_path"):
        resolve_mask(man.records[1], root)
    bad = read_manifest(_write(tmp_path / "bad.csv", "path,label,mask_path\nimg/a.png,benign,../x.png\n"))
    with pytest.raises(ManifestError, match="escape"):
        resolve_mask(bad.records[0], root)


def test_missing_columns_and_unmapped_labels(tmp_path: Path) -> None:
    m = _write(tmp_path / "m.csv", "id,label\na,benign\n")
    problems = validate(m, tmp_path)
    assert any(p.column == "path" and p.line == 1 for p in problems)
    m2 = _write(tmp_path / "m2.csv", "path\nx.png\n")
    assert any(p.column == "label" for p in validate(m2, tmp_path))
    m3 = _write(tmp_path / "m3.csv", "path,label\nx.png,02_STROMA\n")
    assert any("does not map" in p.message for p in validate(m3, tmp_path))


@pytest.mark.parametrize("content", [b"", b"\xff\xfe\x00bad", b"a,b\n\x00\n"])
def test_unreadable_manifests(tmp_path: Path, content: bytes) -> None:
    p = tmp_path / "m.csv"
    p.write_bytes(content)
    with pytest.raises(ManifestError):
        read_manifest(p)
    assert validate(p, tmp_path)
    with pytest.raises(ManifestError, match="not found"):
        read_manifest(tmp_path / "nope.csv")


def test_cli_validate_exit_codes(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = _write(tmp_path / "g.csv", f"path,sha256,tumor\nimg/a.png,{_sha(b'a' * 10)},1\n")
    assert main(["manifest", "validate", str(good), "--data-root", str(root)]) == 0
    bad = _write(tmp_path / "b.csv", "path,tumor\nimg/a.png,1\nimg/a.png,0\n../x.png,1\n")
    assert main(["manifest", "validate", str(bad), "--data-root", str(root)]) != 0
    err = capsys.readouterr().err
    assert "b.csv:3: [path] duplicate id" in err and "b.csv:4:" in err


def test_committed_manifests_validate(glas_dir: Path, kather_dir: Path) -> None:
    assert validate(REPO / "data_manifests" / "glas.csv", glas_dir) == []
    assert validate(REPO / "data_manifests" / "kather2016_samples.csv", kather_dir) == []


@pytest.mark.parametrize("column", ["mpp", "mpp_estimate", "microns_per_pixel", "um_per_px"])
def test_image_mpp_read_under_each_spelling(root: Path, tmp_path: Path, column: str) -> None:
    m = _write(tmp_path / "m.csv", f"path,tumor,{column}\nimg/a.png,1,0.95\nimg/b.png,0,0.5\n")
    man = read_manifest(m)
    assert [r.mpp for r in man] == [0.95, 0.5]
    assert column not in man.records[0].extra
    bad = _write(tmp_path / "bad.csv", f"path,tumor,{column}\nimg/a.png,1,1000\n")
    assert [p.column for p in validate(bad, root)] == [column]


def test_measured_mpp_wins_over_an_estimate(tmp_path: Path) -> None:
    m = _write(tmp_path / "m.csv", "path,tumor,mpp_estimate,mpp\nimg/a.png,1,0.95,0.62\n")
    rec = read_manifest(m).records[0]
    assert rec.mpp == 0.62 and rec.extra == {"mpp_estimate": "0.95"}


@pytest.mark.real_data
def test_ebhi_manifest_validates_and_is_case_grouped(ebhi_dir: Path) -> None:
    path = REPO / "data_manifests" / "ebhi_seg.csv"
    assert validate(path, ebhi_dir) == []
    man = read_manifest(path)
    assert len(man) == 438 and sum(r.tumour == 1 for r in man) == 401
    assert {r.mpp for r in man} == {0.95} and {r.site for r in man} == {"China Medical University Shenyang"}
    splits: dict[str, set[str]] = {}
    for r in man:
        assert r.split is not None and r.patient is not None and r.id.endswith(Path(r.path or "").stem)
        splits.setdefault(r.split, set()).add(r.patient)
    assert set(splits) == {"train", "test"} and not splits["train"] & splits["test"]
    assert {r.patient for r in man if r.split == "test" and r.tumour == 0}  # normal cases held out too


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    st.binary(max_size=300)
    | st.text(alphabet='ab,"\n\r01./id path label tumor', max_size=200).map(str.encode)
)
def test_fuzz_parser_raises_only_manifest_errors(tmp_path: Path, data: bytes) -> None:
    p = tmp_path / "fuzz.csv"
    p.write_bytes(data)
    try:
        read_manifest(p)
    except ManifestError:
        pass
    assert isinstance(validate(p, tmp_path), list)
