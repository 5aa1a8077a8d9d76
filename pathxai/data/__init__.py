"""Public dataset files as manifest sources: several sources per file, sha256 check, cache.

- :mod:`pathxai.data.sources`: dataset definitions (JSON in ``pathxai/data/sources/``);
- :mod:`pathxai.data.fetch`: try sources in order, verify, cache (``$PATHXAI_CACHE`` or ``~/.cache/pathxai``).
"""

from __future__ import annotations

from pathxai.data.fetch import cache_dir, fetch, fetch_file, sha256_file
from pathxai.data.sources import (
    DataFile,
    Dataset,
    Source,
    builtin_datasets,
    get_dataset,
    load_dataset_file,
    parse_dataset,
)

#: The demo slide (CC0 OpenSlide test data).
DEMO_DATASET = "cmu-small-region"

__all__ = [
    "DEMO_DATASET",
    "DataFile",
    "Dataset",
    "Source",
    "builtin_datasets",
    "cache_dir",
    "fetch",
    "fetch_file",
    "get_dataset",
    "load_dataset_file",
    "parse_dataset",
    "sha256_file",
]
