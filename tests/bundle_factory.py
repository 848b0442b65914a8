"""Tiny, real model bundles for tests: an untrained torch autoencoder exported to ONNX plus bundle.json.

Kinds: image (conv AE, [C, H, W]), window (MLP AE on [T, C]) and vector (MLP AE on [F]). The ONNX model has
input `input`, output `reconstruction` and a dynamic batch axis, exported with the legacy exporter
(fast). Any test may use it; `make_bundle` trains nothing, so a bundle takes well under a second to build.
`train_tiny_conv_ae` is the exception: a real 1-epoch bundle through `train_bundle`, for export and serving tests
that need a checkpoint (on `grating_images` when they need images with structure and defects).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np


def _image_model(channels: int) -> Any:
    import torch.nn as nn

    return nn.Sequential(
        nn.Conv2d(channels, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(16, 8, 4, stride=2, padding=1),
        nn.ReLU(),
        nn.ConvTranspose2d(8, channels, 4, stride=2, padding=1),
        nn.Sigmoid(),
    )


def _mlp_model(shape: tuple[int, ...]) -> Any:
    import torch.nn as nn

    features = int(np.prod(shape))
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(features, 16),
        nn.ReLU(),
        nn.Linear(16, features),
        nn.Unflatten(1, shape),
    )


def export_onnx(model: Any, sample_shape: tuple[int, ...], path: Path) -> Path:
    """Legacy (fast) exporter, opset 17, dynamic batch axis; input `input`, output `reconstruction`."""
    import torch

    model.eval()
    dummy = torch.zeros((1, *sample_shape), dtype=torch.float32)
    torch.onnx.export(
        model,
        (dummy,),
        str(path),
        input_names=["input"],
        output_names=["reconstruction"],
        dynamic_axes={"input": {0: "batch"}, "reconstruction": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return path


def _threshold(value: float) -> dict[str, Any]:
    return {
        "value": value,
        "method": "percentile:99.5",
        "stats": {
            "mean": value / 2,
            "std": value / 10,
            "min": 0.0,
            "max": value,
            "quantiles": {"0.5": value / 2, "0.99": value * 0.9},
        },
    }


def make_bundle(
    path: Path,
    kind: str = "image",
    size: int = 32,
    color: str = "gray",
    window: tuple[int, int] = (16, 3),
    features: int = 8,
    fp16: bool = False,
    seed: int = 0,
) -> Path:
    """Write a complete bundle directory at `path` and return it.

    image: shape [C, size, size], map scoring (blur_sigma 1, topk_mean k 10); window: shape [T, C] with a
    standard scaler; vector: shape [F] with a standard scaler. `fp16` also writes model_fp16.onnx.
    """
    import torch

    from edgeanom.bundle import new_bundle, onnx_section, preprocess_section

    torch.manual_seed(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    if kind == "image":
        channels = 1 if color == "gray" else 3
        shape: tuple[int, ...] = (channels, size, size)
        model = _image_model(channels)
        preprocess = preprocess_section(image={"size": [size, size], "color": color})
        score_map: Optional[dict[str, Any]] = {"blur_sigma": 1.0, "mode": "topk_mean", "k": 10}
    elif kind in ("window", "vector"):
        shape = tuple(window) if kind == "window" else (features,)
        model = _mlp_model(shape)
        width = shape[-1]
        preprocess = preprocess_section(
            scaler={"kind": "standard", "offset": [0.0] * width, "scale": [1.0] * width},
            window={"length": shape[0], "stride": 1} if kind == "window" else None,
            columns=[f"c{i}" for i in range(width)],
        )
        score_map = None
    else:
        raise ValueError(f"unknown kind {kind!r}")
    export_onnx(model, shape, path / "model.onnx")
    fp16_file: Optional[str] = None
    if fp16:
        fp16_file = write_fp16_onnx(path / "model.onnx", path / "model_fp16.onnx").name
    new_bundle(
        path,
        model_type="conv-ae" if kind == "image" else "mlp-ae",
        input_kind=kind,
        shape=shape,
        names=preprocess["columns"] or [],
        preprocess=preprocess,
        score_map=score_map,
        threshold=_threshold(0.05),
        onnx=onnx_section("reconstruction", fp16_file=fp16_file),
        data={"fingerprint": "synthetic", "train": 0, "val": 0},
    ).save()
    return path


def write_fp16_onnx(src: Path, dst: Path) -> Path:
    """FP16 weights and compute, FP32 inputs/outputs (what `edgeanom export --fp16` is expected to write)."""
    import onnx
    from onnxconverter_common import float16

    model = float16.convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    return dst


def train_tiny_conv_ae(out: Path, data: Optional[Path] = None) -> Path:
    """A real conv-AE bundle (1 epoch, tiny layers) written by `train_bundle`: on `data` (an image folder,
    e.g. from `grating_images`) or on 16 frames of 32x32 grey noise."""
    import warnings

    from edgeanom.train.api import train_bundle

    rng = np.random.default_rng(0)
    frames = (
        None if data is not None else [(100 + 30 * rng.random((32, 32))).astype(np.uint8) for _ in range(16)]
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the tracer's notes during train_bundle's ONNX export
        train_bundle(
            data,
            frames=frames,
            model="conv-ae",
            out=out,
            epochs=1,
            image_size=32,
            channels=[4, 8],
            latent=8,
            threads=1,
            progress=False,
        )
    return out


def grating_images(
    folder: Path, n: int, seed: int = 0, color: bool = False, defect: Callable[[int], bool] = lambda i: False
) -> Path:
    """`n` 32x32 PNGs of a vertical grating with sensor noise (grey, or noise per colour channel); images
    `defect(i)` holds for get a saturated 10x10 square."""
    import cv2

    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    grating = 90 + 70 * np.sin(np.arange(32) / 3.0)[None, :]
    if color:
        grating = grating[..., None]
    for i in range(n):
        img = (grating + rng.normal(0, 5, (32, 32, 3) if color else (32, 32))).clip(0, 255)
        if defect(i):
            img[10:20, 10:20] = 255
        cv2.imwrite(str(folder / f"{i:02d}.png"), img.astype(np.uint8))
    return folder


def preprocess_only_bundle(root: Path, model_type: str, shape: list[int], image: dict[str, Any]) -> Any:
    """A bundle.json with an image `preprocess` section and nothing to run: for tests of preprocessing alone."""
    from edgeanom.bundle import fixed_threshold, new_bundle, preprocess_section

    return new_bundle(
        root,
        model_type=model_type,
        input_kind="image",
        shape=shape,
        preprocess=preprocess_section(image=image),
        threshold=fixed_threshold(1.0),
    )
