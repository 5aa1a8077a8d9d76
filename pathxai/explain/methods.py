"""Attribution methods, registered by name (like zennit's composite registry).

Every method is a class constructed once per model, ``Method(model, **options)``, and called per batch,
``method(x, target) -> (logits, attribution)`` with ``x`` of shape ``(N, C, H, W)`` and ``target`` an int64
tensor ``(N,)``. The logits come from the same forward pass as the attribution. :meth:`Method.close` removes
every hook. The :class:`~pathxai.explain.explainer.Explainer` adds batching, targets and numpy output.

LRP methods seed the backward pass with the target logit (one-hot times the logit), so relevance sums to
the target logit up to what biases and stabilisers absorb. Gradient methods seed it with the one-hot
target, so they return the gradient of the target logit.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch
from torch import nn
from zennit.attribution import Gradient, IntegratedGradients, SmoothGrad
from zennit.core import Composite

from pathxai.errors import ExplainError
from pathxai.explain.attnlrp import attnlrp_copy, is_timm_transformer
from pathxai.explain.canonize import canonizers_for, check_supported, prepare_model
from pathxai.explain.canonizers import graph_layer_map, plan_lrp
from pathxai.explain.composites import IMAGENET_MEAN, IMAGENET_STD, make_composite
from pathxai.explain.patterns import fit_patterns, load_patterns, pattern_hooks

Tensor = torch.Tensor

#: Registry: method name -> method class.
METHODS: dict[str, type[Method]] = {}

_M = TypeVar("_M", bound="type[Method]")


def register_method(name: str) -> Callable[[_M], _M]:
    """Register a method class under ``name`` in :data:`METHODS` (a class decorator).

    Parameters
    ----------
    name : str
        The registry name used by configs, the CLI and :class:`~pathxai.explain.explainer.Explainer`.

    Returns
    -------
    callable
        The decorator; it sets the class's :attr:`Method.name` to ``name`` (one spelling of the name)
        and returns the class.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a method name must be a non-empty string, got {name!r}")

    def wrapped(cls: _M) -> _M:
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrapped


def _one_hot(target: Tensor, logits: Tensor) -> Tensor:
    if logits.ndim != 2:
        raise ExplainError(
            f"the model returned an output of shape {tuple(logits.shape)}; explanations need logits (N, C)",
            hint="explain a classifier whose forward returns one row of class scores per sample",
        )
    if int(target.max()) >= logits.shape[1] or int(target.min()) < 0:
        raise ValueError(
            f"target class {int(target.max())} is out of range for a model with {logits.shape[1]} classes"
        )
    return torch.zeros_like(logits).scatter_(1, target.view(-1, 1).to(logits.device), 1.0)


