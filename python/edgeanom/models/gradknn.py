"""`grad-knn`: the image default; nearest-neighbour distance of local edge-orientation histograms and colours,
fitted without training.

The image is cut into a `grid` x `grid` raster of cells. Each cell is described by a histogram of its edge
orientations (grey, colour converted with the usual luma weights; `bins` unsigned directions, each pixel's
Sobel gradient magnitude shared between the two nearest directions, scaled to unit length), which tells which
way its lines and edges run, and by its mean colour, weighted so that across the training images it varies as
much as the histograms do (`colour_weight` "auto"; 0 turns it off). Fitting keeps the descriptors of (up to
`max_bank`) training images as a memory bank. An image is matched to its nearest bank image as a whole, and
each cell's distance to the same cell of that image is the anomaly map (cell resolution); the score is the
mean of the `topk` largest cells. A crack across a grained surface, a scratch, a stain, a missing or bent part
changes a few cells in a way that no training image shows there.

Why it is the default: on ELPV solar cells no learned from-scratch model here got past the cells' brightness,
and on MVTec bottle it matches the autoencoder, in seconds of fitting instead of minutes of training
(docs/quality.md). A bank entry (almost) identical to the scored image is skipped as the image itself, so a
training image scores against the others: its in-sample score is a leave-one-out score, and train fits the bank
on every normal image and calibrates on all of them (image sets; video frames keep their held-out block, since a
frame's neighbours in time are near-copies of it). Everything is plain tensor arithmetic (3x3 and 1x1
convolutions, average pooling, matrix products, ArgMin, Gather), so the graph exports to ONNX, FP16 and
TensorRT like every model; binning is soft (a ramp in the doubled orientation angle, continuous in the
gradient), so FP32 graphs and the float64 reference agree closely.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch
import torch.nn.functional as F

from edgeanom.errors import EdgeanomError
from edgeanom.models.base import AnomalyModel, ReconLoss
from edgeanom.models.registry import register

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601, for RGB input in channel order R, G, B
SOBEL_X = ((-1.0, 0.0, 1.0), (-2.0, 0.0, 2.0), (-1.0, 0.0, 1.0))
NORM_EPS = 1e-3  # added to each histogram's length: flat cells stay near zero instead of amplifying noise
# Added to the squared gradient magnitude under the square root that turns each bin's ramp m^2 (...) into
# m (...): far below the weakest real edge (one grey level, m^2 = 2.5e-4), far above rounding noise (1e-14).
MAGNITUDE_EPS = 1e-6
# Squared whole-image descriptor distance below which a bank entry is the scored image itself (typical nearest
# training images are 0.5-10 apart, float32 rounding of the expansion ~1e-5).
SELF_DISTANCE = 1e-3


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
    """Memory bank of per-cell edge-orientation histograms and colours; the anomaly map is each cell's distance
    to the same cell of the nearest training image, the score the mean of its `topk` largest cells."""

    type_name = "grad-knn"
    kinds = ("image",)
    default_for = ("image",)
    output_name = "error_map"
    trainable = False
    # the cells' own distances are the map: per-pixel statistics of them did not help (quality.md)
    map_normalize = False
    defaults: ClassVar[dict[str, Any]] = {
        "grid": 8,
        "bins": 9,
        "topk": 3,
        "max_bank": 2000,
        "n_bank": 0,
        "colour_weight": "auto",
        "nearest": "image",
        "map": True,
    }
    # bundles saved before the colour term, whole-image matching and the map output
    saved_before: ClassVar[dict[str, Any]] = {"colour_weight": 0.0, "nearest": "cell", "map": False}

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
        if params["nearest"] not in ("image", "cell"):
            raise EdgeanomError(f"grad-knn: nearest must be 'image' or 'cell', got {params['nearest']!r}")
        if not isinstance(params["map"], bool):
            raise EdgeanomError(f"grad-knn: map must be true or false, got {params['map']!r}")
        weight = params["colour_weight"]
        if weight != "auto" and (
            isinstance(weight, bool) or not isinstance(weight, (int, float)) or not 0 <= weight < math.inf
        ):
            raise EdgeanomError(f"grad-knn: colour_weight must be 'auto' or a number >= 0, got {weight!r}")
        self.grid = grid
        self.cell = (h // grid, w // grid)
        self.output_name = "error_map" if params["map"] else "score"
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
        # the colour term: each cell's mean of every channel, times the weight (a buffer, fitted when "auto")
        self.colours = c if weight == "auto" or float(weight) > 0 else 0
        if self.colours:
            self.register_buffer("colour_scale", torch.tensor(1.0 if weight == "auto" else float(weight)))
        dims = bins + self.colours
        self.register_buffer("bank", torch.zeros(int(params["n_bank"]), cells, dims))
        if params["nearest"] == "image":  # the bank is stored centred on its mean: see `cell_distances`
            self.register_buffer("bank_mean", torch.zeros(cells, dims))

    def histograms(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> (N, cells, bins) unit-length orientation histograms."""
        # Grey first: a flat area stays exactly flat, so its gradients are exactly zero in every runtime (luma
        # folded into the Sobel taps leaves rounding noise there, which unit-length histograms would magnify).
        grey = (x * self.luma).sum(dim=1, keepdim=True) if x.shape[1] == 3 else x
        # gx and gy in one convolution
        g = F.conv2d(reflect_pad(grey), torch.cat([self.sobel_x, self.sobel_y]))
        gx, gy = g[:, :1], g[:, 1:]
        gxx, gyy = gx * gx, gy * gy
        m2 = gxx + gyy
        # Each bin's ramp m^2 (cos(2t - 2c) - floor), one 1x1 convolution over m^2 (cos 2t, sin 2t) and m^2;
        # dividing by m then gives relu(cos(2t - 2c) - floor) * m, the magnitude shared between two bins.
        taps = torch.cat([self.directions, torch.full_like(self.directions[:, :1], -self.floor)], dim=1)
        ramps = F.relu(F.conv2d(torch.cat([gxx - gyy, 2.0 * gx * gy, m2], dim=1), taps))
        weights = ramps * (torch.rsqrt(m2 + MAGNITUDE_EPS) / (1.0 - self.floor))
        hist = F.avg_pool2d(weights, self.cell) * float(self.cell[0] * self.cell[1])
        hist = hist / (torch.sqrt((hist * hist).sum(dim=1, keepdim=True)) + NORM_EPS)
        return hist.flatten(2).transpose(1, 2)

    def cell_colours(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, cells, C): each cell's mean of every channel."""
        return F.avg_pool2d(x, self.cell).flatten(2).transpose(1, 2)

    def descriptors(self, x: torch.Tensor) -> torch.Tensor:
        """(N, cells, bins [+ C]): the histograms, then the weighted cell colours when the colour term is on."""
        hist = self.histograms(x)
        if not self.colours:
            return hist
        return torch.cat([hist, self.cell_colours(x) * self.colour_scale], dim=2)

    def cell_distances(self, x: torch.Tensor) -> torch.Tensor:
        """(N, cells): each cell's distance to the same cell of the nearest bank entry."""
        if self.params["nearest"] == "cell":
            return self._nearest_per_cell(self.descriptors(x))
        d = self.descriptors(x) - self.bank_mean  # centred like the bank: the expansion below stays small
        flat, bank = d.flatten(1), self.bank.flatten(1)
        # (N, M) squared distances to every bank entry
        sq = (flat * flat).sum(dim=1, keepdim=True) + (bank * bank).sum(dim=1) - 2.0 * flat @ bank.t()
        # An entry (almost) identical to the sample is the sample itself: skipping it makes a training image's
        # score its leave-one-out score, so train calibrates on every training image (`leave_one_out`).
        sq = torch.where(sq < SELF_DISTANCE, torch.full_like(sq, math.inf), sq)
        nearest = self.bank.index_select(0, sq.argmin(dim=1))  # (N, cells, dims)
        # the distance is then taken directly: the expansion's cancellation is noise under a square root
        return torch.sqrt(((d - nearest) ** 2).sum(dim=2))

    def _nearest_per_cell(self, d: torch.Tensor) -> torch.Tensor:
        """Bundles saved before whole-image matching: every cell finds its own nearest bank entry."""
        d = d.transpose(0, 1)  # (cells, N, dims)
        bank = self.bank.transpose(0, 1)  # (cells, M, dims)
        sq = (bank * bank).sum(dim=2).unsqueeze(1) - 2.0 * torch.matmul(d, bank.transpose(1, 2))
        index = sq.argmin(dim=2, keepdim=True).expand(-1, -1, bank.shape[2])  # (cells, N, dims)
        nearest = torch.gather(bank, 1, index)
        return torch.sqrt(((d - nearest) ** 2).sum(dim=2)).transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dist = self.cell_distances(x)
        if not self.params["map"]:
            return dist.topk(int(self.params["topk"]), dim=1).values.mean(dim=1)
        # each cell's distance painted over its pixels: the core's top-k mean over topk cells' pixels is then
        # exactly the mean of the topk largest cells (score_section), and the map localises at cell resolution
        n, (ch, cw), g = dist.shape[0], self.cell, self.grid
        return dist.reshape(n, g, 1, g, 1).expand(n, g, ch, g, cw).reshape(n, g * ch, g * cw)

    def leave_one_out(self) -> bool:
        return self.params["nearest"] == "image"

    def score_section(self, folder: Path, image_map: Optional[dict[str, Any]]) -> dict[str, Any]:
        if not self.params["map"]:
            return {"metric": "model", "center": None, "map": None}
        pixels = int(self.params["topk"]) * self.cell[0] * self.cell[1]
        return {"metric": "mse", "center": None, "map": {"blur_sigma": 0.0, "mode": "topk_mean", "k": pixels}}

    def training_loss(self, x: torch.Tensor, recon_loss: ReconLoss) -> torch.Tensor:
        raise EdgeanomError("grad-knn is fitted, not trained: it has no loss")

    @torch.no_grad()
    def prepare(self, batches: Callable[[], Any]) -> None:
        """The memory bank: every training image's descriptors, thinned evenly to `max_bank` images; with
        colour_weight "auto" the colour term is first weighted to vary across the training images as much as
        the histograms do (per cell, summed over its values), so neither part drowns the other."""
        hists, colours = [], []
        for b in batches():
            hists.append(self.histograms(b).cpu())
            if self.colours:
                colours.append(self.cell_colours(b).cpu())
        if not hists:
            raise EdgeanomError("grad-knn: no training images to fit the memory bank")
        bank = torch.cat(hists)
        device = self.sobel_x.device
        if self.colours:
            colour = torch.cat(colours)
            if self.params["colour_weight"] == "auto":
                self.params["colour_weight"] = balancing_weight(bank, colour)
            weight = float(self.params["colour_weight"])
            self.colour_scale = torch.tensor(weight, device=device)
            bank = torch.cat([bank, colour * weight], dim=2)
        limit = int(self.params["max_bank"])
        if len(bank) > limit:
            bank = bank[torch.from_numpy(np.linspace(0, len(bank) - 1, limit).round().astype(np.int64))]
        if self.params["nearest"] == "image":
            mean = bank.mean(dim=0)
            self.bank_mean = mean.to(device)
            bank = bank - mean
        self.bank = bank.to(device)
        self.params["n_bank"] = len(bank)


