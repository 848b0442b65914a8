"""Models for sensor windows [T, C]: a 1-D convolutional autoencoder and an LSTM autoencoder."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import torch
from torch import nn

from edgeanom.errors import EdgeanomError
from edgeanom.models.base import (
    AnomalyModel,
)
from edgeanom.models.registry import register


@register
class WindowAE(AnomalyModel):
    """1-D convolutional autoencoder over (time, channels) windows; strided convs in, transposed convs out."""

    type_name = "window-ae"
    kinds = ("window",)
    default_for = ("window",)
    defaults: ClassVar[dict[str, Any]] = {"channels": [32, 16], "kernel": 7, "dropout": 0.2, "latent": 0}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        length, c = self.input_shape
        channels = [int(ch) for ch in params["channels"]]
        k = int(params["kernel"])
        if k % 2 == 0:
            raise EdgeanomError(f"window-ae: kernel must be odd, got {k}")
        pad = k // 2
        self.lengths = [length]  # sequence length after each encoder stage
        enc: list[nn.Module] = []
        prev = c
        for i, ch in enumerate(channels):
            enc += [nn.Conv1d(prev, ch, k, stride=2, padding=pad), nn.ReLU()]
            if i == 0 and float(params["dropout"]) > 0:
                enc.append(nn.Dropout(float(params["dropout"])))
            self.lengths.append((self.lengths[-1] + 1) // 2)
            prev = ch
        self.encoder = nn.Sequential(*enc)
        self.inner_channels = channels[-1]
        latent = int(params["latent"])
        flat = channels[-1] * self.lengths[-1]
        self.bottleneck = (
            nn.Sequential(
                nn.Flatten(), nn.Linear(flat, latent), nn.ReLU(), nn.Linear(latent, flat), nn.ReLU()
            )
            if latent
            else None
        )
        rev = channels[::-1]
        self.up = nn.ModuleList(
            nn.ConvTranspose1d(ch, rev[min(i + 1, len(rev) - 1)], k, stride=2, padding=pad, output_padding=1)
            for i, ch in enumerate(rev)
        )
        self.head = nn.Conv1d(rev[-1], c, k, padding=pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x.transpose(1, 2))
        if self.bottleneck is not None:
            h = self.bottleneck(h).view(-1, self.inner_channels, self.lengths[-1])
        for i, layer in enumerate(self.up):
            h = torch.relu(layer(h))[:, :, : self.lengths[-2 - i]]
        return self.head(h).transpose(1, 2)


@register
class LSTMAE(AnomalyModel):
    """LSTM encoder-decoder: the last encoder state, repeated over time, is decoded back to the window."""

    type_name = "lstm-ae"
    kinds = ("window",)
    defaults: ClassVar[dict[str, Any]] = {"hidden": 64, "latent": 16, "layers": 1}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        _length, c = self.input_shape
        hidden, latent, layers = int(params["hidden"]), int(params["latent"]), int(params["layers"])
        self.encoder = nn.LSTM(c, hidden, num_layers=layers, batch_first=True)
        self.to_latent = nn.Linear(hidden, latent)
        self.decoder = nn.LSTM(latent, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.encoder(x)
        z = self.to_latent(out[:, -1:, :])
        dec, _ = self.decoder(z.expand(-1, x.shape[1], -1))
        return self.head(dec)
