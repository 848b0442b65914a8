"""ImageNet CNN trunks for the feature-level models: ResNet-18, MobileNetV3 (large, small), EfficientNet-B0.

They are written here, with torchvision's module and parameter names, rather than imported from torchvision:
the torchvision wheel does not import beside the CPU build of torch this project installs, and an edge runtime
should not need it. Because the names match, torchvision's own weight files (`resnet18-f37072fd.pth`, ...) load
with `--backbone-weights FILE`; a state dict is read with `torch.load(weights_only=True)`, which runs no code.
Nothing is downloaded: without a weights file the trunk keeps its seeded random initialisation.

A trunk returns the feature maps at its three taps: strides 8, 16 and 32 (the last after the final 1x1 conv
of MobileNet/EfficientNet, which is what their classifiers pool).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from edgeanom.errors import EdgeanomError, first_line

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLASSIFIER_PREFIXES = ("fc.", "classifier.")  # heads the trunk drops; a weights file may carry them


@dataclass(frozen=True)
class TrunkSpec:
    channels: tuple[int, int, int]  # at the stride-8, stride-16 and stride-32 taps
    build: Callable[[], nn.Module]


def _make_divisible(v: float, divisor: int = 8) -> int:
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new_v + divisor if new_v < 0.9 * v else new_v


def _conv_norm_act(
    cin: int,
    cout: int,
    k: int,
    stride: int = 1,
    groups: int = 1,
    act: Optional[Any] = None,
    eps: float = 1e-5,
) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: conv (no bias), batch norm, optional activation; keys .0/.1."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout, eps=eps),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


class _SqueezeExcitation(nn.Module):
    def __init__(self, channels: int, squeeze: int, act: Any, gate: Any) -> None:
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.act, self.gate = act(), gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.adaptive_avg_pool2d(x, 1)
        return x * self.gate(self.fc2(self.act(self.fc1(s))))


class _InvertedResidual(nn.Module):
    """MobileNetV3's InvertedResidual and EfficientNet's MBConv: expand, depthwise, squeeze-excite, project."""

    def __init__(
        self, cin: int, k: int, exp: int, cout: int, stride: int, act: Any, se: Optional[Any], eps: float
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(_conv_norm_act(cin, exp, 1, act=act, eps=eps))
        layers.append(_conv_norm_act(exp, exp, k, stride, groups=exp, act=act, eps=eps))
        if se is not None:
            layers.append(se(exp, cin))
        layers.append(_conv_norm_act(exp, cout, 1, eps=eps))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


class _FeatureTrunk(nn.Module):
    """`features` (an nn.Sequential, as torchvision names it) with taps after three of its indices."""

    def __init__(self, features: Sequence[nn.Module], taps: tuple[int, int, int]) -> None:
        super().__init__()
        self.features = nn.Sequential(*features)
        self.taps = taps

    def forward(self, x: torch.Tensor, depth: int = 3) -> list[torch.Tensor]:
        out: list[torch.Tensor] = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in self.taps:
                out.append(x)
                if len(out) == depth:
                    break
        return out


# --- ResNet-18 -----------------------------------------------------------------------------------------------
class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(y + (x if self.downsample is None else self.downsample(x)))


class ResNet18Trunk(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        widths = (64, 64, 128, 256, 512)
        for i in range(1, 5):
            stride = 1 if i == 1 else 2
            blocks = [_BasicBlock(widths[i - 1], widths[i], stride), _BasicBlock(widths[i], widths[i], 1)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))

    def forward(self, x: torch.Tensor, depth: int = 3) -> list[torch.Tensor]:
        x = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        out: list[torch.Tensor] = []
        for layer in (self.layer2, self.layer3, self.layer4)[:depth]:
            x = layer(x)
            out.append(x)
        return out


# --- MobileNetV3 ---------------------------------------------------------------------------------------------
# (input, kernel, expanded, output, squeeze-excite, hard-swish, stride), torchvision's tables
_MOBILENET_V3_LARGE = [
    (16, 3, 16, 16, False, False, 1),
    (16, 3, 64, 24, False, False, 2),
    (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2),
    (40, 5, 120, 40, True, False, 1),
    (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2),
    (80, 3, 200, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1),
    (80, 3, 480, 112, True, True, 1),
    (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2),
    (160, 5, 960, 160, True, True, 1),
    (160, 5, 960, 160, True, True, 1),
]
_MOBILENET_V3_SMALL = [
    (16, 3, 16, 16, True, False, 2),
    (16, 3, 72, 24, False, False, 2),
    (24, 3, 88, 24, False, False, 1),
    (24, 5, 96, 40, True, True, 2),
    (40, 5, 240, 40, True, True, 1),
    (40, 5, 240, 40, True, True, 1),
    (40, 5, 120, 48, True, True, 1),
    (48, 5, 144, 48, True, True, 1),
    (48, 5, 288, 96, True, True, 2),
    (96, 5, 576, 96, True, True, 1),
    (96, 5, 576, 96, True, True, 1),
]


def _mobilenet_v3(table: list[tuple], taps: tuple[int, int, int]) -> _FeatureTrunk:
    eps = 1e-3

    def se(exp: int, _cin: int) -> nn.Module:
        return _SqueezeExcitation(exp, _make_divisible(exp // 4), nn.ReLU, nn.Hardsigmoid)

    layers: list[nn.Module] = [_conv_norm_act(3, 16, 3, 2, act=nn.Hardswish, eps=eps)]
    for cin, k, exp, cout, use_se, hs, stride in table:
        act = nn.Hardswish if hs else nn.ReLU
        layers.append(_InvertedResidual(cin, k, exp, cout, stride, act, se if use_se else None, eps))
    last = table[-1][3]
    layers.append(_conv_norm_act(last, 6 * last, 1, act=nn.Hardswish, eps=eps))
    return _FeatureTrunk(layers, taps)


# --- EfficientNet-B0 -----------------------------------------------------------------------------------------
# (expand ratio, kernel, stride, input, output, layers), torchvision's table for B0
_EFFICIENTNET_B0 = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
]


def _efficientnet_b0() -> _FeatureTrunk:
    def se(exp: int, cin: int) -> nn.Module:
        return _SqueezeExcitation(exp, max(1, cin // 4), nn.SiLU, nn.Sigmoid)

    stages: list[nn.Module] = [_conv_norm_act(3, 32, 3, 2, act=nn.SiLU)]
    for ratio, k, stride, cin, cout, n in _EFFICIENTNET_B0:
        blocks = []
        for i in range(n):
            c = cin if i == 0 else cout
            blocks.append(
                _InvertedResidual(c, k, c * ratio, cout, stride if i == 0 else 1, nn.SiLU, se, 1e-5)
            )
        stages.append(nn.Sequential(*blocks))
    stages.append(_conv_norm_act(320, 1280, 1, act=nn.SiLU))
    return _FeatureTrunk(stages, (3, 5, 8))


TRUNKS: dict[str, TrunkSpec] = {
    "resnet18": TrunkSpec((128, 256, 512), ResNet18Trunk),
    "mobilenet_v3_large": TrunkSpec((40, 112, 960), partial(_mobilenet_v3, _MOBILENET_V3_LARGE, (6, 12, 16))),
    "mobilenet_v3_small": TrunkSpec((24, 48, 576), partial(_mobilenet_v3, _MOBILENET_V3_SMALL, (3, 8, 12))),
    "efficientnet_b0": TrunkSpec((40, 112, 1280), _efficientnet_b0),
}


def trunk_spec(name: str) -> TrunkSpec:
    key = str(name).lower().replace("-", "_")
    if key not in TRUNKS:
        raise EdgeanomError(f"unknown backbone {name!r}; choose one of: {', '.join(TRUNKS)}")
    return TRUNKS[key]


class Backbone(nn.Module):
    """A frozen trunk with ImageNet normalisation in front: [0, 1] RGB or grey input -> three feature maps.

    Always in eval mode (its batch-norm statistics are the pretrained ones) and never trained.
    """

    def __init__(self, name: str, in_channels: int) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise EdgeanomError(
                f"backbone {name!r} takes grey or RGB images, the input has {in_channels} channels"
            )
        spec = trunk_spec(name)
        self.name = name
        self.channels = spec.channels
        self.trunk = spec.build()
        self.in_channels = in_channels
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> Backbone:  # the trunk is frozen: always eval
        return super().train(False)

    def forward(self, x: torch.Tensor, depth: int = 3) -> list[torch.Tensor]:
        if self.in_channels == 1:
            x = x.expand(-1, 3, -1, -1)
        return self.trunk((x - self.mean) / self.std, depth)

    def load_weights(self, path: Any) -> None:
        """Load a torchvision state dict for this architecture (its classifier, if any, is dropped)."""
        self.trunk.load_state_dict(read_trunk_state(Path(path), self.trunk, self.name))


def read_trunk_state(path: Path, trunk: nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The trunk's tensors from a weights file, every key and shape checked, with one-line errors."""
    if not path.is_file():
        raise EdgeanomError(f"--backbone-weights: file '{path}' does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)  # never unpickles code
    except Exception as exc:  # torch raises zip/pickle errors of several types
        raise EdgeanomError(f"{path}: not a readable torch state dict ({first_line(exc)[:200]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EdgeanomError(f"{path}: expected a state dict of tensors (torchvision's weight files are)")
    state = {k: v for k, v in state.items() if not k.startswith(CLASSIFIER_PREFIXES)}
    own = trunk.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        what = f"lacks {missing[0]!r}" if missing else f"has {extra[0]!r}, which {name} has not"
        raise EdgeanomError(
            f"{path}: not {name} weights ({what}; {len(missing)} missing, {len(extra)} unexpected tensors)"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise EdgeanomError(
                f"{path}: tensor {key!r} has shape {tuple(value.shape)}, {name} needs {tuple(own[key].shape)}"
            )
    return {k: v.to(own[k].dtype) for k, v in state.items()}
