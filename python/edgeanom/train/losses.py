"""Reconstruction losses: plain L2, and SSIM + L2 for images (structure-aware, as in the SSIM autoencoder)."""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from edgeanom.errors import EdgeanomError

LOSSES = ("l2", "ssim+l2")


def l2_loss(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, x)


def _gaussian_window(size: int, sigma: float, channels: int, like: torch.Tensor) -> torch.Tensor:
    coords = torch.arange(size, dtype=like.dtype, device=like.device) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean structural similarity of two NCHW batches with values in [0, 1] (Gaussian window, valid region)."""
    channels = a.shape[1]
    size = min(window, a.shape[2], a.shape[3])
    w = _gaussian_window(size, sigma, channels, a)
    c1, c2 = 0.01**2, 0.03**2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(t, w, groups=channels)

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return s.mean()


def ssim_l2_loss(out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out, x) + (1.0 - ssim(out, x))


def get_loss(name: str, kind: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The reconstruction loss by name; SSIM needs images."""
    if name == "l2":
        return l2_loss
    if name == "ssim+l2":
        if kind != "image":
            raise EdgeanomError(f"loss 'ssim+l2' needs image input, the data are {kind}s; use --loss l2")
        return ssim_l2_loss
    raise EdgeanomError(f"unknown loss {name!r}; choose one of: {', '.join(LOSSES)}")