def balancing_weight(hist: torch.Tensor, colour: torch.Tensor) -> float:
    """sqrt(per-cell variance of the histograms / of the colours) over the training images, each summed over
    its values and averaged over cells; 1 when either does not vary (one image, a flat colour)."""
    h = float(hist.double().var(dim=0, unbiased=False).sum(dim=1).mean()) if len(hist) > 1 else 0.0
    c = float(colour.double().var(dim=0, unbiased=False).sum(dim=1).mean()) if len(colour) > 1 else 0.0
    return math.sqrt(h / c) if h > 1e-12 and c > 1e-12 else 1.0


def reference_maps(x: np.ndarray, bank: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """The model's cell distances (N, grid, grid) in float64 NumPy, written out independently (the parity
    reference for tests). `bank`: the fitted descriptors, uncentred; params as fitted (a numeric colour_weight)."""
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
    m2 = gx * gx + gy * gy
    mag = m2 / np.sqrt(m2 + MAGNITUDE_EPS)  # the magnitude, with the model's guard against rounding noise
    weights = (
        np.maximum(np.cos(2 * angle[..., None] - 2 * centres) - floor, 0.0) * mag[..., None] / (1 - floor)
    )
    ch, cw = h // grid, w // grid
    n = len(x)
    hist = weights.reshape(n, grid, ch, grid, cw, bins).sum(axis=(2, 4)).reshape(n, grid * grid, bins)
    desc = hist / (np.linalg.norm(hist, axis=2, keepdims=True) + NORM_EPS)
    weight = float(params["colour_weight"])
    if weight > 0:
        colour = x.reshape(n, x.shape[1], grid, ch, grid, cw).mean(axis=(3, 5)).reshape(n, x.shape[1], -1)
        desc = np.concatenate([desc, weight * colour.transpose(0, 2, 1)], axis=2)
    bank = np.asarray(bank, dtype=np.float64)
    per_cell = np.linalg.norm(desc[:, None] - bank[None], axis=3)  # (N, M, cells)
    if params["nearest"] == "cell":
        dist = per_cell.min(axis=1)
    else:
        whole = np.square(per_cell).sum(axis=2)  # (N, M)
        whole[whole < SELF_DISTANCE] = np.inf  # the image itself
        dist = per_cell[np.arange(n), whole.argmin(axis=1)]
    return dist.reshape(n, grid, grid)


def reference_scores(x: np.ndarray, bank: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    """Mean of the `topk` largest cell distances of `reference_maps`."""
    dist = reference_maps(x, bank, params).reshape(len(x), -1)
    return np.sort(dist, axis=1)[:, ::-1][:, : int(params["topk"])].mean(axis=1)