class Method:
    """Base class of attribution methods.

    Parameters
    ----------
    model : torch.nn.Module
        The caller's model; methods work on a private prepared copy and never modify it.
    """

    #: Name under which the class is registered (set by :func:`register_method`).
    name: ClassVar[str] = ""

    def __init__(self, model: nn.Module) -> None:
        self.model = prepare_model(model, canonize=True)

    def __call__(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits, attribution)`` for a batch ``x`` and per-sample target classes."""
        raise NotImplementedError

    def close(self) -> None:
        """Remove every hook this method registered (nothing for hook-free methods)."""


class LRP(Method):
    """Layer-wise relevance propagation with a zennit composite.

    Parameters
    ----------
    model : torch.nn.Module
        The model to explain.
    fast : bool, optional
        Use the efficient rules (:mod:`pathxai.explain.rules`) with batch norm fused once (the class
        default), or zennit's stock rules and canonizers.
    epsilon, stabilizer, gamma : float
        Rule parameters, see :func:`pathxai.explain.composites.make_composite`.
    mean, std : sequence of float, optional
        Input normalisation, from which the z-box bounds of ``epsilon_gamma_box`` are derived. Default: the
        model card's (``model.pathxai_card``, set by :func:`pathxai.model.load_model`), else ImageNet's.
    attention : str
        Transformers only: the rule of the attention softmax, ``"attnlrp"`` (AttnLRP's, the default) or
        ``"cp"`` (CP-LRP, attention weights constant); see :mod:`pathxai.explain.attnlrp`.

    Notes
    -----
    A timm ViT is explained with the AttnLRP rules (:mod:`pathxai.explain.attnlrp`) by ``"lrp"`` and its
    alias ``"lrp_epsilon_plus_flat"``; the other composites and zennit's stock rules (``"lrp_zennit"``) have
    no rules for attention and refuse it.
    """

    composite_name: ClassVar[str] = "epsilon_plus_flat"
    default_fast: ClassVar[bool] = True
    #: The zennit composite registered on the copy (``None`` on the AttnLRP path, which needs none).
    composite: Composite | None

    def __init__(
        self,
        model: nn.Module,
        *,
        fast: bool | None = None,
        epsilon: float = 1e-6,
        stabilizer: float = 1e-6,
        gamma: float = 0.25,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        attention: str = "attnlrp",
    ) -> None:
        self.fast = self.default_fast if fast is None else bool(fast)
        #: Relevance is input x (modified) gradient of the model copy (the AttnLRP path), no composite.
        self.gradient_x_input = is_timm_transformer(model)
        if self.gradient_x_input:
            self._init_transformer(model, epsilon, attention)
            return
        plan = plan_lrp(model)
        if plan.model is None:
            check_supported(model)
        card = getattr(model, "pathxai_card", None)
        if mean is None:
            mean = tuple(getattr(card, "mean", IMAGENET_MEAN))
        if std is None:
            std = tuple(getattr(card, "std", IMAGENET_STD))
        #: How the model was canonized: "zennit-resnet", "sequential", "graph" (see explain.canonizers) or
        #: "attnlrp" (see explain.attnlrp).
        self.canonizer = plan.canonizer
        by_graph = plan.model is not None
        self.model = plan.model if plan.model is not None else prepare_model(model, canonize=self.fast)
        self.composite = make_composite(
            self.composite_name,
            fast=self.fast,
            canonizers=None if self.fast or by_graph else canonizers_for(self.model),
            extra_layer_map=graph_layer_map(epsilon) if by_graph else None,
            epsilon=epsilon,
            stabilizer=stabilizer,
            gamma=gamma,
            mean=mean,
            std=std,
        )
        try:
            self.composite.register(self.model)
        except (RuntimeError, AttributeError, TypeError) as exc:
            self.composite.remove()
            raise ExplainError(
                f"zennit could not apply the {self.composite_name} composite to "
                f"{type(model).__name__}: {exc}",
                hint="check that the model is built from standard torch layers",
            ) from exc

    def _init_transformer(self, model: nn.Module, epsilon: float, attention: str) -> None:
        if self.composite_name != "epsilon_plus_flat" or not self.fast:
            raise ExplainError(
                f"method {self.name!r} has no rules for attention ({type(model).__name__} is a transformer)",
                hint="use method='lrp' (AttnLRP) for transformers",
            )
        self.canonizer = "attnlrp"
        self.model = attnlrp_copy(model, epsilon=epsilon, attention=attention)
        self.composite = None

    def __call__(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits, relevance)``; relevance has the shape of ``x`` and sums to the target logit."""
        x = x.detach().requires_grad_(True)  # a new tensor object: the caller's x is not marked
        with torch.enable_grad():
            logits = self.model(x)
            seed = _one_hot(target, logits)
            if not self.gradient_x_input:
                seed = seed * logits.detach()
            (relevance,) = torch.autograd.grad(logits, x, seed)
        if self.gradient_x_input:  # R(logit) = logit: the gradient seed is one (see explain.attnlrp)
            relevance = relevance * x.detach()
        return logits.detach(), relevance

    def close(self) -> None:
        """Remove the composite's hooks (and canonizers, for the stock path)."""
        if self.composite is not None:
            self.composite.remove()


@register_method("lrp")
class FastLRP(LRP):
    """The production default: EpsilonPlusFlat with the efficient rules (= ``lrp_epsilon_plus_flat``)."""


@register_method("lrp_epsilon_plus_flat")
class EpsilonPlusFlatLRP(LRP):
    """Flat rule for the first layer, z+ for convolutions, epsilon for dense layers (efficient rules)."""


@register_method("lrp_epsilon_gamma_box")
class EpsilonGammaBoxLRP(LRP):
    """Z-box for the first layer (bounds from ``mean``/``std``), gamma for convolutions, epsilon for dense."""

    composite_name = "epsilon_gamma_box"


@register_method("lrp_epsilon_alpha2_beta1_flat")
class EpsilonAlpha2Beta1FlatLRP(LRP):
    """Flat rule for the first layer, alpha2-beta1 for convolutions, epsilon for dense layers."""

    composite_name = "epsilon_alpha2_beta1_flat"


@register_method("lrp_zennit")
class StockLRP(LRP):
    """zennit's stock EpsilonPlusFlat composite and canonizers: the reference for the fast path."""

    default_fast = False


class _GradientMethod(Method):
    """Base of the gradient methods: a zennit attributor on the prepared copy, one-hot seeded."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__(model)
        self.attributor: Gradient = Gradient(self.model)

    def __call__(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits, gradient-based attribution)``."""
        holder: dict[str, Tensor] = {}

        def seed(output: Tensor) -> Tensor:
            holder.setdefault("one_hot", _one_hot(target, output))
            return holder["one_hot"]

        with torch.enable_grad():
            logits, attribution = self.attributor(x.detach().clone(), seed)
        return logits.detach(), self.finish(x, attribution)

    def finish(self, x: Tensor, gradient: Tensor) -> Tensor:
        """Turn the attributor's result into the attribution (identity for the plain gradient)."""
        return gradient


@register_method("gradient")
class GradientMethod(_GradientMethod):
    """The gradient of the target logit with respect to the input (sensitivity)."""


@register_method("gradient_x_input")
class GradientTimesInput(_GradientMethod):
    """Gradient times input."""

    def finish(self, x: Tensor, gradient: Tensor) -> Tensor:
        """Multiply the gradient by the input."""
        return gradient * x


@register_method("smoothgrad")
class SmoothGradMethod(_GradientMethod):
    """SmoothGrad: the gradient averaged over noisy copies of the input (zennit's ``SmoothGrad``).

    Parameters
    ----------
    model : torch.nn.Module
        The model to explain.
    noise_level : float
        Noise standard deviation relative to each sample's value range.
    n_iter : int
        Number of noisy samples (the last one is noise-free and gives the logits).
    seed : int or None
        Seed of the noise, so results are reproducible; ``None`` leaves torch's global generator alone.
    """

    def __init__(
        self, model: nn.Module, *, noise_level: float = 0.1, n_iter: int = 20, seed: int | None = 0
    ) -> None:
        super().__init__(model)
        if n_iter < 1 or noise_level < 0:
            raise ValueError(f"need n_iter >= 1 and noise_level >= 0, got {n_iter} and {noise_level}")
        self.seed = seed
        self.attributor = SmoothGrad(self.model, noise_level=noise_level, n_iter=n_iter)

    def __call__(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits, SmoothGrad)``; noise is drawn from a generator seeded with ``seed``."""
        if self.seed is None:
            return super().__call__(x, target)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return super().__call__(x, target)


@register_method("integrated_gradients")
class IntegratedGradientsMethod(_GradientMethod):
    """Integrated Gradients from a baseline (zennit's ``IntegratedGradients``).

    Parameters
    ----------
    model : torch.nn.Module
        The model to explain.
    n_iter : int
        Number of steps of the Riemann sum.
    baseline : float
        Constant baseline value in the model's (normalised) input space; 0 is the mean colour for
        mean/std-normalised inputs.
    """

    def __init__(self, model: nn.Module, *, n_iter: int = 20, baseline: float = 0.0) -> None:
        super().__init__(model)
        if n_iter < 1:
            raise ValueError(f"n_iter must be >= 1, got {n_iter}")
        self.attributor = IntegratedGradients(
            self.model, n_iter=n_iter, baseline_fn=lambda t: torch.full_like(t, float(baseline))
        )


@register_method("pattern_attribution")
class PatternAttributionMethod(Method):
    """PatternAttribution (Kindermans et al. 2018): the output backpropagated with ``weight * pattern``.

    See :mod:`pathxai.explain.patterns`. The backward pass starts from the target logit (one-hot times
    the logit, like LRP); ReLU and pooling pass it as the gradient does.

    Parameters
    ----------
    model : torch.nn.Module
        The model to explain (BatchNorm is fused into a private copy).
    patterns : mapping, str or Path, optional
        Fitted patterns by layer name (:func:`~pathxai.explain.patterns.fit_model_patterns`), or a
        ``patterns.safetensors`` file / the model directory holding it.
    reference : torch.Tensor, optional
        Reference tiles ``(N, 3, H, W)`` to fit the patterns on when ``patterns`` is not given.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        patterns: Mapping[str, Tensor] | str | Path | None = None,
        reference: Tensor | None = None,
    ) -> None:
        super().__init__(model)
        if patterns is None:
            if reference is None:
                raise ExplainError(
                    "pattern_attribution needs fitted patterns",
                    hint="pass patterns= (a dict or a patterns.safetensors file beside the model) or "
                    "reference= tiles to fit them on",
                )
            patterns = fit_patterns(self.model, [reference])
        elif isinstance(patterns, str | Path):
            patterns = load_patterns(patterns)
        self.patterns = dict(patterns)
        self.handles = pattern_hooks(self.model, self.patterns)

    def __call__(self, x: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """Return ``(logits, PatternAttribution)`` (input shape)."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = self.model(x)
            seed = _one_hot(target, logits) * logits.detach()
            (attribution,) = torch.autograd.grad(logits, x, seed)
        return logits.detach(), attribution

    def close(self) -> None:
        """Remove the pattern hooks."""
        for handle in self.handles:
            handle.remove()
        self.handles = []


def method_names() -> tuple[str, ...]:
    """Return the registered method names, sorted."""
    return tuple(sorted(METHODS))


def make_method(name: str, model: nn.Module, **options: Any) -> Method:
    """Construct the method registered as ``name`` for ``model``.

    Raises
    ------
    ValueError
        For an unknown name (the message lists the valid ones) or options the method does not take.
    """
    if name not in METHODS:
        raise ValueError(f"unknown explanation method {name!r}; valid methods: {', '.join(method_names())}")
    cls = METHODS[name]
    try:  # check the options against the signature rather than parse a TypeError's message
        inspect.signature(cls).bind(model, **options)
    except TypeError as exc:
        raise ValueError(f"method {name!r} does not take these options: {exc}") from exc
    return cls(model, **options)
