"""Data manifests: a CSV per cohort, its schema, safe path resolution and validation.

Schema (see ``data_manifests/README.md``): one row per image/slide/patch. Recognised columns

============  =====================================================================
``id``        unique identifier (defaults to ``path``)
``path``      file path relative to the data root (never absolute, never ``..``)
``url``       where to download the file when it is not local
``sha256``    hex sha256 of the file
``label``     class name (e.g. ``malignant``, ``benign``, ``01_TUMOR``)
``tumor``     1 tumour / 0 non-tumour (aliases ``tumour``, ``is_tumor``, ``is_tumour``)
``patient``   patient identifier used for grouped splits (alias ``patient_id``)
``site``      acquisition centre;  ``scanner``: scanner model
``split``     ``train`` / ``val`` / ``test`` (or any name)
``mpp``       native microns per pixel of the file (aliases ``mpp_estimate``,
              ``microns_per_pixel``, ``um_per_px``: see :data:`MPP_COLUMNS`)
``mask_path`` optional ground-truth mask of the image, relative to the data root;
              non-zero pixels are inside (GlaS: gland outlines; EBHI-Seg: lesion)
============  =====================================================================

At minimum a manifest needs ``path`` (or ``url``) and ``label`` or ``tumor``. Every other column
is kept in :attr:`ManifestRecord.extra`. This package is layer 0.5: no torch.

Modules: ``schema`` (aliases, :class:`Problem`, :class:`ManifestRecord`, :class:`Manifest`), ``read``
(:func:`read_manifest`), ``repeats`` (:func:`drop_repeats`), ``paths`` (:func:`resolve`,
:func:`resolve_mask`), ``checks`` (:func:`validate`, :func:`file_sha256`, :func:`labelled_records`).
"""

from __future__ import annotations

from pathxai.manifest.checks import file_sha256, labelled_records, validate
from pathxai.manifest.paths import resolve, resolve_mask
from pathxai.manifest.read import read_manifest
from pathxai.manifest.repeats import drop_repeats
from pathxai.manifest.schema import ALIASES, MPP_COLUMNS, TUMOUR_LABELS, Manifest, ManifestRecord, Problem

__all__ = [
    "ALIASES",
    "MPP_COLUMNS",
    "TUMOUR_LABELS",
    "Manifest",
    "ManifestRecord",
    "Problem",
    "drop_repeats",
    "file_sha256",
    "labelled_records",
    "read_manifest",
    "resolve",
    "resolve_mask",
    "validate",
]
