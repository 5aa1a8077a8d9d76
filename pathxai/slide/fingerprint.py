"""A cheap content fingerprint of a slide file: which slide a stored result belongs to.

Multi-site cohorts reuse file names all the time (``site1/case01.svs``, ``site2/case01.svs``), so
a result may never be matched to a slide by its name alone. Hashing a whole multi-gigabyte slide
would cost as much as reading it; instead the fingerprint hashes the file size and three 64 KiB
samples (start, middle, end). The start holds the TIFF header and directory of most WSI formats and
the end the last tiles written, so two different scans practically never agree, while a byte-identical
copy under another path or name does.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

__all__ = ["FINGERPRINT_SCHEME", "slide_fingerprint"]

#: Recorded beside every fingerprint, so a future change of the sampling is never mistaken for a
#: different slide.
FINGERPRINT_SCHEME = "size+sha256(head,middle,tail 64KiB)/1"

_SAMPLE = 64 * 1024


def slide_fingerprint(path: str | Path) -> str:
    """Hex digest of a file's size and three 64 KiB samples of its bytes.

    Parameters
    ----------
    path
        The slide (or image) file. For a format whose pixels live in a folder beside an index file
        (MIRAX), the index file is fingerprinted.

    Returns
    -------
    str
        A 64-character hex digest; equal for byte-identical files.

    Raises
    ------
    OSError
        If the file cannot be read.
    """
    p = Path(path)
    size = os.stat(p).st_size
    h = hashlib.sha256(f"{FINGERPRINT_SCHEME}:{size}:".encode())
    with open(p, "rb") as fh:
        for offset in sorted({0, max(0, size // 2 - _SAMPLE // 2), max(0, size - _SAMPLE)}):
            fh.seek(offset)
            h.update(fh.read(_SAMPLE))
    return h.hexdigest()
