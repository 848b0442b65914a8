"""Self-supervised segmentation of synthetic anomalies (the DRAEM / NSA / CutPaste family), from normal images
alone: no pretrained weights, no texture set to download.

Training makes its own defects out of the normal batch: a blob mask (low-resolution noise, smoothed and
thresholded to cover 1-12% of the image) or thin straight strokes (one to three segments, 1-4% of the side
thick: the scratches, cracks and cuts of real parts, CutPaste's "scar"), over which the image is blended with
another image of the batch moved and rotated, with a brightness/contrast-changed copy of itself, or with its
own mirror image moved. A small U-Net learns to segment those masks (focal + dice loss). At inference its
output, the per-pixel probability of "not normal", is the anomaly map that the scorer blurs, normalises and
reduces to the image score like any error map. Unlike a reconstruction autoencoder it does not have to reproduce
a texture to notice that a patch does not belong, which is what textured surfaces need.

With `visible_change` > 0 a pixel's label is instead how visible the change is there: the difference of 5x5
local means between the defective and the original image, full at `visible_change` (NSA's lesson that a patch
of another normal image often looks normal). On ELPV that lifted 15 epochs from 0.594 to 0.658 AUROC, on MVTec
bottle it cost 0.997 -> 0.963, so it is off by default.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Optional

import torch
import torch.nn.functional as F
from torch import nn

from edgeanom.models.base import AnomalyModel, ReconLoss, check_divisible
from edgeanom.models.registry import register

STAGES = 3
VAL_SEED = 20_240_601  # validation defects are the same every epoch, so the best epoch is chosen fairly


def _block(i: int, o: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(i, o, 3, stride, 1, bias=False),
        nn.BatchNorm2d(o),
        nn.ReLU(inplace=True),
        nn.Conv2d(o, o, 3, 1, 1, bias=False),
        nn.BatchNorm2d(o),
        nn.ReLU(inplace=True),
    )


@register
class SyntheticAnomalySegmenter(AnomalyModel):
    """A three-stage U-Net (`width` channels at full resolution) that outputs the anomaly map [N, H, W]."""

    type_name = "synth-seg"
    kinds = ("image",)
    output_name = "error_map"
    defaults: ClassVar[dict[str, Any]] = {
        "width": 16,
        "anomaly_fraction": 0.7,
        "max_area": 0.12,
        "line_fraction": 0.5,
        "visible_change": 0.0,
    }

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        c = self.input_shape[0]
        check_divisible(self.input_shape, STAGES, self.type_name)
        w = int(params["width"])
        self.e1 = _block(c, w, 1)
        self.e2 = _block(w, 2 * w, 2)
        self.e3 = _block(2 * w, 4 * w, 2)
        self.e4 = _block(4 * w, 4 * w, 2)
        self.d3, self.d2, self.d1 = _block(8 * w, 2 * w, 1), _block(4 * w, w, 1), _block(2 * w, w, 1)
        self.head = nn.Conv2d(w, 1, 1)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        a = self.e1(x)
        b = self.e2(a)
        c = self.e3(b)
        u = self.e4(c)
        for skip, block in ((c, self.d3), (b, self.d2), (a, self.d1)):
            u = block(torch.cat([F.interpolate(u, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
        return self.head(u)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x))

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        gen = None if self.training else torch.Generator(device="cpu").manual_seed(VAL_SEED)
        defective, mask = synthesize(
            x,
            gen,
            fraction=float(self.params["anomaly_fraction"]),
            max_area=float(self.params["max_area"]),
            line_fraction=float(self.params["line_fraction"]),
            visible_change=float(self.params["visible_change"]),
        )
        return segmentation_loss(self.logits(defective), mask)


def segmentation_loss(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Focal loss (gamma 2, weighted 10) plus soft dice: the defects are small, most pixels are easy. `mask`
    may be soft (labels in [0, 1])."""
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, mask, reduction="none")
    pt = p * mask + (1 - p) * (1 - mask)
    focal = ((1 - pt) ** 2 * bce).mean()
    dice = 1 - (2 * (p * mask).sum() + 1) / (p.sum() + mask.sum() + 1)
    return 10 * focal + dice


def _rand(shape: Sequence[int], gen: Optional[torch.Generator]) -> torch.Tensor:
    return torch.rand(*shape, generator=gen)


def blob_masks(n: int, h: int, w: int, gen: Optional[torch.Generator], max_area: float) -> torch.Tensor:
    """[n, h, w] 0/1 masks: smooth noise at a random coarse scale, thresholded to cover 1% .. max_area."""
    scale = int([4, 8, 16][int(_rand([1], gen) * 3)])
    noise = F.interpolate(_rand([n, 1, scale, scale], gen), size=(h, w), mode="bicubic", align_corners=False)[
        :, 0
    ]
    area = 0.01 + (max_area - 0.01) * _rand([n, 1], gen)
    ordered = noise.reshape(n, -1).sort(dim=1).values
    at = ((1 - area.clamp(0.0, 1.0)) * (h * w - 1)).long()
    level = ordered.gather(1, at)
    return (noise > level.view(n, 1, 1)).float()


