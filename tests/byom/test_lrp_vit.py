"""LRP for timm ViTs (AttnLRP, pathxai.explain.attnlrp): an independent reference, conservation, sanity checks.

Conservation tolerances (float64, randomly initialised ViT-Tiny at 224 px):

* CP-LRP (attention weights constant) with every bias, the position embedding and the class token zero and
  epsilon 1e-30: every rule left is conservative (epsilon on bias-free linear layers, the identity rule of
  LayerNorm and GELU, the z-rule of residual sums, value-only attention), so the input relevance sums to the
  logit to float64 rounding: 1e-9 relative.
* AttnLRP: its softmax rule ``R_x = x (R_s - s sum(R_s))`` is not conservative by design (the second term is
  the softmax's bias, Achtibat et al. 2024, Prop. 3.1). On a random ViT the attention is nearly uniform, so
  the scores carry little relevance and about half of what enters each attention's ``attn @ v`` product is
  absorbed: the sum is ~0.45-0.5 of the logit there. It is checked against the reference below instead.
* With the model's biases (the default), biases, the position embedding and the class token absorb their
  share; only finiteness is asserted.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn

from pathxai.errors import ExplainError
from pathxai.explain import Explainer, explain
from pathxai.explain.attnlrp import attnlrp_copy
from pathxai.explain.methods import make_method

timm = pytest.importorskip("timm")
Tensor = torch.Tensor


def _vit(seed: int = 0, **kwargs: object) -> nn.Module:
    torch.manual_seed(seed)
    options: dict[str, object] = {"num_classes": 2, **kwargs}
    return timm.create_model("vit_tiny_patch16_224", **options).eval()


def _tiny_vit(seed: int = 0) -> nn.Module:
    """Two blocks, 16 dims, two heads, 2 x 2 patches: small enough for the explicit reference."""
    from timm.models.vision_transformer import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(
        img_size=32, patch_size=16, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0, num_classes=2
    )
    with torch.no_grad():  # timm starts biases and the tokens at zero: make every term count
        for name, p in model.named_parameters():
            if name.endswith("bias") or "token" in name or "pos_embed" in name:
                p.copy_(0.1 * torch.randn_like(p))
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    return model.eval().double()


def _zero_offsets(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "pos_embed" in name or "cls_token" in name:
                p.zero_()
    return model


def _relevance(model: nn.Module, x: Tensor, target: Tensor, **options: object) -> tuple[Tensor, Tensor]:
    """``(logits, relevance)`` in the model's dtype (the Explainer returns float32)."""
    method = make_method("lrp", model, **options)
    try:
        return method(x, target)
    finally:
        method.close()


# ------------------------------------------------------------------------------------------------------
# an independent reference: the AttnLRP rules written out relevance by relevance, divisions and all
# ------------------------------------------------------------------------------------------------------


def _stab(z: Tensor, eps: float) -> Tensor:
    return torch.where(z >= 0, z + eps, z - eps)


def _linear(x: Tensor, layer: nn.Linear, relevance: Tensor, eps: float) -> Tensor:
    z = F.linear(x, layer.weight, layer.bias)
    return x * ((relevance / _stab(z, eps)) @ layer.weight)


def _layer_norm(x: Tensor, norm: nn.LayerNorm) -> tuple[Tensor, Callable[[Tensor], Tensor]]:
    """Forward of LayerNorm and its rule: the z-rule of the affine map with the standard deviation fixed."""
    d = x.shape[-1]
    std = torch.sqrt(x.var(-1, unbiased=False, keepdim=True) + norm.eps)
    centre = torch.eye(d, dtype=x.dtype) - 1.0 / d  # x - mean(x) = x @ centre
    y = (x @ centre) / std * norm.weight + norm.bias

    def rule(relevance: Tensor) -> Tensor:
        # y_j = sum_i x_i A_ij + b_j with A = centre * weight / std: R_i = x_i sum_j A_ij R_j / y_j
        return x * (((relevance / y) * norm.weight / std) @ centre.T)

    return y, rule


