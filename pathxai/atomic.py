"""Atomic file writes: write to a temporary file beside the target, then ``os.replace``.

A reader never sees a half-written file: either the old content or the new one. A write that
fails for lack of space (or a quota, or an I/O error) removes its temporary file and raises an
``OSError`` whose message says how much space is free and names the target (:func:`space_message`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "SPACE_HINT",
    "WRITE_FAILURE_ERRNOS",
    "atomic_path",
    "free_bytes",
    "human_bytes",
    "is_write_failure",
    "space_message",
    "write_bytes_atomic",
    "write_failure_errno",
    "write_text_atomic",
]

#: System errors that mean "this file system cannot take the write": no space, quota, I/O error.
WRITE_FAILURE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})

#: What to do after a failed write (every message about one ends with it).
SPACE_HINT = (
    "free some space or choose another output directory, then rerun the same command: finished work is kept"
)


def write_failure_errno(exc: BaseException) -> int | None:
    """The write-failure ``errno`` of ``exc`` or of an exception it was raised from, else ``None``."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        code = getattr(cur, "errno", None)
        if code in WRITE_FAILURE_ERRNOS:
            return int(code)
        cur = cur.__cause__ or cur.__context__
    return None


def is_write_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) is a write failure of the file system."""
    return write_failure_errno(exc) is not None


def free_bytes(path: str | Path) -> int | None:
    """Free bytes on the file system holding ``path`` (or its nearest existing parent); None if unknown."""
    p = Path(path).absolute()
    for candidate in (p, *p.parents):
        if candidate.exists():
            try:
                return int(shutil.disk_usage(candidate).free)
            except OSError:
                return None
    return None


def human_bytes(n: float) -> str:
    """``n`` bytes as a short human-readable size (``1.5 MB``)."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def space_message(exc: BaseException | None, path: str | Path, needed: int | None = None) -> str:
    """One line on a failed write of ``path``: the reason, the free space and (if known) the space needed."""
    code = None if exc is None else write_failure_errno(exc)
    reason = {
        errno.EDQUOT: "disk quota exceeded",
        errno.EIO: "input/output error while writing (the disk or network file system failed)",
    }.get(code or errno.ENOSPC, "no space left on device")
    free = free_bytes(path)
    parts = [f"{path}: {reason}"]
    details = []
    if free is not None:
        details.append(f"{human_bytes(free)} free")
    if needed is not None:
        details.append(f"about {human_bytes(needed)} needed")
    if details:
        parts.append(f"({', '.join(details)})")
    return " ".join(parts)


@contextlib.contextmanager
def atomic_path(target: str | Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    Parameters
    ----------
    target
        The final file path. Its parent directory is created if missing.
    suffix
        Suffix of the temporary file (defaults to the target's, so writers that infer the
        format from the extension keep working; the name also carries ``.part``).

    Yields
    ------
    Path
        Where to write. On an exception the temporary file is removed and ``target`` is untouched.

    Raises
    ------
    OSError
        A write failure (:data:`WRITE_FAILURE_ERRNOS`) is raised again as an ``OSError`` with the
        same ``errno``, ``filename`` ``target`` and a message giving the free space and what to do.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{target.stem}.",
            suffix=".part" + (suffix if suffix is not None else target.suffix),
            dir=target.parent,
        )
    except OSError as exc:
        _raise_write_failure(exc, target)
        raise
    os.close(fd)
    # mkstemp creates 0600; give the final file the permissions a plain open() would.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    except BaseException as exc:
        tmp_path.unlink(missing_ok=True)
        _raise_write_failure(exc, target)
        raise


def _raise_write_failure(exc: BaseException, target: Path) -> None:
    """Raise an ``OSError`` with a one-line message for a write failure (else return).

    An exception that already carries such a message (``space_reported``) passes unchanged.
    """
    code = write_failure_errno(exc)
    if code is not None and not getattr(exc, "space_reported", False):
        line = space_message(exc, target).split(": ", 1)[1]
        new = OSError(code, f"{line} ({SPACE_HINT})", str(target))
        new.space_reported = True  # type: ignore[attr-defined]
        raise new from exc


def write_bytes_atomic(target: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically and return the target path."""
    return write_bytes_atomic(target, text.encode("utf-8"))
