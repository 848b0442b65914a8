"""Models for feature vectors: a dense autoencoder and a VAE."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from edgeanom.models.base import (
    LOGVAR_RANGE,
    AnomalyModel,
    ReconLoss,
    mlp,
    vae_loss,
)
from edgeanom.models.registry import register


@register
class DenseAE(AnomalyModel):
    """Fully connected autoencoder for feature vectors; a narrow bottleneck forces it to learn normal structure."""

    type_name = "dense-ae"
    kinds = ("vector",)
    default_for = ("vector",)
    defaults: ClassVar[dict[str, Any]] = {"hidden": [64, 32, 16], "bottleneck": 8, "dropout": 0.2}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        (features,) = self.input_shape
        hidden = [int(h) for h in params["hidden"]]
        drop = float(params["dropout"])
        sizes = [features, *hidden, int(params["bottleneck"])]
        self.encoder = mlp(sizes, drop)
        back = sizes[::-1]
        self.decoder = nn.Sequential(mlp(back[:-1], drop), nn.Linear(back[-2], features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@register
class VAE(AnomalyModel):
    """Variational autoencoder for [0, 1]-scaled vectors: sigmoid output, loss = SSE + beta * KL."""

    type_name = "vae"
    kinds = ("vector",)
    scaler = "minmax"  # the sigmoid output reconstructs [0, 1] features
    defaults: ClassVar[dict[str, Any]] = {"hidden": [64, 32], "latent": 5, "beta": 1.0}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        (features,) = self.input_shape
        hidden = [int(h) for h in params["hidden"]]
        latent = int(params["latent"])
        self.encoder = mlp([features, *hidden])
        self.mu = nn.Linear(hidden[-1], latent)
        self.logvar = nn.Linear(hidden[-1], latent)
        back = [latent, *hidden[::-1]]
        self.decoder = nn.Sequential(mlp(back), nn.Linear(back[-1], features), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(*LOGVAR_RANGE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x)[0])

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        return vae_loss(self, x, recon_loss)
