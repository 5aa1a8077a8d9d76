"""Architectures a user brings: ``torchvision:NAME``, ``timm:NAME`` and ``python:package.module:factory``.

An *architecture spec* names where a network comes from. :func:`build_external` builds it with
randomly initialised weights (never downloads any), optionally as a backbone plus a linear head
(:class:`LinearHeadModel`, the way foundation-model features are used). ``python:`` specs import
and run the user's code, so they are refused unless trust is given explicitly: ``--trust-code``
when importing, ``PATHXAI_TRUST_CODE=1`` in the environment when loading a saved model (worker
processes inherit the environment, so they honour it too).
"""

from __future__ import annotations

import difflib
import importlib
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from pathxai.errors import ModelError

__all__ = [
    "SPEC_PREFIXES",
    "TRUST_ENV",
    "LinearHeadModel",
    "build_external",
    "code_trusted",
    "external_constructor",
    "is_external_spec",
    "parse_spec",
]

#: Spec prefixes handled here.
SPEC_PREFIXES = ("torchvision", "timm", "python")

#: Environment variable that allows loading models whose architecture is the user's own code.
TRUST_ENV = "PATHXAI_TRUST_CODE"

#: Reserved ``arch_kwargs`` key: build the backbone without its classifier plus a linear head.
LINEAR_HEAD_KEY = "linear_head"


