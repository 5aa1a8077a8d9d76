"""Path confinement: the viewer serves only files under its configured roots.

Every file the viewer opens on behalf of a browser request is named by a root and a path
*relative* to it. :func:`resolve_under` rejects absolute paths (POSIX, Windows drive or UNC),
``..`` components, NUL bytes, percent-encoded traversal that survived one decoding (``%2e%2e``,
``%2f``), and symlinks whose target lies outside the root; what remains is resolved with
``realpath`` and must still lie inside the root's ``realpath``.
"""

from __future__ import annotations

import os
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from pathxai.errors import ConfinementError

_DRIVE = re.compile(r"^[A-Za-z]:")


def _check_relative(rel: str) -> list[str]:
    if not isinstance(rel, str) or not rel:
        raise ConfinementError("empty path")
    if "\x00" in rel:
        raise ConfinementError("path contains a NUL byte")
    # Decode repeatedly: a traversal hidden under one or more layers of percent-encoding is refused.
    variants = [rel]
    for _ in range(3):
        nxt = urllib.parse.unquote(variants[-1])
        if nxt == variants[-1]:
            break
        variants.append(nxt)
    for v in variants:
        if v.startswith(("/", "\\")) or _DRIVE.match(v):
            raise ConfinementError(f"absolute paths are not served: {rel!r}")
        parts = re.split(r"[\\/]+", v)
        if any(p == ".." for p in parts):
            raise ConfinementError(f"'..' is not allowed in served paths: {rel!r}")
    if len(variants) > 1:
        raise ConfinementError(f"percent-encoded paths are not served: {rel!r}")
    return [p for p in re.split(r"[\\/]+", rel) if p not in ("", ".")]


def resolve_under(root: str | Path, rel: str) -> Path:
    """Resolve ``rel`` inside ``root`` or raise.

    Parameters
    ----------
    root
        A configured root directory.
    rel
        A path relative to ``root`` as received from a browser (already URL-decoded once).

    Returns
    -------
    Path
        The real path of an existing file inside ``root``.

    Raises
    ------
    ConfinementError
        For absolute paths, ``..``, encoded traversal, symlinks escaping the root, or a missing file.
    """
    parts = _check_relative(rel)
    if not parts:
        raise ConfinementError(f"not a file: {rel!r}")
    root_real = Path(root).resolve()
    candidate = root_real.joinpath(*parts)
    try:
        real = candidate.resolve(strict=True)
    except (OSError, RuntimeError):
        raise ConfinementError(f"no such file under the viewer's root: {rel!r}") from None
    if not real.is_relative_to(root_real):
        raise ConfinementError(f"path leaves the viewer's root (symlink?): {rel!r}")
    if not real.is_file():
        raise ConfinementError(f"not a file: {rel!r}")
    return real


@dataclass(frozen=True)
class Roots:
    """The viewer's roots: an output directory (stores, reports, models) and slide roots."""

    out: Path
    slides: tuple[Path, ...]

    @classmethod
    def make(cls, out: str | Path, slides: Iterable[str | Path] = ()) -> Roots:
        """Build roots from directories (resolved; duplicates dropped, order kept)."""
        out_r = Path(out).expanduser().resolve()
        seen: list[Path] = []
        for s in (out_r, *(Path(p).expanduser().resolve() for p in slides)):
            if s not in seen:
                seen.append(s)
        return cls(out_r, tuple(seen))

    def out_file(self, rel: str) -> Path:
        """A file under the output directory."""
        return resolve_under(self.out, rel)

    def slide_file(self, root_index: int, rel: str) -> Path:
        """A slide under slide root ``root_index``."""
        if not 0 <= root_index < len(self.slides):
            raise ConfinementError(f"no slide root #{root_index}")
        return resolve_under(self.slides[root_index], rel)

    def locate_slide(self, path: str | Path) -> tuple[int, str] | None:
        """``(root index, relative path)`` of a slide file if it lies under a slide root, else ``None``.

        Symlinks are resolved first, so a link inside a root pointing elsewhere is not accepted.
        """
        try:
            real = Path(path).expanduser().resolve(strict=True)
        except (OSError, RuntimeError):
            return None
        for i, root in enumerate(self.slides):
            if real.is_relative_to(root) and real.is_file():
                return i, real.relative_to(root).as_posix()
        return None


def file_version(path: str | Path) -> str:
    """A short token that changes when a file is replaced or rewritten (inode, mtime, size).

    Stores are replaced by an atomic rename (``heatmap --overwrite``), which gives a new inode: an
    open handle, a cached render or a browser-cached tile keyed by this token never outlives it.
    """
    st = os.stat(path)
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def first_existing(paths: Sequence[Path]) -> Path | None:
    """The first path of ``paths`` that exists, else ``None``."""
    return next((p for p in paths if p.exists()), None)
