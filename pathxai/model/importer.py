"""Import a model trained elsewhere into a pathxai model folder (``pathxai model import``).

Weights saved the usual ways are read without ever unpickling Python objects: ``.safetensors``,
or ``torch.save(state_dict)`` / a checkpoint dict holding one (``state_dict``, ``model_state_dict``,
``model``) read with ``torch.load(weights_only=True)``. Key prefixes from ``DataParallel`` or
wrappers (``module.``, ``model.``) are stripped. The architecture is built from its spec
(:mod:`pathxai.model.external`), must match the tensors name for name and shape for shape, and must
return one logit per class; then the model is saved as ``model.safetensors`` plus a card.
"""

from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pathxai.errors import ModelError
from pathxai.model.card import ModelCard
from pathxai.model.external import LINEAR_HEAD_KEY, LinearHeadModel, build_external, parse_spec

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "ImportSpec",
    "import_model",
    "read_state_dict",
    "strip_prefixes",
    "tumour_index",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: Key prefixes removed when every key carries them (DataParallel, Lightning, EMA wrappers).
PREFIXES = ("module.", "model.")
#: Keys of a checkpoint dict that may hold the state dict, in order of preference.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")
_TUMOUR_NAMES = ("tumour", "tumor")


@dataclass(frozen=True)
class ImportSpec:
    """What ``pathxai model import`` was asked to do.

    Attributes
    ----------
    arch
        ``torchvision:NAME``, ``timm:NAME`` or ``python:MODULE:FACTORY``.
    weights
        The weights file (backbone weights when ``head_weights`` is given).
    classes
        Class names by logit index.
    mpp, input_size
        Resolution (µm/px) and patch side the model was trained at.
    head_weights
        Optional ``nn.Linear`` state dict (``weight``, ``bias``) on the backbone's pooled features.
    tumour_class
        Name of the tumour class; default: the class named tumour/tumor (any case).
    mean, std
        Input normalisation of ``RGB / 255`` (ImageNet's by default).
    arch_kwargs
        Options of the architecture constructor.
    trust_code
        Allow ``python:`` specs (runs the user's code).
    command
        The command line, recorded in the card.
    """

    arch: str
    weights: Path
    classes: tuple[str, ...]
    mpp: float
    input_size: int
    head_weights: Path | None = None
    tumour_class: str | None = None
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    trust_code: bool = False
    command: str = ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _load_file(path: Path) -> Any:
    if not path.is_file():
        raise ModelError("weights file not found", path=path, hint="pass an existing file")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except Exception as exc:
            raise ModelError(
                f"not a valid safetensors file ({type(exc).__name__}: {' '.join(str(exc).split())})",
                path=path,
            ) from exc
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL (\S+)", str(exc))
        if found is None:
            raise ModelError(
                "cannot read weights: not a torch.save file of tensors",
                path=path,
                hint="use a .safetensors file or a torch.save(state_dict) .pt/.pth",
            ) from exc
        what = f" (it references {found.group(1)})"
        raise ModelError(
            f"the file holds pickled Python objects, not only tensors{what}; pathxai never unpickles them",
            path=path,
            hint="save model.state_dict() (torch.save) or a .safetensors file instead of the whole model",
        ) from exc
    except Exception as exc:
        raise ModelError(
            f"cannot read weights ({type(exc).__name__}: {' '.join(str(exc).split())})",
            path=path,
            hint="use a .safetensors file or a torch.save(state_dict) .pt/.pth",
        ) from exc


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict of tensors from ``.safetensors``, a ``torch.save`` state dict or a checkpoint dict.

    Raises
    ------
    ModelError
        If the file is missing, holds pickled objects, is not a dict of tensors, or is empty.
    """
    path = Path(path)
    loaded = _load_file(path)
    if not isinstance(loaded, dict):
        raise ModelError(
            f"the file holds a {type(loaded).__name__}, not a state dict",
            path=path,
            hint="save model.state_dict()",
        )
    if not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        inner = next((loaded[k] for k in CHECKPOINT_KEYS if isinstance(loaded.get(k), dict)), None)
        if inner is None:
            raise ModelError(
                "the file is a dict but not of tensors, and holds no 'state_dict' "
                f"(keys: {sorted(map(str, loaded))[:6]})",
                path=path,
                hint="save model.state_dict(), or a checkpoint dict with the state dict under 'state_dict'",
            )
        loaded = inner
    bad = [str(k) for k, v in loaded.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ModelError(
            f"the state dict holds values that are not tensors: {bad[:5]}",
            path=path,
            hint="save model.state_dict() (tensors only)",
        )
    if not loaded:
        raise ModelError("the state dict is empty", path=path)
    return {str(k): v for k, v in loaded.items()}


def strip_prefixes(state: dict[str, torch.Tensor], expected: set[str]) -> tuple[dict[str, torch.Tensor], str]:
    """Remove wrapper prefixes (``module.``, ``model.``) that every key carries and the model lacks.

    Returns
    -------
    tuple[dict, str]
        The renamed state dict and the prefix removed (``""`` for none).
    """
    removed = ""
    while not set(state) & expected:
        prefix = next((p for p in PREFIXES if all(k.startswith(p) for k in state)), None)
        if prefix is None:
            break
        state = {k[len(prefix) :]: v for k, v in state.items()}
        removed += prefix
    return state, removed


def tumour_index(classes: tuple[str, ...], tumour_class: str | None) -> int:
    """Index of the tumour class: ``tumour_class`` if given, else the class named tumour/tumor.

    Raises
    ------
    ModelError
        If ``tumour_class`` is not among the classes, or no class is named tumour/tumor.
    """
    if tumour_class is not None:
        if tumour_class not in classes:
            raise ModelError(f"--tumour-class {tumour_class!r} is not one of the classes {list(classes)}")
        return classes.index(tumour_class)
    found = [i for i, c in enumerate(classes) if c.strip().lower() in _TUMOUR_NAMES]
    if len(found) != 1:
        raise ModelError(
            f"cannot tell which of the classes {list(classes)} is the tumour class",
            hint="pass --tumour-class NAME",
        )
    return found[0]


def _fit_state(
    model: nn.Module, state: dict[str, torch.Tensor], path: Path, spec: str, ignore_prefix: str | None
) -> tuple[dict[str, torch.Tensor], str, list[str]]:
    """Match ``state`` to ``model``; return the fitted state, prefix stripped and keys left out."""
    own = model.state_dict()
    state, prefix = strip_prefixes(state, set(own))
    ignored: list[str] = []
    if ignore_prefix:
        ignored = sorted(k for k in state if k not in own and k.startswith(ignore_prefix))
        state = {k: v for k, v in state.items() if k not in ignored}
    # Checkpoints written before BatchNorm counted its batches lack these counters: harmless.
    missing = sorted(k for k in set(own) - set(state) if not k.endswith("num_batches_tracked"))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        raise ModelError(
            f"the weights do not fit {spec}: tensors " + ", ".join(parts),
            path=path,
            hint="check --arch and --arch-kwargs against the model the weights were saved from",
        )
    for name, tensor in own.items():
        if name not in state:
            state[name] = tensor.clone()
            continue
        got = state[name]
        if tuple(got.shape) != tuple(tensor.shape):
            raise ModelError(
                f"tensor {name!r} has shape {tuple(got.shape)} but {spec} expects {tuple(tensor.shape)}",
                path=path,
                hint="check --classes (one per logit), --arch and --arch-kwargs",
            )
        if got.is_floating_point() and not bool(torch.isfinite(got).all()):
            raise ModelError(f"tensor {name!r} holds NaN or infinite values", path=path)
        state[name] = got.to(tensor.dtype)
    return state, prefix, ignored


def _read_head(path: Path, num_classes: int) -> tuple[dict[str, torch.Tensor], int]:
    state = read_state_dict(path)
    names = {k.rpartition(".")[2]: k for k in state}
    if set(names) != {"weight", "bias"} or len(state) != 2:
        raise ModelError(
            f"head weights must be an nn.Linear state dict with 'weight' and 'bias', got keys {sorted(state)[:5]}",
            path=path,
        )
    weight, bias = state[names["weight"]], state[names["bias"]]
    if weight.ndim != 2 or bias.shape != (weight.shape[0],):
        raise ModelError(
            f"head 'weight' {tuple(weight.shape)} and 'bias' {tuple(bias.shape)} are not a linear layer",
            path=path,
        )
    if weight.shape[0] != num_classes:
        raise ModelError(
            f"the head has {weight.shape[0]} outputs but --classes lists {num_classes}", path=path
        )
    return {"weight": weight, "bias": bias}, int(weight.shape[1])


def _feature_dim(backbone: nn.Module, size: int) -> int:
    with torch.no_grad():
        out = backbone.eval()(torch.zeros(1, 3, size, size))
    if not isinstance(out, torch.Tensor) or out.ndim < 2 or out[0].numel() != out.shape[1]:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(f"the backbone returns {shape}, not pooled features (N, D)")
    return int(out.shape[1])


def _check_logits(model: nn.Module, size: int, num_classes: int, spec: str) -> None:
    try:
        with torch.no_grad():
            out = model.eval()(torch.zeros(1, 3, size, size))
    except Exception as exc:
        raise ModelError(
            f"{spec} fails on a {size} px input ({type(exc).__name__}: {' '.join(str(exc).split())})",
            hint="check --size",
        ) from exc
    if not isinstance(out, torch.Tensor) or out.shape != (1, num_classes):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"{spec} returns {shape} for one image; expected (1, {num_classes}) logits, one per class",
            hint="check --classes and --arch-kwargs",
        )


def import_model(spec: ImportSpec) -> tuple[nn.Module, ModelCard]:
    """Build the architecture, load the user's weights into it and write its card (not saved yet).

    Parameters
    ----------
    spec
        What to import.

    Returns
    -------
    tuple[torch.nn.Module, ModelCard]
        The model in eval mode and its card; save both with :func:`pathxai.model.save_model`.

    Raises
    ------
    ModelError
        For unknown architectures, untrusted code, unreadable or pickled weights, missing or
        unexpected tensors, wrong shapes, or logits that do not match the classes.
    """
    kind, _ = parse_spec(spec.arch)
    if kind == "python" and not spec.trust_code:
        raise ModelError(
            f"{spec.arch} runs your own Python code; pass --trust-code to allow it",
            hint="the card records it, and loading the model then needs PATHXAI_TRUST_CODE=1",
        )
    classes = tuple(spec.classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ModelError(f"--classes needs at least two distinct names, got {list(classes)}")
    tumour = tumour_index(classes, spec.tumour_class)
    user_kwargs = dict(spec.arch_kwargs)
    if LINEAR_HEAD_KEY in user_kwargs:
        raise ModelError(f"--arch-kwargs may not set {LINEAR_HEAD_KEY!r}; use --head-weights")
    state = read_state_dict(spec.weights)
    source: dict[str, Any] = {"weights": spec.weights.name, "weights_sha256": _sha256(spec.weights)}
    arch_kwargs = dict(user_kwargs)
    head_state: dict[str, torch.Tensor] | None = None
    ignore_prefix: str | None = None
    if spec.head_weights is not None:
        head_state, features = _read_head(spec.head_weights, len(classes))
        source["head_weights"] = spec.head_weights.name
        source["head_weights_sha256"] = _sha256(spec.head_weights)
        arch_kwargs[LINEAR_HEAD_KEY] = {"features": features}
        model = build_external(spec.arch, len(classes), trust_code=spec.trust_code, **arch_kwargs)
        if not isinstance(model, LinearHeadModel):  # pragma: no cover - build_external guarantees it
            raise TypeError("expected a LinearHeadModel")
        backbone = model.backbone
        found = _feature_dim(backbone, spec.input_size)
        if found != features:
            raise ModelError(
                f"the head takes {features} features but the backbone {spec.arch} gives {found}",
                path=spec.head_weights,
            )
        ignore_prefix = f"{model.dropped_head}." if model.dropped_head else None
        fitted, prefix, ignored = _fit_state(backbone, state, spec.weights, spec.arch, ignore_prefix)
        backbone.load_state_dict(fitted)
        model.head.load_state_dict(head_state)
    else:
        model = build_external(spec.arch, len(classes), trust_code=spec.trust_code, **arch_kwargs)
        fitted, prefix, ignored = _fit_state(model, state, spec.weights, spec.arch, None)
        model.load_state_dict(fitted)
    if prefix:
        source["stripped_prefix"] = prefix
    if ignored:
        source["ignored_tensors"] = ignored
    model.eval()
    _check_logits(model, spec.input_size, len(classes), spec.arch)
    card = ModelCard(
        arch=spec.arch,
        classes=classes,
        tumour_index=tumour,
        input_size=int(spec.input_size),
        mpp=float(spec.mpp),
        mean=tuple(float(v) for v in spec.mean),  # type: ignore[arg-type]
        std=tuple(float(v) for v in spec.std),  # type: ignore[arg-type]
        arch_kwargs=arch_kwargs,
        command=spec.command,
        source=source,
        trust_code=kind == "python",
    )
    return model, card
