"""Deep SVDD: one-class embedding around a centre, for any input kind."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch
from torch import nn

from edgeanom.models.base import (
    AnomalyModel,
    ConvEncoder,
    ReconLoss,
    check_divisible,
    mlp,
)
from edgeanom.models.registry import register

CENTER_FILE = "center.npy"


class SvddObjective:
    """Deep SVDD's objective and scoring, for any encoder with a `center` buffer and an `eps` parameter:
    the loss and score are the squared distance of the embedding to the centre c, which `prepare` fixes
    before training. Listed before the model's base class (`class M(SvddObjective, AnomalyModel)`)."""

    output_name = "embedding"
    weight_decay = 1e-6
    score_metric = "sse"
    scores_maps = False

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        return (self(x) - self.center).pow(2).sum(dim=1).mean()

    @torch.no_grad()
    def prepare(self, batches: Callable[[], Any]) -> None:
        """The base class's preparation first (a feature model loads its weights and feature statistics:
        the centre lies in their space), then c."""
        super().prepare(batches)
        self.center.copy_(svdd_center(self, batches, float(self.params["eps"])))

    def score_section(self, folder: Path, image_map: Optional[dict[str, Any]]) -> dict[str, Any]:
        """Scored by the squared distance to the centre, which the core broadcasts from center.npy."""
        np.save(folder / CENTER_FILE, self.center.detach().cpu().numpy().astype(np.float32))
        return {"metric": "sse", "center": CENTER_FILE, "map": None}


@register
class DeepSVDD(SvddObjective, AnomalyModel):
    """One-class Deep SVDD: a bias-free encoder pulls normal data towards a fixed centre c.

    Bias terms (and affine batch-norm) are left out so the network cannot map everything to c trivially.
    The score is the squared distance to c, computed by the C++ core from the `embedding` output.
    """

    type_name = "deep-svdd"
    kinds = ("image", "window", "vector")
    defaults: ClassVar[dict[str, Any]] = {
        "hidden": [64, 32],
        "channels": [32, 64, 128],
        "rep_dim": 32,
        "eps": 0.1,
    }

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        rep = int(params["rep_dim"])
        if len(self.input_shape) == 3:
            channels = [int(ch) for ch in params["channels"]]
            check_divisible(self.input_shape, len(channels), self.type_name)
            conv = ConvEncoder(self.input_shape[0], channels, bias=False, affine=False)
            flat = (
                channels[-1]
                * (self.input_shape[1] // 2 ** len(channels))
                * (self.input_shape[2] // 2 ** len(channels))
            )
            self.net = nn.Sequential(conv, nn.Flatten(), nn.Linear(flat, rep, bias=False))
        else:
            sizes = [math.prod(self.input_shape), *[int(h) for h in params["hidden"]]]
            self.net = nn.Sequential(
                nn.Flatten(), mlp(sizes, bias=False, act=nn.LeakyReLU), nn.Linear(sizes[-1], rep, bias=False)
            )
        self.register_buffer("center", torch.zeros(rep))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


@torch.no_grad()
def svdd_center(model: nn.Module, batches: Callable[[], Any], eps: float) -> torch.Tensor:
    """c = mean embedding of the training data; tiny coordinates are pushed to +-eps (avoids collapse)."""
    total, count = None, 0
    for x in batches():
        z = model(x).sum(dim=0)
        total = z if total is None else total + z
        count += x.shape[0]
    if total is None:
        return model.center.clone()
    c = total / max(count, 1)
    return torch.where(c.abs() < eps, torch.where(c < 0, -eps, eps).to(c), c)
