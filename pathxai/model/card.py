"""The model card: everything needed to use a model's weights correctly, as JSON.

A card travels beside ``model.safetensors`` as ``model_card.json``. It names the architecture
and its options, the classes, the patch size and resolution (µm/px) the model was trained at,
the input normalisation, the sha256 of the weights file (checked at load), the training
provenance (manifest hash, split, held-out patients, command), metrics and a licence note.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from pathxai.errors import ModelError
from pathxai.jsonio import dumps_json

__all__ = ["CARD_FILENAME", "WEIGHTS_FILENAME", "ModelCard"]

CARD_FILENAME = "model_card.json"
WEIGHTS_FILENAME = "model.safetensors"

#: Tile sides a card may give: a patch classifier sees at least 8 px; the largest tiles of
#: pathology foundation models are 518 px, and 100,000 px tiles would need ~120 GB per image.
MIN_INPUT, MAX_INPUT = 8, 4096

#: Smallest normalisation std: inputs are RGB / 255, so a smaller std amplifies one 8-bit step
#: (1/255) beyond 4 units, which no trained network expects.
MIN_STD = 1e-3

_REQUIRED = ("arch", "classes", "tumour_index", "input_size", "mpp", "mean", "std")


@dataclass(frozen=True)
class ModelCard:
    """Description of a saved model (JSON-serialisable).

    Attributes
    ----------
    arch
        Key of :data:`pathxai.model.ARCHITECTURES`, or an external spec (``torchvision:NAME``,
        ``timm:NAME``, ``python:MODULE:FACTORY``) of an imported model.
    classes
        Class names by logit index, e.g. ``("non-tumour", "tumour")``.
    tumour_index
        Index of the tumour class among ``classes``.
    input_size
        Patch side in pixels the model was trained at (it accepts larger inputs).
    mpp
        Microns per pixel the model expects its input at.
    mean, std
        Per-channel normalisation applied to ``RGB / 255``.
    weights_sha256
        sha256 of ``model.safetensors``; verified when loading.
    arch_kwargs
        Keyword options passed to the architecture constructor.
    channel_plan
        For pruned models: ``{module_name: [kept channel indices]}``; ``None`` otherwise.
    training, metrics
        Provenance of the training run and evaluation results.
    licence
        Licence note for the weights.
    command
        Exact command that reproduces the model.
    pathxai_version
        Version of pathxai that wrote the card.
    extra
        Free-form additional information.
    source
        For imported models (``pathxai model import``): the source weights file(s) and their sha256,
        the key prefix stripped, tensors left out; empty otherwise.
    projection
        For models with a P-ClArC concept projection (``pathxai mitigate --method clarc-p``): the hooked
        ``layer``, its ``channels`` and how the direction was made; the direction itself is in the
        weights (``concept_projection.*``). ``None`` otherwise.
    trust_code
        Whether building the architecture runs the user's own code (``python:`` specs); such a card
        loads only with ``PATHXAI_TRUST_CODE=1``.
    temperature
        Calibration temperature ``T`` fitted on validation cases: the loader divides the logits by it
        (:mod:`pathxai.model.calibration`). 1.0 (the default, and what older cards mean) leaves them.
    threshold
        Operating threshold on the (calibrated) tumour probability; ``evaluate`` uses it by default.
        0.5 when the card does not give one.
    """

    arch: str
    classes: tuple[str, ...]
    tumour_index: int
    input_size: int
    mpp: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    weights_sha256: str = ""
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    channel_plan: dict[str, list[int]] | None = None
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    licence: str = ""
    command: str = ""
    pathxai_version: str = ""
    extra: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)
    trust_code: bool = False
    temperature: float = 1.0
    threshold: float = 0.5
    projection: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        problems = _check(self)
        if problems:
            raise ModelError("invalid model card: " + "; ".join(problems), hint="fix or regenerate the card")

    @property
    def num_classes(self) -> int:
        """Number of classes (logits)."""
        return len(self.classes)

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        for key in ("classes", "mean", "std"):
            out[key] = list(out[key])
        return out

    def to_json(self) -> str:
        """Serialise to indented, key-sorted JSON text."""
        return dumps_json(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelCard:
        """Build a card from a dict, rejecting unknown or missing keys.

        Raises
        ------
        ModelError
            If ``data`` is not a dict, has unknown keys, lacks required keys or holds bad values.
        """
        if not isinstance(data, dict):
            raise ModelError(f"model card must be a JSON object, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ModelError(
                f"model card has unknown keys {unknown}",
                hint="the card may come from another tool or a newer pathxai; put extra data under 'extra'",
            )
        missing = [k for k in _REQUIRED if k not in data]
        if missing:
            raise ModelError(f"model card lacks required keys {missing}")
        kwargs = dict(data)
        try:
            for key in ("classes", "mean", "std"):
                if not isinstance(kwargs[key], list | tuple):
                    raise ModelError(f"model card '{key}' must be a list, got {type(kwargs[key]).__name__}")
                kwargs[key] = tuple(kwargs[key])
        except TypeError as exc:  # pragma: no cover - defensive
            raise ModelError(f"invalid model card: {exc}") from exc
        return cls(**kwargs)

    @classmethod
    def from_json(cls, text: str | bytes) -> ModelCard:
        """Parse a card from JSON text.

        Raises
        ------
        ModelError
            If the text is not valid JSON or not a valid card.
        """
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ModelError(f"model card is not valid JSON ({exc})") from exc
        return cls.from_dict(data)


def _is_number(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(float(x))


def _all_finite(x: object) -> bool:
    """Whether every float nested in ``x`` (dicts, lists, tuples) is finite."""
    if isinstance(x, float):
        return math.isfinite(x)
    if isinstance(x, dict):
        return all(_all_finite(v) for v in x.values())
    if isinstance(x, list | tuple):
        return all(_all_finite(v) for v in x)
    return True


def _check(card: ModelCard) -> list[str]:
    p: list[str] = []
    if not isinstance(card.arch, str) or not card.arch:
        p.append("'arch' must be a non-empty string")
    if (
        not isinstance(card.classes, tuple)
        or len(card.classes) < 2
        or not all(isinstance(c, str) for c in card.classes)
    ):
        p.append("'classes' must list at least two class names")
    elif len(set(card.classes)) != len(card.classes) or not all(c.strip() for c in card.classes):
        p.append(f"'classes' must be distinct, non-empty names, got {list(card.classes)!r}")
    elif (
        not isinstance(card.tumour_index, int)
        or isinstance(card.tumour_index, bool)
        or not (0 <= card.tumour_index < len(card.classes))
    ):
        p.append(f"'tumour_index' must index 'classes', got {card.tumour_index!r}")
    if (
        not isinstance(card.input_size, int)
        or isinstance(card.input_size, bool)
        or not MIN_INPUT <= card.input_size <= MAX_INPUT
    ):
        p.append(f"'input_size' must be an integer in [{MIN_INPUT}, {MAX_INPUT}] px, got {card.input_size!r}")
    if not _is_number(card.mpp) or float(card.mpp) <= 0 or float(card.mpp) > 100:
        p.append(f"'mpp' must be a positive number of microns per pixel, got {card.mpp!r}")
    for key in ("mean", "std"):
        val = getattr(card, key)
        if not isinstance(val, tuple) or len(val) != 3 or not all(_is_number(v) for v in val):
            p.append(f"'{key}' must be three finite numbers, got {val!r}")
        elif key == "std" and not all(MIN_STD <= float(v) <= 10 for v in val):
            p.append(f"'std' must lie in [{MIN_STD:g}, 10] (inputs are RGB / 255), got {val!r}")
        elif key == "mean" and not all(-1 <= float(v) <= 2 for v in val):
            p.append(f"'mean' must lie in [-1, 2] (inputs are RGB / 255, not 0-255), got {val!r}")
    if not isinstance(card.weights_sha256, str) or (
        card.weights_sha256
        and (len(card.weights_sha256) != 64 or any(c not in "0123456789abcdef" for c in card.weights_sha256))
    ):
        p.append("'weights_sha256' must be 64 lowercase hex digits (or empty before saving)")
    for key in ("arch_kwargs", "training", "metrics", "extra", "source"):
        if not isinstance(getattr(card, key), dict):
            p.append(f"'{key}' must be an object")
        elif not _all_finite(getattr(card, key)):
            p.append(f"'{key}' holds NaN or Infinity, which JSON cannot store")
    if card.channel_plan is not None:
        plan = card.channel_plan
        if not isinstance(plan, dict) or not all(
            isinstance(k, str)
            and isinstance(v, list)
            and v
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v)
            for k, v in plan.items()
        ):
            p.append("'channel_plan' must map module names to non-empty lists of channel indices")
    if not _is_number(card.temperature) or not 0.01 <= float(card.temperature) <= 100:
        p.append(f"'temperature' must be a number in [0.01, 100], got {card.temperature!r}")
    if not _is_number(card.threshold) or not 0 < float(card.threshold) < 1:
        p.append(f"'threshold' must be a probability strictly between 0 and 1, got {card.threshold!r}")
    if card.projection is not None and not (
        isinstance(card.projection, dict)
        and isinstance(card.projection.get("layer"), str)
        and isinstance(card.projection.get("channels"), int)
        and not isinstance(card.projection.get("channels"), bool)
        and card.projection["channels"] > 0
        and _all_finite(card.projection)
    ):
        p.append("'projection' must hold a 'layer' name and a positive number of 'channels'")
    if not isinstance(card.trust_code, bool):
        p.append("'trust_code' must be true or false")
    for key in ("licence", "command", "pathxai_version"):
        if not isinstance(getattr(card, key), str):
            p.append(f"'{key}' must be a string")
    return p