class LinearHeadModel(nn.Module):
    """A feature extractor and a linear classifier on its pooled features, as one model.

    Parameters
    ----------
    backbone
        Maps images ``(N, 3, H, W)`` to pooled features ``(N, D)`` (or ``(N, D, 1, 1)``).
    head
        ``nn.Linear(D, num_classes)``.
    """

    def __init__(self, backbone: nn.Module, head: nn.Linear, dropped: str | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.flatten = nn.Flatten(1)
        self.head = head
        #: Name of the backbone's own classifier that was removed (its tensors are not expected).
        self.dropped_head = dropped

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits ``(N, num_classes)``."""
        return self.head(self.flatten(self.backbone(x)))


def is_external_spec(arch: str) -> bool:
    """Whether ``arch`` is an external spec (``prefix:rest``) rather than a built-in name."""
    return isinstance(arch, str) and arch.split(":", 1)[0] in SPEC_PREFIXES and ":" in arch


def parse_spec(spec: str) -> tuple[str, str]:
    """Split a spec into ``(kind, name)``; ``name`` is ``package.module:factory`` for ``python:``.

    Raises
    ------
    ModelError
        For a malformed spec.
    """
    kind, sep, name = spec.partition(":")
    if not sep or kind not in SPEC_PREFIXES or not name:
        raise ModelError(
            f"architecture spec {spec!r} is not one of torchvision:NAME, timm:NAME, python:MODULE:FACTORY",
            hint="e.g. --arch torchvision:resnet50",
        )
    if kind == "python" and (name.count(":") != 1 or not all(name.split(":"))):
        raise ModelError(
            f"python architecture spec {spec!r} must be python:package.module:factory",
            hint="the factory is a callable returning an nn.Module",
        )
    return kind, name


def code_trusted() -> bool:
    """Whether ``PATHXAI_TRUST_CODE=1`` is set."""
    return os.environ.get(TRUST_ENV, "") == "1"


def _unknown(kind: str, name: str, known: list[str]) -> ModelError:
    close = difflib.get_close_matches(name, known, n=3)
    hint = f"did you mean {', '.join(close)}?" if close else f"{len(known)} {kind} models are known"
    return ModelError(f"unknown {kind} architecture {name!r}", hint=hint)


def _torchvision(name: str, num_classes: int | None, kwargs: dict[str, Any]) -> nn.Module:
    import torchvision

    known = torchvision.models.list_models(module=torchvision.models)
    if name not in known:
        raise _unknown("torchvision", name, known)
    if num_classes is not None:
        kwargs = {**kwargs, "num_classes": num_classes}
    # weights=None: never download. Models whose default auxiliary heads need weights are turned off.
    if name in ("googlenet", "inception_v3"):
        kwargs.setdefault("aux_logits", False)
        kwargs.setdefault("init_weights", False)
    return torchvision.models.get_model(name, weights=None, **kwargs)


def _timm(name: str, num_classes: int | None, kwargs: dict[str, Any]) -> nn.Module:
    try:
        import timm
    except ImportError as exc:
        raise ModelError(
            "timm architectures need the optional package timm", hint="pip install 'pathxai[timm]'"
        ) from exc
    known = timm.list_models()
    if name not in known:
        raise _unknown("timm", name, known)
    if num_classes is not None:
        kwargs = {**kwargs, "num_classes": num_classes}
    model: nn.Module = timm.create_model(name, pretrained=False, **kwargs)
    return model


def _python(name: str, kwargs: dict[str, Any], trust_code: bool) -> nn.Module:
    if not trust_code:
        raise ModelError(
            f"architecture python:{name} runs your own Python code; refused without explicit trust",
            hint=f"pass --trust-code when importing, or set {TRUST_ENV}=1 to load such a model",
        )
    module_name, factory_name = name.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ModelError(f"cannot import module {module_name!r} ({exc})", hint="check PYTHONPATH") from exc
    factory = getattr(module, factory_name, None)
    if not callable(factory):
        raise ModelError(f"module {module_name!r} has no callable {factory_name!r}")
    model = factory(**kwargs)
    if not isinstance(model, nn.Module):
        raise ModelError(f"python:{name} returned {type(model).__name__}, not a torch.nn.Module")
    return model


def _strip_torchvision_head(model: nn.Module) -> str:
    """Replace the last ``nn.Linear`` of a torchvision classifier by an identity; return its name."""
    last = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ModelError(f"{type(model).__name__} has no linear classifier to replace by --head-weights")
    name = last[-1]
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, nn.Identity())
    return name


def build_external(
    spec: str,
    num_classes: int = 2,
    *,
    linear_head: dict[str, int] | None = None,
    trust_code: bool | None = None,
    **kwargs: Any,
) -> nn.Module:
    """Build the network named by ``spec`` with random weights.

    Parameters
    ----------
    spec
        ``torchvision:NAME``, ``timm:NAME`` or ``python:package.module:factory``.
    num_classes
        Number of logits (passed to torchvision/timm constructors; a ``python:`` factory gets only
        ``kwargs`` and must return that many logits itself).
    linear_head
        ``{"features": D}``: build the network without its classifier and add ``nn.Linear(D, num_classes)``
        (:class:`LinearHeadModel`). ``None``: the network with its own classifier.
    trust_code
        Allow ``python:`` specs; ``None`` reads ``PATHXAI_TRUST_CODE``.
    **kwargs
        Options of the constructor (``--arch-kwargs``).

    Returns
    -------
    torch.nn.Module
        The network in training mode.

    Raises
    ------
    ModelError
        For unknown names, missing timm, untrusted code or a constructor that fails.
    """
    kind, name = parse_spec(spec)
    trusted = code_trusted() if trust_code is None else trust_code
    classes = None if linear_head is not None else num_classes
    dropped: str | None = None
    try:
        if kind == "torchvision":
            model = _torchvision(name, classes if classes is not None else 1000, dict(kwargs))
            if linear_head is not None:
                dropped = _strip_torchvision_head(model)
        elif kind == "timm":
            model = _timm(name, classes if classes is not None else 0, dict(kwargs))
            cfg = getattr(model, "pretrained_cfg", None) or {}
            dropped = cfg.get("classifier") if isinstance(cfg, dict) else None
        else:
            model = _python(name, dict(kwargs), trusted)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(
            f"cannot build {spec} with options {kwargs}: {type(exc).__name__}: {' '.join(str(exc).split())}"
        ) from exc
    if linear_head is not None:
        features = int(linear_head["features"])
        model = LinearHeadModel(model, nn.Linear(features, num_classes), dropped)
    return model


def external_constructor(spec: str) -> Callable[..., nn.Module]:
    """Return a constructor ``(num_classes=..., **arch_kwargs) -> nn.Module`` for a card's ``arch`` spec."""
    parse_spec(spec)

    def construct(num_classes: int = 2, **kwargs: Any) -> nn.Module:
        return build_external(spec, num_classes, **kwargs)

    return construct
