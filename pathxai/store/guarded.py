"""HDF5 files written through a guard that survives a full disk.

When the HDF5 library itself meets ``ENOSPC`` (or ``EDQUOT``/``EIO``) its file stays half-flushed: closing
it fails again, the id outlives the file, and the interpreter crashes at exit (a segmentation fault
in h5py's deallocation, exit 139). Here HDF5 writes through a Python file object
(h5py's ``fileobj`` driver) that records the first failed write and then accepts and drops every
later one, so the library never sees an error and always closes cleanly; the caller then asks
:meth:`GuardedFile.raise_if_failed` and gets one :class:`~pathxai.errors.OutOfSpaceError`.
The bytes after a failure are lost, so such a file is never kept under a name that claims it
complete (the callers write to temporary or ``.partial`` names and check before renaming).
"""

from __future__ import annotations

import errno
import io
import os
from pathlib import Path
from typing import Any

import h5py

from pathxai.atomic import SPACE_HINT, space_message, write_failure_errno
from pathxai.errors import OutOfSpaceError

__all__ = ["GuardedFile", "open_guarded", "reserve"]


class GuardedFile(io.RawIOBase):
    """A binary file whose first failed write is recorded, after which writes are dropped.

    Parameters
    ----------
    path
        The file.
    mode
        ``"w"`` (create or truncate) or ``"r+"`` (read and write an existing file).
    """

    def __init__(self, path: str | Path, mode: str) -> None:
        super().__init__()
        self.path = Path(path)
        self._raw = io.FileIO(self.path, {"w": "w+", "r+": "r+"}[mode])
        self.error: OSError | None = None

    # ---- io.RawIOBase --------------------------------------------------------------------
    def readable(self) -> bool:
        """Always true."""
        return True

    def writable(self) -> bool:
        """Always true."""
        return True

    def seekable(self) -> bool:
        """Always true."""
        return True

    def readinto(self, buffer: Any) -> int:
        """Read into ``buffer`` from the file."""
        return self._raw.readinto(buffer) or 0

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        """Move in the file."""
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        """Position in the file."""
        return self._raw.tell()

    def write(self, data: Any) -> int:
        """Write all of ``data``; after a failed write, drop it (and report its full length)."""
        view = memoryview(data).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):  # a short write near a full disk: write the rest
                    done += self._raw.write(view[done:]) or 0
            except OSError as exc:
                self._fail(exc)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        """Resize the file (dropped after a failed write)."""
        if self.error is None:
            try:
                return self._raw.truncate(size)
            except OSError as exc:
                self._fail(exc)
        return self._raw.tell() if size is None else size

    def flush(self) -> None:
        """Nothing to flush (unbuffered); kept for the interface."""
        if self.error is None and not self._raw.closed:
            try:
                self._raw.flush()
            except OSError as exc:
                self._fail(exc)

    def close(self) -> None:
        """Close the file; a failure to close is recorded like a failed write."""
        if not self._raw.closed:
            try:
                self._raw.close()
            except OSError as exc:  # e.g. a network file system reporting ENOSPC at close
                self._fail(exc)
        super().close()

    # ---- the guard -----------------------------------------------------------------------
    def _fail(self, exc: OSError) -> None:
        if self.error is None:
            self.error = exc

    def raise_if_failed(self, needed: int | None = None, path: str | Path | None = None) -> None:
        """Raise :class:`OutOfSpaceError` (or the ``OSError``) if a write failed.

        ``path`` names the file in the message (default: this file; a temporary file's target is
        what the user knows), ``needed`` the bytes it needed, when known.
        """
        exc = self.error
        if exc is None:
            return
        code = write_failure_errno(exc)
        if code is None:
            raise exc
        where = self.path if path is None else Path(path)
        line = space_message(exc, where, needed).split(": ", 1)[1]
        raise OutOfSpaceError(line, path=where, hint=SPACE_HINT, errno=code) from exc


def open_guarded(path: str | Path, mode: str, **kwargs: Any) -> tuple[h5py.File, GuardedFile]:
    """Open an HDF5 file for writing through a :class:`GuardedFile`.

    Parameters
    ----------
    path
        The file.
    mode
        ``"w"`` or ``"r+"``.
    **kwargs
        Passed to :class:`h5py.File`.

    Returns
    -------
    tuple[h5py.File, GuardedFile]
        Close the ``h5py.File`` first, then the guard, then call
        :meth:`GuardedFile.raise_if_failed`.
    """
    guard = GuardedFile(path, mode)
    try:
        h5 = h5py.File(guard, mode, **kwargs)
    except BaseException:
        guard.close()
        raise
    return h5, guard


def reserve(path: str | Path, name: str | Path | None = None) -> None:
    """Allocate every byte of ``path`` on disk now, so later writes inside it cannot run out of space.

    HDF5 allocates a dataset's storage by extending the file, which leaves a sparse file on most file
    systems: the space is only taken when the bytes are written. Copy-on-write file systems (btrfs,
    ZFS) do not keep the promise; the guard still catches a failed write there.

    ``name`` is the path the message gives (default ``path``).

    Raises
    ------
    OutOfSpaceError
        If the file system cannot hold the file.
    """
    path = Path(path)
    size = path.stat().st_size
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        code = write_failure_errno(exc)
        if code is None:
            if exc.errno in (errno.EOPNOTSUPP, errno.EINVAL):  # the file system cannot preallocate
                return
            raise
        where = path if name is None else Path(name)
        line = space_message(exc, where, size).split(": ", 1)[1]
        raise OutOfSpaceError(line, path=where, hint=SPACE_HINT, errno=code) from exc
    finally:
        os.close(fd)
