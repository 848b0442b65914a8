"""Models for images: convolutional autoencoder and convolutional VAE."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from edgeanom.models.base import (
    LOGVAR_RANGE,
    AnomalyModel,
    ConvDecoder,
    ConvEncoder,
    ReconLoss,
    check_divisible,
    vae_loss,
)
from edgeanom.models.registry import register


def conv_geometry(model: AnomalyModel, params: dict[str, Any]) -> tuple[int, list[int], tuple[int, int, int]]:
    """(input channels, encoder widths, bottleneck shape) of a strided-conv backbone over `model`'s input;
    the input size must halve cleanly once per stage."""
    c, h, w = model.input_shape
    channels = [int(ch) for ch in params["channels"]]
    check_divisible(model.input_shape, len(channels), model.type_name)
    return c, channels, (channels[-1], h // 2 ** len(channels), w // 2 ** len(channels))


@register
class ConvAE(AnomalyModel):
    """Convolutional autoencoder with a dense bottleneck (latent 0 keeps a spatial bottleneck instead)."""

    type_name = "conv-ae"
    kinds = ("image",)
    defaults: ClassVar[dict[str, Any]] = {"channels": [32, 64, 128, 128], "latent": 128, "decoder_kernel": 4}
    saved_before: ClassVar[dict[str, Any]] = {"decoder_kernel": 4}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        c, channels, self.inner = conv_geometry(self, params)
        self.encoder = ConvEncoder(c, channels)
        self.decoder = ConvDecoder(c, channels, int(params["decoder_kernel"]))
        latent = int(params["latent"])
        flat = math.prod(self.inner)
        self.to_latent = nn.Linear(flat, latent) if latent else None
        self.from_latent = nn.Sequential(nn.Linear(latent, flat), nn.LeakyReLU(0.2)) if latent else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        if self.to_latent is not None and self.from_latent is not None:
            h = self.from_latent(self.to_latent(h.flatten(1))).view(-1, *self.inner)
        return self.decoder(h)


@register
class ConvVAE(AnomalyModel):
    """Convolutional VAE: the ConvAE backbone with a Gaussian latent; decodes the mean at inference."""

    type_name = "conv-vae"
    kinds = ("image",)
    defaults: ClassVar[dict[str, Any]] = {"channels": [32, 64, 128, 128], "latent": 128, "beta": 1.0}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        c, channels, self.inner = conv_geometry(self, params)
        flat = math.prod(self.inner)
        latent = int(params["latent"])
        self.conv = ConvEncoder(c, channels)
        self.mu = nn.Linear(flat, latent)
        self.logvar = nn.Linear(flat, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, flat), nn.LeakyReLU(0.2), nn.Unflatten(1, self.inner), ConvDecoder(c, channels)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x).flatten(1)
        return self.mu(h), self.logvar(h).clamp(*LOGVAR_RANGE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x)[0])

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        return vae_loss(self, x, recon_loss)
