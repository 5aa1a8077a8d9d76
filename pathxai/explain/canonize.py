"""Bring a model into the canonical form LRP needs, once, on a private copy.

* :func:`canonizers_for` picks zennit's canonizers: :class:`zennit.torchvision.ResNetCanonizer` when the model
  contains torchvision residual blocks, :class:`zennit.canonizers.SequentialMergeBatchNorm` otherwise.
* :func:`check_supported` rejects models with layers LRP has no rule for, with a message naming them.
* :func:`prepare_model` deep-copies the model (the caller's model is never touched), switches it to eval
  mode, turns off parameter gradients and in-place activations and, if asked, applies the canonizers for
  good and replaces each merged batch norm (now an identity) by :class:`torch.nn.Identity`.
"""

from __future__ import annotations

import copy

from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck
from zennit.canonizers import Canonizer, MergeBatchNorm, SequentialMergeBatchNorm
from zennit.layer import Sum
from zennit.torchvision import ResNetCanonizer
from zennit.types import Activation, AvgPool, BatchNorm, Linear, MaxPool

from pathxai.errors import ExplainError
from pathxai.model.projection import ConceptProjection

#: Modules that pass relevance through unchanged (no rule needed).
NEUTRAL_MODULES = (
    nn.Identity,
    nn.Flatten,
    nn.Unflatten,
    nn.Dropout,
    nn.Dropout1d,
    nn.Dropout2d,
    nn.Dropout3d,
    nn.AlphaDropout,
)


def is_resnet(model: nn.Module) -> bool:
    """Return whether ``model`` contains torchvision ResNet blocks (``BasicBlock`` or ``Bottleneck``)."""
    return any(isinstance(module, (BasicBlock, Bottleneck)) for module in model.modules())


def canonizers_for(model: nn.Module) -> list[Canonizer]:
    """Return fresh zennit canonizers suited to ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        A torchvision ResNet (residual additions made explicit, batch norms merged) or a sequential
        VGG-style network (batch norms merged into the preceding convolution).

    Returns
    -------
    list of zennit.canonizers.Canonizer
    """
    if is_resnet(model):
        return [ResNetCanonizer()]
    return [SequentialMergeBatchNorm()]


def _supported(module: nn.Module) -> bool:
    # a ConceptProjection runs in a forward hook of the layer it projects (relevance passes it as a gradient)
    return isinstance(
        module, (Linear, BatchNorm, Activation, AvgPool, MaxPool, Sum, ConceptProjection, *NEUTRAL_MODULES)
    )


def check_supported(model: nn.Module) -> None:
    """Raise :class:`~pathxai.errors.ExplainError` when LRP cannot explain ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        The model to check.

    Raises
    ------
    ExplainError
        If the model has no convolution or linear layer, or has leaf layers without an LRP rule (for example
        recurrent, attention or normalisation layers other than batch norm).
    """
    leaves = [
        (name, module) for name, module in model.named_modules() if next(module.children(), None) is None
    ]
    if not any(isinstance(module, Linear) for _, module in leaves):
        raise ExplainError(
            f"{type(model).__name__} has no convolution or linear layer, so LRP has nothing to explain",
            hint="pass a CNN classifier such as pathxai.model.build_model('compact_cnn')",
        )
    unsupported = [
        f"{name or '<root>'} ({type(module).__name__})" for name, module in leaves if not _supported(module)
    ]
    if unsupported:
        raise no_rule_error(
            model,
            unsupported,
            "use method='gradient' (or another gradient method), or build the model from "
            "Conv/Linear/BatchNorm/ReLU/pooling layers",
        )


def no_rule_error(model: nn.Module, layers: list[str], hint: str, shown: int = 8) -> ExplainError:
    """The one error for a model holding layers LRP has no rule for: it names them (the first ``shown``)."""
    listed = ", ".join(layers[:shown]) + (" ..." if len(layers) > shown else "")
    return ExplainError(
        f"LRP has no rule for {len(layers)} layer(s) of {type(model).__name__}: {listed}", hint=hint
    )


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` in eval mode, gradients of its parameters off, activations not in place."""
    prepared = copy.deepcopy(model).eval()
    for param in prepared.parameters():
        param.requires_grad_(False)
    for module in prepared.modules():
        if getattr(module, "inplace", False) is True:
            module.inplace = False  # type: ignore[assignment]
    return prepared


def prepare_model(model: nn.Module, *, canonize: bool) -> nn.Module:
    """Return a private, inference-ready copy of ``model``.

    Parameters
    ----------
    model : torch.nn.Module
        The caller's model; it is not modified.
    canonize : bool
        Apply :func:`canonizers_for` to the copy for good (batch norm fused into the preceding convolution
        once) and replace the merged batch norms by :class:`torch.nn.Identity`. Leave False when a zennit
        composite will apply the canonizers itself.

    Returns
    -------
    torch.nn.Module
        The copy, in eval mode, with ``requires_grad=False`` parameters and non-in-place activations.
    """
    prepared = frozen_copy(model)
    if canonize:
        merged: list[nn.Module] = []
        for canonizer in canonizers_for(prepared):
            for instance in canonizer.apply(prepared):
                if isinstance(instance, MergeBatchNorm):
                    merged.append(instance.batch_norm)
        _replace_modules(prepared, merged)
    return prepared


def _replace_modules(root: nn.Module, targets: list[nn.Module]) -> None:
    """Replace each module in ``targets`` (now computing the identity) by :class:`torch.nn.Identity`."""
    wanted = {id(module) for module in targets}
    for parent in list(root.modules()):
        for child_name, child in list(parent.named_children()):
            if id(child) in wanted:
                setattr(parent, child_name, nn.Identity())