def _sum(a: Tensor, b: Tensor, relevance: Tensor) -> tuple[Tensor, Tensor]:
    share = relevance / (a + b)
    return a * share, b * share


def _product(a: Tensor, b: Tensor, relevance: Tensor, split: float) -> tuple[Tensor, Tensor]:
    """``a @ b``: each factor gets ``split`` of each term ``a_ij b_jk R_ik / out_ik``."""
    ratio = relevance / (a @ b)
    return split * a * (ratio @ b.transpose(-2, -1)), split * b * (a.transpose(-2, -1) @ ratio)


def _reference(model: nn.Module, x: Tensor, target: int, eps: float, attention: str) -> Tensor:
    """AttnLRP (or CP-LRP) of a timm ViT with class-token pooling, in explicit relevance form."""
    batch, proj = x.shape[0], model.patch_embed.proj
    side = proj.kernel_size[0]
    patches = F.unfold(x, side, stride=side).transpose(1, 2)  # (B, L, 3 p p)
    embed = nn.Linear(patches.shape[-1], proj.out_channels).double()
    embed.weight.data = proj.weight.reshape(proj.out_channels, -1)
    embed.bias.data = proj.bias
    tokens = embed(patches)
    seq = torch.cat([model.cls_token.expand(batch, -1, -1), tokens], 1)
    h = seq + model.pos_embed
    tape = []
    for blk in model.blocks:
        att = blk.attn
        a_in, norm1 = _layer_norm(h, blk.norm1)
        heads, hd = att.num_heads, att.head_dim
        qkv = att.qkv(a_in).reshape(batch, -1, 3, heads, hd).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0] * att.scale, qkv[1], qkv[2]
        scores = q @ k.transpose(-2, -1)
        attn = scores.softmax(-1)
        ctx = attn @ v
        merged = ctx.transpose(1, 2).reshape(batch, -1, heads * hd)
        h1 = h + att.proj(merged)
        m_in, norm2 = _layer_norm(h1, blk.norm2)
        f1 = blk.mlp.fc1(m_in)
        h2 = h1 + blk.mlp.fc2(F.gelu(f1))
        tape.append((h, a_in, norm1, q, k, v, scores, attn, merged, h1, m_in, norm2, f1))
        h = h2
    final, norm = _layer_norm(h, model.norm)
    logits = model.head(final[:, 0])

    r_logits = torch.zeros_like(logits)
    r_logits[:, target] = logits[:, target]
    r_h = torch.zeros_like(final)
    r_h[:, 0] = _linear(final[:, 0], model.head, r_logits, eps)
    r_h = norm(r_h)
    for blk, (h0, a_in, norm1, q, k, v, scores, attn, merged, h1, m_in, norm2, f1) in zip(
        reversed(model.blocks), reversed(tape), strict=True
    ):
        r_h1, r_mlp = _sum(h1, blk.mlp.fc2(F.gelu(f1)), r_h)
        r_act = _linear(F.gelu(f1), blk.mlp.fc2, r_mlp, eps)
        r_h1 = r_h1 + norm2(_linear(m_in, blk.mlp.fc1, r_act, eps))  # GELU: identity rule
        r_h0, r_att = _sum(h0, blk.attn.proj(merged), r_h1)
        r_merged = _linear(merged, blk.attn.proj, r_att, eps)
        r_ctx = r_merged.reshape(batch, -1, blk.attn.num_heads, blk.attn.head_dim).transpose(1, 2)
        if attention == "cp":
            r_attn, r_v = torch.zeros_like(attn), _product(attn, v, r_ctx, 1.0)[1]
        else:
            r_attn, r_v = _product(attn, v, r_ctx, 0.5)
        r_scores = scores * (r_attn - attn * r_attn.sum(-1, keepdim=True))  # AttnLRP's softmax rule
        r_q, r_kt = _product(q, k.transpose(-2, -1), r_scores, 0.5)  # q * scale: relevance unchanged
        r_qkv = (
            torch.stack([r_q, r_kt.transpose(-2, -1), r_v])
            .permute(1, 3, 0, 2, 4)
            .reshape(batch, -1, 3 * blk.attn.num_heads * blk.attn.head_dim)
        )
        r_h = r_h0 + norm1(_linear(a_in, blk.attn.qkv, r_qkv, eps))
    r_seq, _ = _sum(seq, model.pos_embed.expand_as(seq), r_h)
    r_patches = _linear(patches, embed, r_seq[:, 1:], eps)
    return F.fold(r_patches.transpose(1, 2), x.shape[-2:], side, stride=side)


