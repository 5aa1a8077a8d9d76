"""An exclusive lock on an output directory (``fcntl.flock``), so two runs never interleave.

The lock is held on ``DIR/.pathxai.lock`` for the lifetime of the run; the kernel releases it when
the process exits, however it exits (even SIGKILL), so a stale lock file never blocks a rerun.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from pathxai.errors import OutputLockedError
from pathxai.outputs import output_dir

__all__ = ["LOCK_NAME", "OutputLock"]

LOCK_NAME = ".pathxai.lock"


class OutputLock:
    """Hold an exclusive, non-blocking lock on ``directory`` (created if missing).

    Raises
    ------
    OutputLockedError
        On entering, if another process holds the lock.
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.path = self.directory / LOCK_NAME
        self._fh: IO[str] | None = None

    def acquire(self) -> None:
        """Take the lock or raise :class:`OutputLockedError`."""
        output_dir(self.directory)  # a file of that name: one clear line, not "File exists"
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another process"
            fh.close()
            raise OutputLockedError(
                f"output directory is in use by {holder}",
                path=self.directory,
                hint="wait for that run to finish, or choose another --out",
            ) from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}\n")
        fh.flush()
        self._fh = fh

    def release(self) -> None:
        """Release the lock (the file stays; it is harmless)."""
        if self._fh is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
