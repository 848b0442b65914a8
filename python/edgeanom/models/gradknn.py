"""`grad-knn`: the image default; nearest-neighbour distance of local edge-orientation histograms and colours,
fitted without training.

The image is cut into a `grid` x `grid` raster of cells. Each cell is described by a histogram of its edge
orientations (grey, colour converted with the usual luma weights; `bins` unsigned directions, each pixel's
Sobel gradient magnitude shared between the two nearest directions, scaled to unit length), which tells which
way its lines and edges run, and by its mean colour, weighted so that across the training images it varies as
much as the histograms do (`colour_weight` "auto"; 0 turns it off). Fitting keeps the descriptors of (up to
`max_bank`) training images as a memory bank. Each cell is compared twice: with the same cell of the nearest
bank image as a whole (aligned parts: a normal-looking patch in the wrong place counts), and with the nearest
cell anywhere in any bank image (`anywhere`: a greedy coreset of that many cells; textures, objects that
shift or turn). Each distance is divided by its mean over the training images' leave-one-out maps and the two
added: the anomaly map (cell resolution); the score is the mean of the `topk` largest cells. A crack across a
grained surface, a scratch, a stain, a missing or bent part changes a few cells in a way that no training image
shows there.

Why it is the default: on ELPV solar cells no learned from-scratch model here got past the cells' brightness,
and on MVTec bottle it matches the autoencoder, in seconds of fitting instead of minutes of training; the
position-free half keeps it there when the same bottles are shifted and turned (docs/quality.md). A bank entry
(almost) identical to the scored image is skipped as the image itself, with its cells, so a training image
scores against the others: its in-sample score is a leave-one-out score, and train fits the bank on every normal
image and calibrates on all of them (image sets; video frames keep their held-out block, since a frame's
neighbours in time are near-copies of it). Everything is plain tensor arithmetic (3x3 and 1x1 convolutions,
average pooling, matrix products, ArgMin, Gather), so the graph exports to ONNX, FP16 and TensorRT like every
model; binning is soft (a ramp in the doubled orientation angle, continuous in the gradient), so FP32 graphs
and the float64 reference agree closely.
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
DEFAULT_GRID, CELL_SIDE = 8, 16  # `auto_grid`
SCALE_IMAGES = 500  # bank images whose leave-one-out maps set the two halves' scales
SCALE_CHUNK = 32  # of them at a time: 32 x 64 cells x 4096 distances are 32 MB


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
    to the same cell of the nearest training image plus its distance to the nearest training cell anywhere,
    each in units of its mean on normal images; the score the mean of its `topk` largest cells."""

    type_name = "grad-knn"
    kinds = ("image",)
    default_for = ("image",)
    output_name = "error_map"
    trainable = False
    # the cells' own distances are the map: per-pixel statistics of them did not help (quality.md)
    map_normalize = False
    # An image set is read at 256 px where its images are that big: cells of 16 px on twice as many of them as
    # at 128 (ELPV 0.889 -> 0.902, bottle 0.983 -> 0.996, unaligned bottle 0.926 -> 0.948; quality.md), at
    # about five times the cost per image; frames in time order stay at 128, where `run` keeps up with a camera.
    image_set_side = 256
    defaults: ClassVar[dict[str, Any]] = {
        "grid": "auto",
        "bins": 9,
        "topk": 3,
        "max_bank": 2000,
        "n_bank": 0,
        "colour_weight": "auto",
        "nearest": "image",
        "anywhere": 4096,
        "n_cells": 0,
        "map": True,
    }
    # bundles saved before the colour term, whole-image matching, the map output and the position-free half
    saved_before: ClassVar[dict[str, Any]] = {
        "colour_weight": 0.0,
        "nearest": "cell",
        "map": False,
        "anywhere": 0,
    }

    def __init__(self, input_shape: Sequence[int], params: dict[str, Any]) -> None:
        super().__init__(input_shape, params)
        c, h, w = self.input_shape
        if params["grid"] == "auto":
            params["grid"] = auto_grid(h, w)
        if isinstance(params["grid"], bool) or not isinstance(params["grid"], int):
            raise EdgeanomError(f"grad-knn: grid must be 'auto' or a whole number, got {params['grid']!r}")
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
        anywhere = params["anywhere"]
        if isinstance(anywhere, bool) or not isinstance(anywhere, int) or anywhere < 0:
            raise EdgeanomError(f"grad-knn: anywhere must be a whole number of cells >= 0, got {anywhere!r}")
        if anywhere and params["nearest"] != "image":
            raise EdgeanomError(
                "grad-knn: anywhere needs nearest 'image' (set --param anywhere=0 for 'cell')"
            )
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
        if anywhere:
            # the position-free bank: cell descriptors (centred on their mean, like the image bank), the bank
            # image each came from, and the two halves' mean distances on the training images (aligned,
            # anywhere) that the map divides by
            n_cells = int(params["n_cells"])
            self.register_buffer("cell_bank", torch.zeros(n_cells, dims))
            self.register_buffer("cell_mean", torch.zeros(dims))
            self.register_buffer("cell_source", torch.zeros(n_cells, dtype=torch.int64))
            self.register_buffer("scales", torch.ones(2))
            # added to the squared distances of a training image's own cells: more than any two training
            # cells are apart (fitted: 4 R^2 + 1, R the largest centred cell's length)
            self.register_buffer("skip_penalty", torch.tensor(1.0))

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
        """(N, cells): the anomaly map at cell resolution (see the class docstring)."""
        if self.params["nearest"] == "cell":
            return self._nearest_per_cell(self.descriptors(x))
        desc = self.descriptors(x)
        aligned, itself = self._aligned(desc)
        if not self.params["anywhere"]:
            return aligned
        return aligned / self.scales[0] + self._anywhere(desc, itself) / self.scales[1]

    def _aligned(self, desc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, cells) distances to the same cell of the nearest bank image, and (N, M) which bank images are
        the sample itself (bool)."""
        d = desc - self.bank_mean  # centred like the bank: the expansion below stays small
        flat, bank = d.flatten(1), self.bank.flatten(1)
        # (N, M) squared distances to every bank entry
        sq = (flat * flat).sum(dim=1, keepdim=True) + (bank * bank).sum(dim=1) - 2.0 * flat @ bank.t()
        # An entry (almost) identical to the sample is the sample itself: skipping it makes a training image's
        # score its leave-one-out score, so train calibrates on every training image (`leave_one_out`).
        itself = sq < SELF_DISTANCE
        sq = torch.where(itself, torch.full_like(sq, math.inf), sq)
        nearest = self.bank.index_select(0, sq.argmin(dim=1))  # (N, cells, dims)
        # the distance is then taken directly: the expansion's cancellation is noise under a square root
        return torch.sqrt(((d - nearest) ** 2).sum(dim=2)), itself

    def _anywhere(self, desc: torch.Tensor, itself: torch.Tensor) -> torch.Tensor:
        """(N, cells) distances to the nearest cell of the position-free bank, skipping the cells of the bank
        images that are the sample itself (so a training image's map stays leave-one-out)."""
        bank, desc = self.cell_bank, desc - self.cell_mean
        # (N, cells, K) squared distances less |desc|^2, only to pick the nearest: one matrix product of
        # [desc, 1] with [-2 bank, |bank|^2] (ONNX Runtime folds the constant side). Centred, the terms stay
        # small, so ONNX Runtime and PyTorch pick the same cell of two nearly tied ones.
        terms = torch.cat([-2.0 * bank.t(), (bank * bank).sum(dim=1, keepdim=True).t()])
        sq = torch.matmul(torch.cat([desc, torch.ones_like(desc[:, :, :1])], dim=2), terms)
        # the sample's own cells are pushed out of reach per image (N, 1, K), not per cell (a float gather:
        # some runtimes gather no booleans)
        penalty = torch.where(itself, self.skip_penalty, 0.0).to(sq.dtype)
        sq = sq + penalty.index_select(1, self.cell_source).unsqueeze(1)
        nearest = bank.index_select(0, sq.argmin(dim=2).flatten()).view(desc.shape)
        return torch.sqrt(((desc - nearest) ** 2).sum(dim=2))

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

    @classmethod
    def leave_one_out(cls, params: dict[str, Any]) -> bool:
        return params["nearest"] == "image"

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
            bank = bank[evenly_spaced(len(bank), limit)]
        raw = bank
        if self.params["nearest"] == "image":
            mean = bank.mean(dim=0)
            self.bank_mean = mean.to(device)
            bank = bank - mean
        self.bank = bank.to(device)
        self.params["n_bank"] = len(bank)
        if self.params["anywhere"]:
            self._fit_anywhere(raw, device)

    def _fit_anywhere(self, raw: torch.Tensor, device: torch.device) -> None:
        """The position-free bank (a greedy coreset of the bank images' cells) and the two halves' scales: their
        mean leave-one-out distances over (up to SCALE_IMAGES of) the bank images."""
        cells = raw.reshape(-1, raw.shape[2])
        picked = greedy_coreset(cells, int(self.params["anywhere"]))
        mean = cells[picked].mean(dim=0)
        self.cell_mean = mean.to(device)
        self.cell_bank = (cells[picked] - mean).to(device)
        self.cell_source = (picked // raw.shape[1]).to(device)
        self.params["n_cells"] = len(picked)
        # |a - b|^2 <= 4 R^2 for any two cells within R of the mean: the sample's own cells then lose to every
        # other cell (only training images have own cells in the bank)
        reach = float(((cells - mean) ** 2).sum(dim=1).max())
        self.skip_penalty = torch.tensor(4.0 * reach + 1.0, device=device)
        probe = raw[evenly_spaced(len(raw), SCALE_IMAGES)]
        sums = torch.zeros(2, dtype=torch.float64)
        # a few images at a time: the anywhere half holds (images, cells, K) distances
        for chunk in probe.split(SCALE_CHUNK):
            chunk = chunk.to(device)
            aligned, itself = self._aligned(chunk)
            anywhere = self._anywhere(chunk, itself)
            sums += torch.stack([aligned.double().sum(), anywhere.double().sum()]).cpu()
        means = (sums / (len(probe) * raw.shape[1])).tolist()
        # no spread at all (one image, identical images): unit scales, the map is then the plain sum
        self.scales = torch.tensor([m if m > 1e-9 else 1.0 for m in means], device=device)


def evenly_spaced(n: int, count: int) -> torch.Tensor:
    """Indices of `count` of `n` rows spread evenly from the first to the last (all of them when n <= count)."""
    return torch.from_numpy(np.linspace(0, n - 1, min(n, count)).round().astype(np.int64))


def auto_grid(h: int, w: int) -> int:
    """Cells of CELL_SIDE pixels when both sides divide into them and that gives more than DEFAULT_GRID a side
    (256 px: 16 x 16 cells); otherwise DEFAULT_GRID (8 x 8 cells, 16 px at 128, 4 px at 32)."""
    grid = min(h, w) // CELL_SIDE
    return grid if grid > DEFAULT_GRID and h % grid == 0 and w % grid == 0 else DEFAULT_GRID


def greedy_coreset(points: torch.Tensor, size: int) -> torch.Tensor:
    """Indices of `size` rows chosen greedily, each the farthest from those already chosen (k-center), starting
    with the farthest from the mean: a small bank that still covers rare normal cells (random thinning drops
    them). All rows when there are no more than `size`."""
    n = len(points)
    if n <= size:
        return torch.arange(n)
    x = points.float()
    norms = (x * x).sum(dim=1)
    first = int(((x - x.mean(dim=0)) ** 2).sum(dim=1).argmax())
    picked = torch.empty(size, dtype=torch.int64)
    gap = torch.full((n,), math.inf)
    for i in range(size):
        j = first if i == 0 else int(gap.argmax())
        picked[i] = j
        # squared distance to the new centre by expansion (a matrix-vector product per step)
        gap = torch.minimum(gap, norms + norms[j] - 2.0 * (x @ x[j]))
    return picked


def balancing_weight(hist: torch.Tensor, colour: torch.Tensor) -> float:
    """sqrt(per-cell variance of the histograms / of the colours) over the training images, each summed over
    its values and averaged over cells; 1 when either does not vary (one image, a flat colour)."""
    h = float(hist.double().var(dim=0, unbiased=False).sum(dim=1).mean()) if len(hist) > 1 else 0.0
    c = float(colour.double().var(dim=0, unbiased=False).sum(dim=1).mean()) if len(colour) > 1 else 0.0
    return math.sqrt(h / c) if h > 1e-12 and c > 1e-12 else 1.0


def reference_maps(
    x: np.ndarray,
    bank: np.ndarray,
    params: dict[str, Any],
    anywhere: Optional[tuple[np.ndarray, np.ndarray, np.ndarray]] = None,
) -> np.ndarray:
    """The model's cell map (N, grid, grid) in float64 NumPy, written out independently (the parity reference
    for tests). `bank`: the fitted descriptors, uncentred; params as fitted (a numeric colour_weight);
    `anywhere`: (cell descriptors, their bank images, the two scales) when the position-free half is on."""
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
        itself = whole < SELF_DISTANCE  # the image itself
        whole[itself] = np.inf
        dist = per_cell[np.arange(n), whole.argmin(axis=1)]
        if anywhere is not None:
            cells, source, scales = (np.asarray(a) for a in anywhere)
            to_cells = np.linalg.norm(desc[:, :, None] - np.asarray(cells, np.float64)[None, None], axis=3)
            to_cells[np.broadcast_to(itself[:, None, source], to_cells.shape)] = np.inf  # its own cells
            dist = dist / scales[0] + to_cells.min(axis=2) / scales[1]
    return dist.reshape(n, grid, grid)


def reference_scores(maps: np.ndarray, topk: int) -> np.ndarray:
    """Mean of the `topk` largest cells of each of `reference_maps`' maps."""
    dist = np.asarray(maps).reshape(len(maps), -1)
    return np.sort(dist, axis=1)[:, ::-1][:, :topk].mean(axis=1)
