"""The model layer: LRP-friendly architectures, safe save/load with a model card, preprocessing.

Training (:mod:`pathxai.model.train`), evaluation (:mod:`pathxai.model.evaluate`), patch datasets
(:mod:`pathxai.model.datasets`) and augmentation (:mod:`pathxai.model.augment`) live in their own
modules. No slide I/O here: slide tiles reach the model through the pipeline layer.
"""

from __future__ import annotations

from pathxai.model.architectures import ARCHITECTURES, build_model
from pathxai.model.card import ModelCard
from pathxai.model.io import (
    DEFAULT_MODEL_DIR,
    load_default_model,
    load_model,
    load_model_with_card,
    preprocess,
    save_model,
)

__all__ = [
    "ARCHITECTURES",
    "DEFAULT_MODEL_DIR",
    "ModelCard",
    "build_model",
    "load_default_model",
    "load_model",
    "load_model_with_card",
    "preprocess",
    "save_model",
]
