"""`grad-knn`: nearest-neighbour distance of local gradient-orientation histograms, fitted without training.

The image (grey; colour is converted with the usual luma weights) is cut into a `grid` x `grid` raster of
cells. Each cell is described by a histogram of its edge orientations (`bins` unsigned directions, each
pixel's Sobel gradient magnitude shared between the two nearest directions, the histogram scaled to unit
length), so a cell tells which way its lines and edges run, not how bright it is. Fitting keeps the
descriptors of (up to `max_bank`) training images as a memory bank; an image's score is the mean of its
`topk` largest cell distances, each cell compared with the same cell of its nearest training image. A crack
across a grained surface, a scratch, a missing or bent part changes the edge directions of a few cells, which
no training image shows there.

Why it exists: on ELPV solar cells no learned from-scratch model here got past the cells' brightness
(docs/quality.md); these histograms see line structure through the crystal grain. Everything is plain tensor
arithmetic (a 3x3 convolution, products, ReLU, average pooling, matrix products, TopK), so the graph exports
to ONNX, FP16 and TensorRT like every model. Binning is soft (a ramp in the doubled orientation angle,
continuous in the gradient), so FP32 graphs and the float64 reference agree closely. It outputs the score
alone: no anomaly map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Callable, ClassVar

import numpy as np
import torch
import torch.nn.functional as F

from edgeanom.errors import EdgeanomError
from edgeanom.models.base import AnomalyModel, ReconLoss
from edgeanom.models.registry import register

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, for RGB input in channel order R, G, B
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
NORM_EPS = 1e-3  # added to each histogram's length: flat cells stay near zero instead of amplifying noise
GRAD_EPS = 1e-12  # added to the squared gradient magnitude before dividing by it


def bin_geometry(bins: int) -> tuple[np.ndarray, float]:
    """(cos 2t, sin 2t) of the bin centres t = (k + 1/2) pi / bins, and the ramp's floor cos(2 pi / bins)."""
    centres = (np.arange(bins) + 0.5) * np.pi / bins
    return np.stack([np.cos(2 * centres), np.sin(2 * centres)]), math.cos(2 * math.pi / bins)


def reflect_pad(x: torch.Tensor) -> torch.Tensor:
    """One pixel of mirror padding without repeating the edge (OpenCV's default border, NumPy's "reflect"),
    written as slices and concatenations: unit-step slices only, which every runtime folds and fuses."""
    x = torch.cat([x[:, :, 1:2], x, x[:, :, -2:-1]], dim=2)
    return torch.cat([x[:, :, :, 1:2], x, x[:, :, :, -2:-1]], dim=3)


