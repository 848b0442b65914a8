"""`frame-pred`, the video model found by the quality benchmarks (docs/quality.md).

`frame-pred`: future-frame prediction for video. The input's channels are consecutive frames, oldest first
(e.g. three grey frames t-2s, t-s, t packed into one 3-channel image); a small U-Net predicts the newest
channel from the older ones and `forward` returns [older channels, prediction]. The Scorer's error map is then
exactly the prediction error of the newest frame (the older channels cancel), so scoring, export, the fused
head and the runtime need nothing new. `gradient_weight` > 0 adds Liu et al.'s gradient-difference term to the
training loss (sharper predictions); off by default: on UCSD Ped2 at weight 1 it lowered the pooled AUROC from
0.882 to 0.832 (docs/quality.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from edgeanom.errors import EdgeanomError
from edgeanom.models.base import AnomalyModel
from edgeanom.models.registry import PACKED_FRAMES, register


def _double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
        nn.Conv2d(cout, cout, 3, padding=1),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


@register
class FramePredictor(AnomalyModel):
    """Two-level U-Net that predicts the newest frame (last channel) from the older ones."""

    type_name = "frame-pred"
    kinds = ("image",)
    default_for = (PACKED_FRAMES,)
    defaults: ClassVar[dict[str, Any]] = {"width": 16, "gradient_weight": 0.0}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        c, h, w = self.input_shape
        if c < 2:
            raise EdgeanomError(
                f"frame-pred needs >= 2 frames as channels, the input has {c} (use color rgb)"
            )
        if h % 4 or w % 4:
            raise EdgeanomError(f"frame-pred: image size {h}x{w} must be divisible by 4")
        k = int(params["width"])
        self.past = c - 1
        self.gradient_weight = float(params["gradient_weight"])
        if not self.gradient_weight >= 0:
            raise EdgeanomError(
                f"frame-pred: gradient_weight must be >= 0, got {params['gradient_weight']!r}"
            )
        self.enc1, self.enc2, self.enc3 = (
            _double_conv(c - 1, k),
            _double_conv(k, 2 * k),
            _double_conv(2 * k, 4 * k),
        )
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * k, 2 * k, 2, stride=2), _double_conv(4 * k, 2 * k)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * k, k, 2, stride=2), _double_conv(2 * k, k)
        self.head = nn.Sequential(nn.Conv2d(k, 1, 1), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        past = x[:, : self.past]
        e1 = self.enc1(past)
        e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
        e3 = self.enc3(nn.functional.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(e3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return torch.cat([past, self.head(d1)], dim=1)

    def training_loss(self, x: torch.Tensor, recon_loss: Any) -> torch.Tensor:
        out = self(x)
        loss = recon_loss(out, x)
        if self.gradient_weight > 0:
            loss = loss + self.gradient_weight * gradient_difference(out[:, -1:], x[:, -1:])
        return loss


def gradient_difference(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean L1 distance between the absolute spatial gradients (x and y) of two NCHW batches."""
    loss = pred.new_zeros(())
    for dim in (2, 3):
        loss = loss + (pred.diff(dim=dim).abs() - target.diff(dim=dim).abs()).abs().mean()
    return loss
