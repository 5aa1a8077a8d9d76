"""Atomic file writes: write to a temporary file beside the target, then ``os.replace``.

A reader never sees a half-written file: either the old content or the new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


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
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.stem}.",
        suffix=".part" + (suffix if suffix is not None else target.suffix),
        dir=target.parent,
    )
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
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_bytes_atomic(target: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``target`` atomically and return the target path."""
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def write_text_atomic(target: str | Path, text: str) -> Path:
    """Write UTF-8 ``text`` to ``target`` atomically and return the target path."""
    return write_bytes_atomic(target, text.encode("utf-8"))
