"""The pathxai error tree.

Every domain failure raises a subclass of :class:`PathXAIError` whose message says what was
wrong, which file, and what to do. ``ValueError`` is kept for bad function arguments.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar


class PathXAIError(Exception):
    """Base class of every pathxai domain error."""

    def __init__(self, message: str, path: str | Path | None = None, hint: str | None = None) -> None:
        self.message = message
        self.path = None if path is None else str(path)
        self.hint = hint
        parts = [message]
        if self.path is not None and self.path not in message:
            parts.insert(0, f"{self.path}:")
        if hint:
            parts.append(f"({hint})")
        super().__init__(" ".join(parts))


T = TypeVar("T")
E = TypeVar("E", bound="PathXAIError")


class SlideError(PathXAIError):
    """A slide cannot be opened or read (not a slide, truncated, unsupported, bad metadata)."""


class ResolutionError(SlideError):
    """The slide's resolution (mpp) is missing or implausible and no override was given."""


class TissueError(SlideError):
    """No tissue could be found where tissue is required."""


class ModelError(PathXAIError):
    """A model file or model card is missing, corrupt, tampered with or inconsistent."""


class StoreError(PathXAIError):
    """A heatmap/coordinate store is unreadable, incompatible or from other settings."""


class StoreMismatchError(StoreError):
    """A readable store belongs to another slide or was made with other settings than this run's."""


class OutOfSpaceError(PathXAIError):
    """A write failed for lack of space (ENOSPC), a quota (EDQUOT) or an I/O error (EIO).

    A batch stops at the first one (the next slide would fail too); finished work is kept and the
    same command resumes once space is freed. ``errno`` is the system error number.
    """

    #: Its message already says what failed and what to do (:mod:`pathxai.atomic` passes it on).
    space_reported = True

    def __init__(
        self, message: str, path: str | Path | None = None, hint: str | None = None, errno: int | None = None
    ) -> None:
        super().__init__(message, path=path, hint=hint)
        self.errno = errno


class ManifestError(PathXAIError):
    """A data manifest has a bad schema, missing files, duplicates or checksum mismatches."""


class DataFetchError(PathXAIError):
    """A public dataset file could not be obtained from any of its sources."""


class ExplainError(PathXAIError):
    """An attribution method cannot be applied to this model or input."""


class PruneError(PathXAIError):
    """A pruning plan is invalid or does not fit the model."""


class AuditError(PathXAIError):
    """An audit cannot run on the given cohort or inputs."""


class OutputLockedError(PathXAIError):
    """Another pathxai run holds the lock on this output directory."""


class ConfinementError(PathXAIError):
    """A requested path is not a file under the viewer's configured roots."""


class DaskUnavailableError(PathXAIError):
    """Dask (``distributed``) is not installed."""


class WorkerLostError(PathXAIError):
    """Every worker process that ran a task died while computing it (bounded retries used up)."""


def read_and_parse(path: str | Path, parse: Callable[[bytes], T], error: type[E], what: str) -> T:
    """Read ``path`` and ``parse`` its bytes; failures become ``error`` naming the file.

    Parameters
    ----------
    path
        The file.
    parse
        Turns the bytes into the object; raises ``error`` when they are not valid.
    error
        The domain error raised (e.g. :class:`ModelError`), with ``path`` set.
    what
        What the file is, for the message (``"model card"``).

    Raises
    ------
    PathXAIError
        ``error``: the file cannot be read, or ``parse`` refused it (its message and hint kept).
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise error(f"cannot read {what} ({exc.strerror})", path=path) from exc
    try:
        return parse(data)
    except error as exc:
        raise error(exc.message, path=path, hint=exc.hint) from exc
