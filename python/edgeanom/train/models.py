"""The trainable detectors as torch modules, and the registry that builds them by name.

Every model's `forward(x)` returns exactly what its ONNX graph outputs: the reconstruction (same shape as the
input) for autoencoders and VAEs (a VAE decodes its latent mean, so scores are deterministic), or the embedding
for Deep SVDD. `training_loss(x, recon_loss)` is what the trainer minimises.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from edgeanom.errors import EdgeanomError

ReconLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

LOGVAR_RANGE = (-10.0, 10.0)  # keeps exp(logvar) finite early in training


class AnomalyModel(nn.Module):
    """Base class: knows its type name, its resolved hyper-parameters and its ONNX output name."""

    type_name = ""
    kinds: tuple[str, ...] = ()
    output_name = "reconstruction"
    defaults: ClassVar[dict[str, Any]] = {}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__()
        self.input_shape = tuple(int(d) for d in input_shape)
        self.params = params

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        return recon_loss(self(x), x)

    def prepare(self, batches: Callable[[], Any]) -> None:
        """Hook run once on the training data before the first epoch (Deep SVDD sets its centre here)."""


# --- building blocks --------------------------------------------------------------------------------------
def _mlp(
    sizes: Sequence[int], dropout: float = 0.0, bias: bool = True, act: type[nn.Module] = nn.ReLU
) -> nn.Sequential:
    """Linear layers between consecutive sizes, each followed by the activation (and dropout)."""
    layers: list[nn.Module] = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(a, b, bias=bias), act()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def _kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) summed over the latent axis, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def _check_divisible(shape: Sequence[int], stages: int, model: str) -> None:
    factor = 2**stages
    _c, h, w = shape
    if h % factor or w % factor:
        ok = max(factor, (h // factor) * factor)
        raise EdgeanomError(
            f"{model}: image size {h}x{w} must be divisible by {factor} ({stages} downsampling stages); "
            f"use --image-size {ok} or fewer channels stages"
        )


class _ConvEncoder(nn.Module):
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


class _ConvDecoder(nn.Module):
    """Mirror of _ConvEncoder with transposed convolutions; sigmoid output for [0, 1] pixels."""

    def __init__(self, out_ch: int, channels: Sequence[int]) -> None:
        super().__init__()
        rev = list(channels)[::-1]
        layers: list[nn.Module] = []
        for i, ch in enumerate(rev):
            nxt = rev[i + 1] if i + 1 < len(rev) else out_ch
            layers.append(nn.ConvTranspose2d(ch, nxt, 4, stride=2, padding=1))
            if i + 1 < len(rev):
                layers += [nn.BatchNorm2d(nxt), nn.LeakyReLU(0.2)]
        layers.append(nn.Sigmoid())
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


# --- vector models ----------------------------------------------------------------------------------------
class DenseAE(AnomalyModel):
    """Fully connected autoencoder for feature vectors; a narrow bottleneck forces it to learn normal structure."""

    type_name = "dense-ae"
    kinds = ("vector",)
    defaults: ClassVar[dict[str, Any]] = {"hidden": [64, 32, 16], "bottleneck": 8, "dropout": 0.2}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        (features,) = self.input_shape
        hidden = [int(h) for h in params["hidden"]]
        drop = float(params["dropout"])
        sizes = [features, *hidden, int(params["bottleneck"])]
        self.encoder = _mlp(sizes, drop)
        back = sizes[::-1]
        self.decoder = nn.Sequential(_mlp(back[:-1], drop), nn.Linear(back[-2], features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class VAE(AnomalyModel):
    """Variational autoencoder for [0, 1]-scaled vectors: sigmoid output, loss = SSE + beta * KL."""

    type_name = "vae"
    kinds = ("vector",)
    defaults: ClassVar[dict[str, Any]] = {"hidden": [64, 32], "latent": 5, "beta": 1.0}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        (features,) = self.input_shape
        hidden = [int(h) for h in params["hidden"]]
        latent = int(params["latent"])
        self.encoder = _mlp([features, *hidden])
        self.mu = nn.Linear(hidden[-1], latent)
        self.logvar = nn.Linear(hidden[-1], latent)
        back = [latent, *hidden[::-1]]
        self.decoder = nn.Sequential(_mlp(back), nn.Linear(back[-1], features), nn.Sigmoid())

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        return self.mu(h), self.logvar(h).clamp(*LOGVAR_RANGE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x)[0])

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        return _vae_loss(self, x, recon_loss)


def _vae_loss(model: VAE | ConvVAE, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
    """Per-sample summed reconstruction loss + beta * KL; samples z only in training mode."""
    mu, logvar = model.encode(x)
    z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if model.training else mu
    per_sample = math.prod(x.shape[1:])
    return recon_loss(model.decoder(z), x) * per_sample + float(model.params["beta"]) * _kl_divergence(
        mu, logvar
    )


# --- image models -----------------------------------------------------------------------------------------
class ConvAE(AnomalyModel):
    """Convolutional autoencoder with a dense bottleneck (latent 0 keeps a spatial bottleneck instead)."""

    type_name = "conv-ae"
    kinds = ("image",)
    defaults: ClassVar[dict[str, Any]] = {"channels": [32, 64, 128, 128], "latent": 128}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        c, h, w = self.input_shape
        channels = [int(ch) for ch in params["channels"]]
        _check_divisible(self.input_shape, len(channels), self.type_name)
        self.inner = (channels[-1], h // 2 ** len(channels), w // 2 ** len(channels))
        self.encoder = _ConvEncoder(c, channels)
        self.decoder = _ConvDecoder(c, channels)
        latent = int(params["latent"])
        flat = math.prod(self.inner)
        self.to_latent = nn.Linear(flat, latent) if latent else None
        self.from_latent = nn.Sequential(nn.Linear(latent, flat), nn.LeakyReLU(0.2)) if latent else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.encoder(x)
        if self.to_latent is not None and self.from_latent is not None:
            h = self.from_latent(self.to_latent(h.flatten(1))).view(-1, *self.inner)
        return self.decoder(h)


class ConvVAE(AnomalyModel):
    """Convolutional VAE: the ConvAE backbone with a Gaussian latent; decodes the mean at inference."""

    type_name = "conv-vae"
    kinds = ("image",)
    defaults: ClassVar[dict[str, Any]] = {"channels": [32, 64, 128, 128], "latent": 128, "beta": 1.0}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        c, h, w = self.input_shape
        channels = [int(ch) for ch in params["channels"]]
        _check_divisible(self.input_shape, len(channels), self.type_name)
        self.inner = (channels[-1], h // 2 ** len(channels), w // 2 ** len(channels))
        flat = math.prod(self.inner)
        latent = int(params["latent"])
        self.conv = _ConvEncoder(c, channels)
        self.mu = nn.Linear(flat, latent)
        self.logvar = nn.Linear(flat, latent)
        self.decoder = nn.Sequential(
            nn.Linear(latent, flat), nn.LeakyReLU(0.2), nn.Unflatten(1, self.inner), _ConvDecoder(c, channels)
        )

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.conv(x).flatten(1)
        return self.mu(h), self.logvar(h).clamp(*LOGVAR_RANGE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encode(x)[0])

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        return _vae_loss(self, x, recon_loss)


# --- window models ----------------------------------------------------------------------------------------
class WindowAE(AnomalyModel):
    """1-D convolutional autoencoder over (time, channels) windows; strided convs in, transposed convs out."""

    type_name = "window-ae"
    kinds = ("window",)
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


# --- Deep SVDD --------------------------------------------------------------------------------------------
class DeepSVDD(AnomalyModel):
    """One-class Deep SVDD: a bias-free encoder pulls normal data towards a fixed centre c.

    Bias terms (and affine batch-norm) are left out so the network cannot map everything to c trivially.
    The score is the squared distance to c, computed by the C++ core from the `embedding` output.
    """

    type_name = "deep-svdd"
    kinds = ("image", "window", "vector")
    output_name = "embedding"
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
            _check_divisible(self.input_shape, len(channels), self.type_name)
            conv = _ConvEncoder(self.input_shape[0], channels, bias=False, affine=False)
            flat = (
                channels[-1]
                * (self.input_shape[1] // 2 ** len(channels))
                * (self.input_shape[2] // 2 ** len(channels))
            )
            self.net = nn.Sequential(conv, nn.Flatten(), nn.Linear(flat, rep, bias=False))
        else:
            sizes = [math.prod(self.input_shape), *[int(h) for h in params["hidden"]]]
            self.net = nn.Sequential(
                nn.Flatten(), _mlp(sizes, bias=False, act=nn.LeakyReLU), nn.Linear(sizes[-1], rep, bias=False)
            )
        self.register_buffer("center", torch.zeros(rep))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        return (self(x) - self.center).pow(2).sum(dim=1).mean()

    @torch.no_grad()
    def prepare(self, batches: Callable[[], Any]) -> None:
        """c = mean embedding of the training data; tiny coordinates are pushed to +-eps (avoids collapse)."""
        total, count = None, 0
        for x in batches():
            z = self(x).sum(dim=0)
            total = z if total is None else total + z
            count += x.shape[0]
        if total is None:
            return
        c = total / max(count, 1)
        eps = float(self.params["eps"])
        c = torch.where(c.abs() < eps, torch.where(c < 0, -eps, eps).to(c), c)
        self.center.copy_(c)


# --- registry ---------------------------------------------------------------------------------------------
MODELS: dict[str, type[AnomalyModel]] = {
    cls.type_name: cls for cls in (DenseAE, VAE, ConvAE, ConvVAE, WindowAE, LSTMAE, DeepSVDD)
}
BASELINES = ("iforest", "lof", "ocsvm")
DEFAULT_MODEL = {"image": "conv-ae", "window": "window-ae", "vector": "dense-ae"}


def model_kinds(model_type: str) -> tuple[str, ...]:
    """Input kinds a model type accepts (baselines take vectors and flattened windows)."""
    if model_type in MODELS:
        return MODELS[model_type].kinds
    if model_type in BASELINES:
        return ("window", "vector")
    raise EdgeanomError(f"unknown model {model_type!r}; choose one of: {', '.join([*MODELS, *BASELINES])}")


def resolve_params(model_type: str, params: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """Defaults overridden by `params`; unknown names are an error that lists the valid ones."""
    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise EdgeanomError(
            f"model {model_type!r} has no hyper-parameter {', '.join(map(repr, unknown))}; "
            f"valid: {', '.join(sorted(defaults))}"
        )
    return {**defaults, **params}


def build_model(
    model_type: str, input_shape: Sequence[int], params: dict[str, Any] | None = None
) -> AnomalyModel:
    """Construct a registered torch model with resolved hyper-parameters."""
    if model_type not in MODELS:
        model_kinds(model_type)  # raises for unknown names
        raise EdgeanomError(f"{model_type!r} is a scikit-learn baseline, not a torch model")
    cls = MODELS[model_type]
    return cls(input_shape, resolve_params(model_type, dict(params or {}), cls.defaults))


# Models found by the quality benchmarks live in their own file and register themselves here.
from edgeanom.train import models_quality  # noqa: E402, F401