@pytest.mark.parametrize("attention", ["attnlrp", "cp"])
def test_attnlrp_equals_the_explicit_reference(attention: str) -> None:
    """Every rule (epsilon, LayerNorm, GELU, sums, uniform products, softmax) against its written-out form."""
    model = _tiny_vit()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    eps = 0.05  # large, so that a missing or misplaced stabiliser shows
    _, relevance = _relevance(model, x, torch.tensor([1, 1]), epsilon=eps, attention=attention)
    with torch.no_grad():
        expected = _reference(model, x, 1, eps, attention)
    assert expected.abs().max() > 0
    torch.testing.assert_close(relevance, expected, rtol=1e-9, atol=1e-12 * float(expected.abs().max()))


def test_the_copy_computes_the_same_logits() -> None:
    model = _vit().double()
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = model(x)
    logits, _ = _relevance(model, x, torch.tensor([0, 1]))
    torch.testing.assert_close(logits, expected, rtol=1e-10, atol=1e-10)


def test_cp_lrp_conserves_relevance_at_224_px() -> None:
    model = _zero_offsets(_vit()).double()
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([1, 0])
    logits, relevance = _relevance(model, x, target, epsilon=1e-30, attention="cp")
    explained = logits[torch.arange(2), target]
    assert bool((explained.abs() > 1e-3).all()), "degenerate test: logits near zero"
    torch.testing.assert_close(relevance.sum((1, 2, 3)), explained, rtol=1e-9, atol=0)


def test_attnlrp_loses_relevance_only_in_the_softmax() -> None:
    """Same bias-free ViT, AttnLRP: only the softmax's bias term absorbs (see the module docs)."""
    model = _zero_offsets(_vit()).double()
    x = torch.randn(2, 3, 224, 224, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    target = torch.tensor([1, 0])
    logits, relevance = _relevance(model, x, target, epsilon=1e-30)
    ratio = relevance.sum((1, 2, 3)) / logits[torch.arange(2), target]
    assert bool(((ratio > 0.3) & (ratio < 0.7)).all()), ratio
    with_biases = explain(_vit(), x.float(), target=target)
    assert np.isfinite(with_biases.relevance).all() and np.abs(with_biases.relevance).max() > 0


def test_relevance_is_not_the_plain_gradient_x_input() -> None:
    model = _vit(img_size=64)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(4))
    lrp = explain(model, x, target=1).relevance
    plain = explain(model, x, target=1, method="gradient_x_input").relevance
    assert np.abs(lrp - plain).max() > 0.1 * np.abs(plain).max()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_relevance_sits_where_occlusion_moves_the_logit(seed: int) -> None:
    """Per 16 px patch, summed relevance ranks the patches as zeroing them moves the logit.

    Measured Spearman: 0.93, 0.83, 0.73 for these inputs (gradient x input: 0.48, 0.71, 0.29); a rule that
    sent relevance to the wrong tokens (a wrong reshape of heads, a swapped product) ranks them at random.
    """
    model = _vit(img_size=64)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        base = float(model(x)[0, 1])
        drops = []
        for i in range(4):
            for j in range(4):
                occluded = x.clone()
                occluded[:, :, 16 * i : 16 * i + 16, 16 * j : 16 * j + 16] = 0
                drops.append(base - float(model(occluded)[0, 1]))
    per_patch = explain(model, x, target=1).relevance[0].reshape(4, 16, 4, 16).sum((1, 3)).ravel()
    assert spearmanr(per_patch, drops)[0] > 0.6