@register
class GradientKnn(AnomalyModel):
    """Memory bank of per-cell gradient-orientation histograms; score = top-k cell distance to the nearest
    training image (cell by cell)."""

    type_name = "grad-knn"
    kinds = ("image",)
    output_name = "score"
    score_metric = "model"
    scores_maps = False
    trainable = False
    defaults: ClassVar[dict[str, Any]] = {"grid": 8, "bins": 9, "topk": 3, "max_bank": 2000, "n_bank": 0}

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        c, h, w = self.input_shape
        grid, bins = int(params["grid"]), int(params["bins"])
        if c not in (1, 3):
            raise EdgeanomError(f"grad-knn: needs grey or RGB images, got {c} channels")
        if grid < 1 or h % grid or w % grid:
            raise EdgeanomError(
                f"grad-knn: image size {h}x{w} must be divisible by grid {grid}; "
                f"use --image-size {max(grid, (h // grid) * grid)} or --param grid=N"
            )
        if bins < 2:
            raise EdgeanomError(f"grad-knn: bins must be >= 2, got {bins}")
        cells = grid * grid
        if not 1 <= int(params["topk"]) <= cells:
            raise EdgeanomError(f"grad-knn: topk must be in [1, {cells}] (grid {grid}), got {params['topk']}")
        if int(params["max_bank"]) < 1:
            raise EdgeanomError(f"grad-knn: max_bank must be >= 1, got {params['max_bank']}")
        self.cell = (h // grid, w // grid)
        sobel = torch.tensor(SOBEL_X)
        self.register_buffer("sobel_x", sobel.view(1, 1, 3, 3))
        self.register_buffer("sobel_y", sobel.t().contiguous().view(1, 1, 3, 3))
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1))
        directions, floor = bin_geometry(bins)
        # (bins, 2, 1, 1): a 1x1 convolution projects (cos 2t, sin 2t) on each bin's direction
        self.register_buffer(
            "directions", torch.from_numpy(directions.T.astype(np.float32))[:, :, None, None]
        )
        self.floor = floor
        self.register_buffer("bank", torch.zeros(int(params["n_bank"]), cells, bins))

    def descriptors(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> (N, cells, bins) unit-length orientation histograms."""
        grey = (x * self.luma).sum(dim=1, keepdim=True) if x.shape[1] == 3 else x
        padded = reflect_pad(grey)
        gx, gy = F.conv2d(padded, self.sobel_x), F.conv2d(padded, self.sobel_y)
        m2 = gx * gx + gy * gy
        doubled = torch.cat([gx * gx - gy * gy, 2.0 * gx * gy], dim=1)  # m^2 (cos 2t, sin 2t)
        cos_to_bin = F.conv2d(doubled, self.directions) / (m2 + GRAD_EPS)
        weights = F.relu(cos_to_bin - self.floor) * (torch.sqrt(m2) / (1.0 - self.floor))
        hist = F.avg_pool2d(weights, self.cell) * float(self.cell[0] * self.cell[1])
        hist = hist / (torch.sqrt((hist * hist).sum(dim=1, keepdim=True)) + NORM_EPS)
        return hist.flatten(2).transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.descriptors(x).transpose(0, 1)  # (cells, N, bins)
        bank = self.bank.transpose(0, 1)  # (cells, M, bins)
        cross = torch.matmul(d, bank.transpose(1, 2))  # (cells, N, M)
        sq = (bank * bank).sum(dim=2).unsqueeze(1) - 2.0 * cross  # |b|^2 - 2 d.b: same argmin as |d - b|^2
        # The expansion finds the nearest bank entry; its distance is then taken directly, since for a
        # near-duplicate the expansion's cancellation leaves rounding noise that the square root magnifies.
        index = sq.argmin(dim=2, keepdim=True).expand(-1, -1, bank.shape[2])  # (cells, N, bins)
        nearest = torch.gather(bank, 1, index)
        dist = torch.sqrt(((d - nearest) ** 2).sum(dim=2)).transpose(0, 1)  # (N, cells)
        return dist.topk(int(self.params["topk"]), dim=1).values.mean(dim=1)

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        raise EdgeanomError("grad-knn is fitted, not trained: it has no loss")

    @torch.no_grad()
    def prepare(self, batches: Callable[[], Any]) -> None:
        """The memory bank: every training image's descriptors, thinned evenly to `max_bank` images."""
        found = [self.descriptors(b).cpu() for b in batches()]
        if not found:
            raise EdgeanomError("grad-knn: no training images to fit the memory bank")
        bank = torch.cat(found)
        limit = int(self.params["max_bank"])
        if len(bank) > limit:
            bank = bank[torch.from_numpy(np.linspace(0, len(bank) - 1, limit).round().astype(np.int64))]
        self.bank = bank.to(self.sobel_x.device)
        self.params["n_bank"] = len(bank)


def reference_scores(x: np.ndarray, bank: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The model's score in float64 NumPy, written out independently (the parity reference for tests)."""
    x = np.asarray(x, dtype=np.float64)
    grey = np.tensordot(np.asarray(LUMA), x, axes=([0], [1])) if x.shape[1] == 3 else x[:, 0]
    p = np.pad(grey, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    h, w = grey.shape[1:]

    def tap(dy: int, dx: int) -> np.ndarray:
        return p[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]

    gx = (tap(-1, 1) - tap(-1, -1)) + 2 * (tap(0, 1) - tap(0, -1)) + (tap(1, 1) - tap(1, -1))
    gy = (tap(1, -1) - tap(-1, -1)) + 2 * (tap(1, 0) - tap(-1, 0)) + (tap(1, 1) - tap(-1, 1))
    bins, grid = int(params["bins"]), int(params["grid"])
    centres = (np.arange(bins) + 0.5) * np.pi / bins
    floor = math.cos(2 * math.pi / bins)
    angle = np.arctan2(gy, gx)
    mag = np.hypot(gx, gy)
    weights = (
        np.maximum(np.cos(2 * angle[..., None] - 2 * centres) - floor, 0.0) * mag[..., None] / (1 - floor)
    )
    ch, cw = h // grid, w // grid
    hist = (
        weights.reshape(len(x), grid, ch, grid, cw, bins).sum(axis=(2, 4)).reshape(len(x), grid * grid, bins)
    )
    hist = hist / (np.linalg.norm(hist, axis=2, keepdims=True) + NORM_EPS)
    bank = np.asarray(bank, dtype=np.float64)
    dist = np.linalg.norm(hist[:, None] - bank[None], axis=3).min(axis=1)  # (N, cells)
    return np.sort(dist, axis=1)[:, ::-1][:, : int(params["topk"])].mean(axis=1)
