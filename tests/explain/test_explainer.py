"""The Explainer interface: shapes, targets, one forward pass, registry, errors, hook removal."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from pathxai.errors import ExplainError
from pathxai.explain import METHODS, Explainer, Explanation, Method, explain, method_names, register_method
from tests.explain.conftest import tv_resnet18

ALL_METHODS = [
    "lrp",
    "lrp_epsilon_plus_flat",
    "lrp_epsilon_gamma_box",
    "lrp_epsilon_alpha2_beta1_flat",
    "lrp_zennit",
    "gradient",
    "gradient_x_input",
    "smoothgrad",
    "integrated_gradients",
]


def hook_state(model: nn.Module) -> list[tuple[str, int, int, int]]:
    return [
        (name, len(m._forward_hooks), len(m._forward_pre_hooks), len(m._backward_hooks))
        for name, m in model.named_modules()
    ]


def test_registry_has_every_method() -> None:
    assert set(ALL_METHODS) <= set(METHODS)
    assert method_names() == tuple(sorted(METHODS))


def test_a_method_class_is_named_once_by_its_registration() -> None:
    assert {name: cls.name for name, cls in METHODS.items()} == {name: name for name in METHODS}


@pytest.mark.parametrize("method", ALL_METHODS)
def test_explanation_shapes_and_same_forward(vgg: nn.Module, images: torch.Tensor, method: str) -> None:
    options = {"n_iter": 3} if method in ("smoothgrad", "integrated_gradients") else {}
    with Explainer(vgg, method, **options) as explainer:
        result = explainer(images)
    assert isinstance(result, Explanation)
    assert result.method == method
    assert result.relevance.shape == (3, 32, 32) and result.relevance.dtype == np.float32
    assert result.logits.shape == (3, 2) and result.logits.dtype == np.float32
    assert result.probabilities.dtype == np.float32
    assert result.target.dtype == np.int64 and list(result.target) == [1, 1, 1]
    assert np.isfinite(result.relevance).all() and np.abs(result.relevance).max() > 0
    with torch.no_grad():
        expected = vgg(images)
    np.testing.assert_allclose(result.logits, expected.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(result.probabilities, torch.softmax(expected, 1).numpy(), rtol=1e-4, atol=1e-6)


def test_probabilities_come_from_the_explained_forward_pass(vgg: nn.Module, images: torch.Tensor) -> None:
    """The model copy runs exactly once per call: no second forward for classification."""
    calls = []
    with Explainer(vgg, "lrp") as explainer:
        handle = explainer.model.register_forward_hook(lambda *_: calls.append(1))
        explainer(images)
        handle.remove()
    assert len(calls) == 1


def test_targets(vgg: nn.Module, images: torch.Tensor) -> None:
    with Explainer(vgg, "lrp") as explainer:
        default = explainer(images)
        one = explainer(images, target=1)
        zero = explainer(images, target=0)
        mixed = explainer(images, target=torch.tensor([0, 1, 0]))
    np.testing.assert_array_equal(default.relevance, one.relevance)
    assert list(mixed.target) == [0, 1, 0]
    np.testing.assert_allclose(mixed.relevance[0], zero.relevance[0], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(mixed.relevance[1], one.relevance[1], rtol=1e-5, atol=1e-9)
    assert not np.allclose(zero.relevance, one.relevance)
    with Explainer(vgg, "lrp", target_class=0) as explainer:
        np.testing.assert_array_equal(explainer(images).relevance, zero.relevance)
    with pytest.raises(ValueError, match="out of range"):
        Explainer(vgg, "lrp")(images, target=5)
    with pytest.raises(ValueError, match="entries"):
        Explainer(vgg, "lrp")(images, target=torch.tensor([0, 1]))


def test_target_class_defaults_to_model_card(vgg: nn.Module, images: torch.Tensor) -> None:
    class Card:
        tumour_index = 0
        mean = (0.5, 0.5, 0.5)
        std = (0.25, 0.25, 0.25)

    vgg.pathxai_card = Card()  # type: ignore[assignment]
    with Explainer(vgg, "lrp") as explainer:
        assert explainer.target_class == 0
        assert list(explainer(images).target) == [0, 0, 0]


def test_invalid_method_lists_valid_names(vgg: nn.Module) -> None:
    with pytest.raises(ValueError, match=r"valid methods: .*lrp.*smoothgrad"):
        Explainer(vgg, "lrp_bogus")
    with pytest.raises(ValueError, match="does not take"):
        Explainer(vgg, "gradient", gamma=0.5)


def test_bad_input_is_a_value_error(vgg: nn.Module) -> None:
    with Explainer(vgg, "lrp") as explainer:
        with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
            explainer(torch.zeros(3, 32, 32))
        with pytest.raises(ValueError, match="float"):
            explainer(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))


def test_model_lrp_cannot_handle_is_an_explain_error() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.LayerNorm([4, 6, 6]), nn.Flatten(), nn.Linear(144, 2))
    with pytest.raises(ExplainError, match="LayerNorm"):
        Explainer(model, "lrp")
    Explainer(model, "gradient").close()  # gradient methods still work
    with pytest.raises(ExplainError, match="no convolution or linear"):
        Explainer(nn.Sequential(nn.Flatten()), "lrp")


def test_non_logit_output_is_an_explain_error() -> None:
    model = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1))
    with Explainer(model, "lrp") as explainer, pytest.raises(ExplainError, match="logits"):
        explainer(torch.randn(1, 3, 8, 8))


@pytest.mark.parametrize("method", ["lrp", "lrp_zennit"])
def test_user_model_untouched_and_hooks_removed(method: str) -> None:
    model = tv_resnet18()
    before_state = copy.deepcopy(model.state_dict())
    before_hooks = hook_state(model)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        before_out = model(x)
    explainer = Explainer(model, method)
    inner = explainer.model
    assert any(n + p for _, n, p, _ in hook_state(inner))
    explainer(x)
    explainer.close()
    # the caller's model: same parameters, buffers, hooks, outputs, forward method; BN not fused
    after_state = model.state_dict()
    assert all(torch.equal(before_state[k], after_state[k]) for k in before_state)
    assert hook_state(model) == before_hooks
    assert "forward" not in model.layer1[0].__dict__
    assert all(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        assert torch.equal(model(x), before_out)
    # the private copy: every hook gone
    assert all(n == p == b == 0 for _, n, p, b in hook_state(inner))
    with pytest.raises(RuntimeError, match="closed"):
        explainer(x)
    explainer.close()  # idempotent


def test_explain_one_shot_equals_explainer(vgg: nn.Module, images: torch.Tensor) -> None:
    with Explainer(vgg, "lrp") as explainer:
        expected = explainer(images)
    got = explain(vgg, images)
    np.testing.assert_array_equal(got.relevance, expected.relevance)
    got = explain(vgg, images, 0, method="gradient")
    assert got.method == "gradient" and list(got.target) == [0, 0, 0]


def test_batch_splitting_channels_last_and_inference_mode(vgg: nn.Module, images: torch.Tensor) -> None:
    with Explainer(vgg, "lrp") as explainer:
        expected = explainer(images)
    with Explainer(vgg, "lrp", batch_size=2) as explainer:
        np.testing.assert_allclose(explainer(images).relevance, expected.relevance, rtol=1e-5, atol=1e-8)
    with Explainer(vgg, "lrp", channels_last=False) as explainer:
        np.testing.assert_allclose(explainer(images).relevance, expected.relevance, rtol=1e-4, atol=1e-7)
    with Explainer(vgg, "lrp") as explainer, torch.inference_mode():
        np.testing.assert_array_equal(explainer(images).relevance, expected.relevance)
    with Explainer(vgg, "lrp") as explainer:
        assert len(explainer(images[:0])) == 0


def test_gradient_methods_against_autograd(vgg: nn.Module, images: torch.Tensor) -> None:
    x = images.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(vgg(x)[:, 1].sum(), x)
    np.testing.assert_allclose(
        explain(vgg, images, method="gradient").relevance, grad.sum(1).numpy(), rtol=1e-4, atol=1e-7
    )
    gxi = explain(vgg, images, method="gradient_x_input").relevance
    np.testing.assert_allclose(gxi, (grad * images).sum(1).numpy(), rtol=1e-4, atol=1e-7)
    one = explain(vgg, images, method="smoothgrad", n_iter=1).relevance
    np.testing.assert_allclose(one, grad.sum(1).numpy(), rtol=1e-4, atol=1e-7)
    sg_a = explain(vgg, images, method="smoothgrad", n_iter=4, seed=3).relevance
    sg_b = explain(vgg, images, method="smoothgrad", n_iter=4, seed=3).relevance
    np.testing.assert_array_equal(sg_a, sg_b)
    assert not np.allclose(sg_a, one)


def test_integrated_gradients_completeness(vgg: nn.Module, images: torch.Tensor) -> None:
    """IG sums to f(x) - f(baseline) (up to the Riemann error)."""
    images = images[:, :, :16, :16]
    result = explain(vgg, images, method="integrated_gradients", n_iter=32)
    with torch.no_grad():
        delta = vgg(images)[:, 1] - vgg(torch.zeros_like(images))[:, 1]
    np.testing.assert_allclose(result.relevance.reshape(3, -1).sum(1), delta.numpy(), rtol=0.05, atol=2e-3)


def test_register_method_adds_a_named_method(vgg: nn.Module, images: torch.Tensor) -> None:
    @register_method("test_constant")
    class Constant(Method):
        def __call__(self, x: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.model(x), torch.ones_like(x)

    try:
        result = explain(vgg, images, method="test_constant")
        assert np.all(result.relevance == 3.0)
    finally:
        METHODS.pop("test_constant")


@pytest.mark.parametrize("method", ["lrp_epsilon_gamma_box", "lrp_epsilon_alpha2_beta1_flat", "smoothgrad"])
def test_hooks_removed_for_other_methods(vgg: nn.Module, images: torch.Tensor, method: str) -> None:
    before = hook_state(vgg)
    explainer = Explainer(vgg, method, **({"n_iter": 2} if method == "smoothgrad" else {}))
    inner = explainer.model
    explainer(images)
    explainer.close()
    assert hook_state(vgg) == before
    assert all(n == p == b == 0 for _, n, p, b in hook_state(inner))


def test_works_inside_caller_no_grad(vgg: nn.Module, images: torch.Tensor) -> None:
    with Explainer(vgg, "lrp") as explainer:
        expected = explainer(images)
        with torch.no_grad():
            np.testing.assert_array_equal(explainer(images).relevance, expected.relevance)
