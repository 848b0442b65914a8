"""Training options: defaults, a YAML config file, and keyword/flag overrides (flags win)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from edgeanom.errors import EdgeanomError
from edgeanom.threads import resolve_threads  # noqa: F401 (re-exported)

# Images: an expected false-alarm rate, extrapolated from the held-out scores' tail when they are few (tens of
# images would otherwise put the threshold at their maximum). An image set (parts, cells: one decision per
# image, a person checks what is flagged) aims at 1 good image in 20, where recall on hard defects is still
# high; frames in time order (video, captures) at 1 in 100, since `run` decides on every frame. Sensors and
# tables: the 99th percentile of many windows/rows.
DEFAULT_THRESHOLD = {"image": "fpr:0.05", "window": "percentile:99", "vector": "percentile:99"}
ORDERED_FRAMES_THRESHOLD = "fpr:0.01"


def default_threshold(kind: str, ordered: bool) -> str:
    """The threshold method when none is given: by input kind, and for images whether they are frames in time
    order."""
    return ORDERED_FRAMES_THRESHOLD if kind == "image" and ordered else DEFAULT_THRESHOLD[kind]


@dataclass
class TrainOptions:
    """Everything `train` can be told. Names match the CLI flags (with '-' for '_') and config keys."""

    model: Optional[str] = None  # default by input kind: grad-knn / window-ae / dense-ae (the registry's)
    out: str = "edgeanom-model"
    input_kind: Optional[str] = None  # image | window | vector (guessed from the data when unset)
    epochs: int = 50
    batch_size: Optional[int] = None  # default: 16 for images, 64 otherwise
    lr: float = 1e-3
    weight_decay: Optional[float] = None  # default: 1e-6 for deep-svdd, 0 otherwise
    loss: str = "l2"  # l2 | ssim+l2
    patience: Optional[int] = None  # stop after this many epochs without a better validation loss
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    threads: Optional[int] = None  # torch/ORT CPU threads (default: min(2, cores))
    val_fraction: float = 0.2
    folds: int = (
        0  # K >= 2: K extra trainings give every training sample an out-of-fold score for calibration
    )
    threshold: Optional[str] = None  # None: `default_threshold` (fpr:0.05 image sets, fpr:0.01 frames, ...)
    # images
    image_size: Optional[Any] = None  # int or [H, W]; default 128 (a model's image_set_side for image sets)
    color: str = "auto"  # auto | gray | rgb
    frame_step: int = 1
    frame_pack: int = 0  # S > 0: pack grey frames t-2S, t-S, t as channels (video models); 0: off
    pack_frames: Optional[int] = None  # frames packed with --frame-pack (default: what the model reads, 3)
    max_frames: Optional[int] = None
    # in-memory `frames` are a video's frames in time order (validation = the last block); False: an unordered
    # set of images, split at random like an image folder
    frames_ordered: bool = True
    blur_sigma: Optional[float] = None  # default: 2 * min(H, W) / 128
    map_mode: str = "topk_mean"
    topk: Optional[int] = None  # default: 1% of the pixels
    map_normalize: bool = True  # z-score the blurred map per pixel by its training statistics (map_norm.py)
    # tables and series
    scaler: Optional[str] = None  # minmax | standard (default: minmax for vae, standard otherwise)
    columns: Optional[list[str]] = None
    ignore_columns: list[str] = field(default_factory=list)
    label_column: Optional[str] = None
    time_column: Optional[str] = None
    drop_na: bool = False
    window: Optional[int] = None  # None: 64 rows, fewer for short data, or what the model needs (seasonal)
    stride: int = 1
    # labelled validation data (for --threshold f1)
    val_data: Optional[Any] = None
    val_labels: Optional[Any] = None
    holdout_samples: int = 256  # held-out normal samples (and anomalies) kept in holdout.npz; 0: none
    progress: bool = True
    params: dict[str, Any] = field(default_factory=dict)  # model hyper-parameters


_FIELDS = {f.name for f in dataclasses.fields(TrainOptions)}
_LIST_FIELDS = ("columns", "ignore_columns")


def read_config(path: Optional[Any]) -> dict[str, Any]:
    """The mapping in a YAML config file ({} for None)."""
    if path is None:
        return {}
    import yaml

    p = Path(path)
    if not p.is_file():
        raise EdgeanomError(f"config file '{p}' does not exist")
    try:
        spec = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except UnicodeDecodeError:
        raise EdgeanomError(f"{p}: not a text file (a YAML config is UTF-8 text)") from None
    except yaml.YAMLError as exc:
        raise EdgeanomError(f"{p}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise EdgeanomError(f"{p}: expected a mapping of option names to values at the top level")
    return spec


def build_options(config: Optional[Any] = None, **overrides: Any) -> TrainOptions:
    """Defaults < config file < overrides (None overrides are ignored). Unknown names are model params."""
    opts = TrainOptions()
    params: dict[str, Any] = {}
    for source in (read_config(config), {k: v for k, v in overrides.items() if v is not None}):
        for raw_key, value in source.items():
            key = str(raw_key).replace("-", "_")
            if key == "params":
                if not isinstance(value, dict):
                    raise EdgeanomError(
                        f"'params' must be a mapping of hyper-parameter names to values, got {value!r}"
                    )
                params.update({str(k).replace("-", "_"): v for k, v in value.items()})
            elif key in _FIELDS:
                if key in _LIST_FIELDS and isinstance(value, str):
                    value = [c.strip() for c in value.split(",") if c.strip()]
                setattr(opts, key, value)
            else:
                params[key] = value
    opts.params = params
    return opts


def parse_param(text: str) -> tuple[str, Any]:
    """'latent=10' -> ('latent', 10); 'hidden=64,32' -> ('hidden', [64, 32]); values parsed as YAML."""
    import yaml

    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise EdgeanomError(f"--param {text!r}: expected NAME=VALUE, e.g. --param latent=10")
    parsed = yaml.safe_load(f"[{value}]") if "," in value else yaml.safe_load(value)
    return key.strip().replace("-", "_"), parsed
