"""What every torch detector shares: the AnomalyModel base class and the building blocks of the families.

Every model's `forward(x)` returns exactly what its ONNX graph outputs: the reconstruction (same shape as the
input) for autoencoders and VAEs (a VAE decodes its latent mean, so scores are deterministic), or the embedding
for Deep SVDD. `training_loss(x, recon_loss)` is what the trainer minimises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable

import torch
from torch import nn

from edgeanom.errors import EdgeanomError
from edgeanom.models.registry import ModelInfo

ReconLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOGVAR_RANGE = (-10.0, 10.0)  # keeps exp(logvar) finite early in training


class AnomalyModel(nn.Module, ModelInfo):
    """Base class: a torch detector with its name, its defaults and how its output is scored.

    The class attributes are the model's own settings (`edgeanom.models.registry.ModelInfo`), so no
    caller checks model names: training reads the scaler and weight decay here, the bundle's score section
    comes from `score_section`.
    """

    scores_maps = True

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__()
        self.input_shape = tuple(int(d) for d in input_shape)
        self.params = params

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        return recon_loss(self(x), x)

    def prepare(self, batches: Callable[[], Any]) -> None:
        """Hook run once on the training data before the first epoch (Deep SVDD sets its centre here)."""


# --- building blocks --------------------------------------------------------------------------------------
def mlp(
    sizes: Sequence[int], dropout: float = 0.0, bias: bool = True, act: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """Linear layers between consecutive sizes, each followed by the activation (and dropout)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, bias=bias), act()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over the latent axis, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def check_divisible(shape: Sequence[int], stages: int, model: str) -> None:
    factor = 2**stages
    _c, h, w = shape
    if h % factor or w % factor:
        ok = max(factor, (h // factor) * factor)
        raise EdgeanomError(
            f"{model}: image size {h}x{w} must be divisible by {factor} ({stages} downsampling stages); "
            f"use --image-size {ok} or fewer channels stages"
        )


class ConvEncoder(nn.Module):
    """Strided 4x4 convolutions halving H and W per stage, then (optionally) a dense layer."""

    def __init__(self, in_ch: int, channels: Sequence[int], bias: bool = True, affine: bool = True) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = in_ch
        for ch in channels:
            layers += [
                nn.Conv2d(prev, ch, 4, stride=2, padding=1, bias=bias),
                nn.BatchNorm2d(ch, affine=affine),
                nn.LeakyReLU(0.2),
            ]
            prev = ch
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class ConvDecoder(nn.Module):
    """Mirror of ConvEncoder with transposed convolutions; sigmoid output for [0, 1] pixels.

    `kernel` 4 (stride 2, padding 1: overlapping taps) or 2 (stride 2: each input pixel paints its own 2x2
    block, a quarter of the multiply-adds; ONNX Runtime's CPU ConvTranspose is the slowest layer of the
    4x4 decoder)."""

    def __init__(self, out_ch: int, channels: Sequence[int], kernel: int = 4) -> None:
        super().__init__()
        if kernel not in (2, 4):
            raise EdgeanomError(f"decoder_kernel must be 2 or 4, got {kernel!r}")
        rev = list(channels)[::-1]
        layers: list[nn.Module] = []
        for i, ch in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else out_ch
            layers.append(nn.ConvTranspose2d(ch, nxt, kernel, stride=2, padding=(kernel - 2) // 2))
            if i + 1 < len(rev):
                layers += [nn.BatchNorm2d(nxt), nn.LeakyReLU(0.2)]
        layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


def vae_loss(model: Any, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
    """Per-sample summed reconstruction loss + beta * KL; samples z only in training mode."""
    mu, logvar = model.encode(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if model.training else mu
    per_sample = math.prod(x.shape[1:])
    return recon_loss(model.decoder(z), x) * per_sample + float(model.params["beta"]) * kl_divergence(
        mu, logvar
    )