def test_model_randomisation_changes_the_map() -> None:
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    first = explain(_vit(0, img_size=64), x, target=1).relevance.ravel()
    for seed in (1, 2):
        other = explain(_vit(seed, img_size=64), x, target=1).relevance.ravel()
        assert spearmanr(np.abs(first), np.abs(other))[0] < 0.5


def test_head_on_a_backbone_and_the_explainer_options() -> None:
    """The foundation-model case (backbone + linear head), float32, batches split, channels_last."""
    from pathxai.model.external import LinearHeadModel

    torch.manual_seed(0)
    model = LinearHeadModel(_vit(num_classes=0, img_size=64), nn.Linear(192, 2)).eval()
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(6))
    with Explainer(model, "lrp", batch_size=2) as explainer:
        assert explainer._impl.canonizer == "attnlrp"  # type: ignore[union-attr]
        result = explainer(x)
    with Explainer(model, "lrp", channels_last=False) as explainer:
        whole = explainer(x)
    np.testing.assert_allclose(result.relevance, whole.relevance, rtol=1e-4, atol=1e-6)
    assert result.relevance.shape == (3, 64, 64) and np.isfinite(result.relevance).all()


def test_the_callers_model_is_untouched() -> None:
    model = _vit(img_size=64)
    forwards = {name: m.forward for name, m in model.named_modules()}
    copy = attnlrp_copy(model)
    assert {name: m.forward for name, m in model.named_modules()} == forwards
    assert copy is not model and not any(p.requires_grad for p in copy.parameters())


class _Wrapper(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.vit = _vit(img_size=32)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.vit(x))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: _vit(img_size=32, global_pool="max"), r"layer <root> \(VisionTransformer\): 'max' pooling"),
        (lambda: _vit(img_size=32, global_pool="map"), "attention pooling"),
        (lambda: _vit(img_size=32, mlp_layer=timm.layers.SwiGLU), r"blocks\.0\.mlp \(SwiGLU\)"),
        (_Wrapper, r"layer <root> \(_Wrapper\)"),
    ],
)
def test_vit_layers_without_a_rule_stop_with_their_name(build, message: str) -> None:  # type: ignore[no-untyped-def]
    model = build()
    x = torch.randn(1, 3, 32, 32)
    with pytest.raises(ExplainError, match=message):
        explain(model, x, method="lrp")
    assert explain(model, x, method="gradient").relevance.shape == (1, 32, 32)


@pytest.mark.parametrize("method", ["lrp_zennit", "lrp_epsilon_gamma_box", "lrp_epsilon_alpha2_beta1_flat"])
def test_composites_without_attention_rules_refuse_a_vit(method: str) -> None:
    with pytest.raises(ExplainError, match="no rules for attention"):
        explain(_vit(img_size=32), torch.randn(1, 3, 32, 32), method=method)


@pytest.mark.parametrize("fast", [True, False])
def test_filter_lrp_refuses_a_vit_and_prune_says_so_before_reading_data(fast: bool, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathxai.explain.filters import filter_scores
    from pathxai.pipeline.prune import _check_lrp

    model = _vit(img_size=32)
    x = torch.randn(2, 3, 32, 32)
    # neither the fast hooks nor a zennit composite give relevance at a ViT's units
    with pytest.raises(ExplainError, match="not available for ViTs"):
        filter_scores(model, x, [0, 1], method="lrp", fast=fast)
    assert filter_scores(model, x, [0, 1], method="gradient")  # other scores still work
    with pytest.raises(ExplainError, match=r"'lrp' criterion cannot score this model.*ViTs"):
        _check_lrp(model, ["lrp"], 0, tmp_path / "m")
    _check_lrp(model, ["weight"], 0, tmp_path / "m")  # nothing needs LRP: no error
