"""Feature-level models: a frozen ImageNet backbone (`backbones.py`) and a small head trained on normal images.

- `feat-vae`: a VAE (hidden 512-256, latent 128, `beta`) on the backbone's pooled features; the graph
  outputs the score, the mean squared error of the standardised features against the decoded latent mean.
- `feat-svdd`: Deep SVDD on the same standardised pooled features; the core scores the squared distance of
  the embedding to the centre.
- `clip-lstm` (video): the pooled features of each of the last T frames (packed as channels by
  `--frame-pack`, oldest first) go through a bidirectional LSTM; attention over its T outputs gives one clip
  vector from which the T feature vectors are reconstructed. The graph outputs the clip's score, emitted at
  its newest frame: causal at clip level.
- `feat-map`: per-location feature reconstruction (the stride-8 and stride-16 maps, standardised per channel,
  through a 1x1-conv autoencoder); the graph outputs the per-pixel error map, upsampled to the input size,
  which the core blurs, normalises and reduces like any anomaly map.

Backbone and head are one module, so they export as one ONNX graph (FP16 included). What these models detect
rests on the backbone's weights: train them with `--backbone-weights` (torchvision's file for the chosen
`--backbone`); without one the backbone keeps a random initialisation, which tests use and nobody should deploy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from edgeanom.errors import EdgeanomError
from edgeanom.models.backbones import Backbone, trunk_spec
from edgeanom.models.base import LOGVAR_RANGE, AnomalyModel, ReconLoss, kl_divergence, mlp
from edgeanom.models.registry import register
from edgeanom.models.svdd import SvddObjective

BACKBONE_DEFAULTS: dict[str, Any] = {"backbone": "resnet18", "backbone_weights": None}
MIN_SIDE = 32  # the stride-32 tap needs at least one location
STD_FLOOR = 0.01  # of the mean feature spread: the smallest spread a feature is standardised by


class FeatureModel(AnomalyModel):
    """Base of the feature-level models: the frozen backbone, the feature statistics, the pretrained weights.

    `prepare` (run once before training) loads `backbone_weights` and measures the mean and spread of each
    feature on the training images, so the head sees standardised features whatever the backbone.
    """

    kinds = ("image",)
    depth = 3  # taps the head reads: 2 (strides 8, 16) or 3 (up to stride 32)

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        c, h, w = self.input_shape
        if min(h, w) < MIN_SIDE:
            raise EdgeanomError(
                f"{self.type_name}: image size {h}x{w} is too small for a backbone (>= {MIN_SIDE} px a side); "
                f"use --image-size {MIN_SIDE} or more"
            )
        self.backbone = Backbone(str(params["backbone"]), self.frame_channels(c))
        width = self.feature_width()
        self.register_buffer("feat_mean", torch.zeros(width))
        self.register_buffer("feat_scale", torch.ones(width))

    @classmethod
    def check_params(cls, params: dict[str, Any]) -> None:
        """Fail before any data is read: an unknown backbone or a weights file that is not there."""
        trunk_spec(str(params["backbone"]))
        weights = params.get("backbone_weights")
        if weights is not None and not Path(str(weights)).is_file():
            raise EdgeanomError(f"--backbone-weights: file '{weights}' does not exist")

    def frame_channels(self, channels: int) -> int:
        """Channels of one image the backbone sees (a clip model's input channels are frames)."""
        return channels

    def feature_width(self) -> int:
        raise NotImplementedError

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features before standardisation: [N, F] pooled or [N, F, h, w] per location."""
        raise NotImplementedError

    def features(self, x: torch.Tensor) -> torch.Tensor:
        f = self.raw_features(x)
        shape = (1, -1) if f.dim() == 2 else (1, -1, 1, 1)
        return (f - self.feat_mean.view(shape)) * self.feat_scale.view(shape)

    @torch.no_grad()
    def prepare(self, batches: Callable[[], Any]) -> None:
        weights = self.params.get("backbone_weights")
        if weights is not None:
            self.backbone.load_weights(weights)
        total = total_sq = None
        count = 0
        for x in batches():
            f = self.raw_features(x).double()
            if f.dim() == 4:
                f = f.permute(0, 2, 3, 1).reshape(-1, f.shape[1])
            s, s2 = f.sum(0), (f * f).sum(0)
            total, total_sq = (s, s2) if total is None else (total + s, total_sq + s2)
            count += f.shape[0]
        if total is None or count == 0:
            return
        mean = total / count
        std = (total_sq / count - mean * mean).clamp_min(0).sqrt()
        # a feature that barely varies on normal images is not blown up past 100x the typical spread's scale
        floor = max(float(std.mean()) * STD_FLOOR, 1e-6)
        self.feat_mean.copy_(mean.float())
        self.feat_scale.copy_((1.0 / std.clamp_min(floor)).float())


class PooledFeatureModel(FeatureModel):
    """Heads on the globally pooled stride-32 features (the vector an ImageNet classifier reads)."""

    def feature_width(self) -> int:
        return self.backbone.channels[2]

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone(x)[2].mean(dim=(2, 3))


@register
class FeatureVAE(PooledFeatureModel):
    """VAE on pooled backbone features; outputs the score (feature reconstruction error)."""

    type_name = "feat-vae"
    output_name = "score"
    score_metric = "model"
    scores_maps = False
    defaults: ClassVar[dict[str, Any]] = {
        **BACKBONE_DEFAULTS,
        "hidden": [512, 256],
        "latent": 128,
        "beta": 1.0,
    }

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        sizes = [self.feature_width(), *[int(h) for h in params["hidden"]]]
        latent = int(params["latent"])
        self.encoder = mlp(sizes, act=nn.LeakyReLU)
        self.mu, self.logvar = nn.Linear(sizes[-1], latent), nn.Linear(sizes[-1], latent)
        self.decoder = nn.Sequential(
            mlp([latent, *sizes[::-1][:-1]], act=nn.LeakyReLU), nn.Linear(sizes[1], sizes[0])
        )

    def encode(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(f)
        return self.mu(h), self.logvar(h).clamp(*LOGVAR_RANGE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        mu, _ = self.encode(f)
        return (self.decoder(mu) - f).pow(2).mean(dim=1)

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        f = self.features(x)
        mu, logvar = self.encode(f)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        recon = (self.decoder(z) - f).pow(2).sum(dim=1).mean()
        return recon + float(self.params["beta"]) * kl_divergence(mu, logvar)


@register
class FeatureSVDD(SvddObjective, PooledFeatureModel):
    """Deep SVDD on pooled backbone features: a bias-free MLP pulls normal images towards a centre."""

    type_name = "feat-svdd"
    defaults: ClassVar[dict[str, Any]] = {**BACKBONE_DEFAULTS, "hidden": [256], "rep_dim": 128, "eps": 0.1}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        sizes = [self.feature_width(), *[int(h) for h in params["hidden"]]]
        self.head = nn.Sequential(
            mlp(sizes, bias=False, act=nn.LeakyReLU), nn.Linear(sizes[-1], int(params["rep_dim"]), bias=False)
        )
        self.register_buffer("center", torch.zeros(int(params["rep_dim"])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


@register
class FeatureMapAE(FeatureModel):
    """Per-location feature reconstruction on the stride-8 and stride-16 maps; outputs the anomaly map."""

    type_name = "feat-map"
    output_name = "error_map"
    depth = 2
    defaults: ClassVar[dict[str, Any]] = {**BACKBONE_DEFAULTS, "hidden": [256, 64]}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        sizes = [self.feature_width(), *[int(h) for h in params["hidden"]]]
        layers: list[nn.Module] = []
        for a, b in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Conv2d(a, b, 1), nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
        back = sizes[::-1]
        for i, (a, b) in enumerate(zip(back[:-1], back[1:])):
            layers.append(nn.Conv2d(a, b, 1))
            if i + 2 < len(back):
                layers += [nn.BatchNorm2d(b), nn.LeakyReLU(0.2)]
        self.head = nn.Sequential(*layers)

    def feature_width(self) -> int:
        return self.backbone.channels[0] + self.backbone.channels[1]

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        fine, coarse = self.backbone(x, depth=2)
        coarse = F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([fine, coarse], dim=1)

    def location_errors(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return (self.head(f) - f).pow(2).mean(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        err = self.location_errors(x)
        return F.interpolate(err, size=self.input_shape[1:], mode="bilinear", align_corners=False)[:, 0]

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        return self.location_errors(x).mean()


@register
class ClipLSTM(FeatureModel):
    """Bidirectional LSTM with attention over the backbone features of the last T frames; outputs the score."""

    type_name = "clip-lstm"
    output_name = "score"
    score_metric = "model"
    scores_maps = False
    packed_frames = 8
    defaults: ClassVar[dict[str, Any]] = {**BACKBONE_DEFAULTS, "hidden": 128, "latent": 64}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        frames, width, hidden = self.input_shape[0], self.feature_width(), int(params["hidden"])
        if frames < 2:
            raise EdgeanomError(
                f"clip-lstm reads a clip of >= 2 packed frames, the input has {frames} channel"
            )
        self.frames = frames
        self.lstm = nn.LSTM(width, hidden, batch_first=True, bidirectional=True)
        self.attention = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.Tanh(), nn.Linear(hidden, 1))
        latent = int(params["latent"])
        self.bottleneck = nn.Sequential(nn.Linear(2 * hidden, latent), nn.LeakyReLU(0.2))
        self.decoder = nn.Sequential(
            mlp([latent, 2 * hidden], act=nn.LeakyReLU), nn.Linear(2 * hidden, frames * width)
        )

    def frame_channels(self, channels: int) -> int:
        return 1  # every channel is one grey frame

    def feature_width(self) -> int:
        return self.backbone.channels[2]

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """[N, T, H, W] -> [N * T, F]: each frame through the backbone on its own."""
        n, t, h, w = x.shape
        return self.backbone(x.reshape(n * t, 1, h, w))[2].mean(dim=(2, 3))

    def clip_errors(self, x: torch.Tensor) -> torch.Tensor:
        """Squared reconstruction error of each clip's standardised frame features, [N, T * F]."""
        f = self.features(x).reshape(x.shape[0], self.frames, -1)
        out, _ = self.lstm(f)
        weights = torch.softmax(self.attention(out), dim=1)  # [N, T, 1]: which frames the clip vector reads
        clip = (weights * out).sum(dim=1)
        return (self.decoder(self.bottleneck(clip)) - f.flatten(1)).pow(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.clip_errors(x).mean(dim=1)

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        return self.clip_errors(x).mean()