def line_masks(n: int, h: int, w: int, gen: Optional[torch.Generator], segments: int = 3) -> torch.Tensor:
    """[n, h, w] 0/1 masks of one to `segments` straight strokes each: random start, direction and length
    (15-80% of the longer side), thickness 1-4% of the shorter side (at least one pixel)."""
    side, short = float(max(h, w)), float(min(h, w))
    start = _rand([n, segments, 2], gen) * torch.tensor([h, w], dtype=torch.float32)
    angle = _rand([n, segments], gen) * torch.pi
    length = side * (0.15 + 0.65 * _rand([n, segments], gen))
    direction = torch.stack([torch.sin(angle), torch.cos(angle)], dim=-1)
    end = start + direction * length.unsqueeze(-1)
    half = (0.5 * short * (0.01 + 0.03 * _rand([n, segments], gen))).clamp(min=0.5)
    used = torch.arange(segments).view(1, -1) <= (_rand([n, 1], gen) * segments).long()
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float32) + 0.5, torch.arange(w, dtype=torch.float32) + 0.5, indexing="ij"
    )
    pixel = torch.stack([yy, xx], dim=-1).view(1, 1, h * w, 2)
    seg = (end - start).unsqueeze(2)  # [n, s, 1, 2]
    along = ((pixel - start.unsqueeze(2)) * seg).sum(-1) / (seg * seg).sum(-1).clamp(min=1e-6)
    nearest = start.unsqueeze(2) + along.clamp(0.0, 1.0).unsqueeze(-1) * seg
    dist = (pixel - nearest).norm(dim=-1)  # [n, s, h*w]
    hit = (dist <= half.unsqueeze(-1)) & used.unsqueeze(-1)
    return hit.any(dim=1).view(n, h, w).float()


def synthesize(
    x: torch.Tensor,
    gen: Optional[torch.Generator] = None,
    fraction: float = 0.7,
    max_area: float = 0.12,
    line_fraction: float = 0.0,
    visible_change: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normal images [N, C, H, W] in [0, 1] -> (images with synthetic defects, their labels [N, H, W]).
    A share `fraction` of the batch gets a defect (of those, a share `line_fraction` thin strokes, the rest
    blobs); the rest stays normal (label 0). With `visible_change` > 0 a defect pixel's label is
    min(1, local mean change / visible_change), else 1."""
    n, c, h, w = x.shape
    cpu = x.detach().cpu()
    masks = blob_masks(n, h, w, gen, max_area)
    if line_fraction > 0:
        masks = torch.where(_rand([n, 1, 1], gen) < line_fraction, line_masks(n, h, w, gen), masks)
    masks = masks * (_rand([n, 1, 1], gen) < fraction).float()
    shift = (int(_rand([1], gen) * h), int(_rand([1], gen) * w))
    other = torch.roll(torch.roll(cpu, 1, dims=0), shifts=shift, dims=(2, 3))
    other = torch.rot90(other, int(_rand([1], gen) * 4), dims=(2, 3)) if h == w else other
    gain = 0.3 + 1.4 * _rand([n, 1, 1, 1], gen)
    jitter = (cpu * gain + 0.6 * (_rand([n, c, 1, 1], gen) - 0.5)).clamp(0.0, 1.0)
    mirror = torch.roll(torch.flip(cpu, dims=(2, 3)), shifts=shift, dims=(2, 3))
    kind = (_rand([n], gen) * 3).long().view(n, 1, 1, 1)
    source = torch.where(kind == 0, other, torch.where(kind == 1, jitter, mirror))
    beta = 0.7 * _rand([n, 1, 1, 1], gen)  # how much of the original shows through the defect
    m = masks.unsqueeze(1)
    defective = (1 - m) * cpu + m * ((1 - beta) * source + beta * cpu)
    if visible_change > 0:
        masks = masks * visibility(defective, cpu, visible_change)
    return defective.to(x.device), masks.to(x.device)


def visibility(changed: torch.Tensor, original: torch.Tensor, full_at: float, size: int = 5) -> torch.Tensor:
    """[N, H, W] in [0, 1]: the largest per-channel difference of size x size local means between two image
    batches [N, C, H, W], divided by `full_at` and clipped. Local means, not pixels: a shifted patch of the
    same texture changes every pixel but not what the surface looks like."""
    mean = F.avg_pool2d(changed - original, size, stride=1, padding=size // 2, count_include_pad=False)
    return (mean.abs().amax(dim=1) / full_at).clamp(0.0, 1.0)
