"""Turn loaded data into model-ready train / validation tensors, using the deployed preprocessing.

Images go through `ImagePreprocessor`; tables and windows through a `FeatureScaler` fitted on training normal
data only. Validation is held out before anything is fitted: a random split for still images and table rows,
the tail of every sequence for video frames and sensor series (never shuffled across time). Samples labelled
anomalous in the training data are never trained on; they join the validation set (used by `--threshold f1`).
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from edgeanom.data import (
    FrameRecord,
    Table,
    is_gray_content,
    random_split,
    split_counts,
    temporal_split,
    windows_with_labels,
)
from edgeanom.errors import EdgeanomError
from edgeanom.models.registry import get_model
from edgeanom.preprocess import NEW_BUNDLE_RESIZE, FeatureScaler, ImagePreprocessor
from edgeanom.train.config import TrainOptions

CHUNK = 64


@dataclass
class Prepared:
    """Model-ready arrays plus everything the bundle must record about how they were made."""

    kind: str
    shape: tuple[int, ...]
    train_x: np.ndarray
    val_x: np.ndarray  # held-out normal samples
    val_anomalous_x: Optional[np.ndarray]  # labelled anomalies (calibration only)
    preprocess: dict[str, Any]
    names: Optional[list[str]]
    info: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for a in (self.train_x, self.val_x):
            h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()[:16]


DEFAULT_IMAGE_SIDE = 128
SMALL_IMAGE_MULTIPLE = 16  # the default image models halve the input four times
MIN_IMAGE_SIDE = 32
MAX_IMAGE_SIDE = 4096  # larger model inputs only exhaust memory on the devices this runs on


def image_size(value: Any) -> Optional[tuple[int, int]]:
    """128 -> (128, 128); [96, 128] or '96x128' -> (96, 128); None -> None (chosen from the data)."""
    if value is None:
        return None
    given = value
    if isinstance(value, str):
        parts = value.lower().replace(",", "x").split("x")
        value = [int(p) for p in parts if p.strip()]
    if isinstance(value, (int, np.integer)):
        value = [int(value), int(value)]
    size = [int(v) for v in value]
    if len(size) == 1:
        size = size * 2
    if len(size) != 2 or min(size) < 8 or max(size) > MAX_IMAGE_SIDE:
        raise EdgeanomError(
            f"--image-size must be N or HxW with sides from 8 to {MAX_IMAGE_SIDE}, got {given!r}"
        )
    return size[0], size[1]


# --- images -----------------------------------------------------------------------------------------------
def frame_pack_spacing(opts: TrainOptions) -> int:
    """The --frame-pack spacing S (0 = off), checked against the other image options."""
    value = opts.frame_pack
    try:
        spacing = int(value or 0)
    except (TypeError, ValueError):
        raise EdgeanomError(f"--frame-pack must be a whole number of frames, got {value!r}") from None
    if spacing < 0:
        raise EdgeanomError(f"--frame-pack must be >= 1 (0: off), got {spacing}")
    if spacing and opts.color not in ("auto", "rgb"):
        raise EdgeanomError(
            f"--frame-pack packs grey frames as the channels: use --color rgb (or auto), not {opts.color!r}"
        )
    return spacing


def frame_pack_count(opts: TrainOptions) -> int:
    """How many frames --frame-pack packs (--pack-frames; 3 unless the model reads longer clips)."""
    from edgeanom.preprocess import MAX_PACKED_FRAMES

    value = 3 if opts.pack_frames is None else opts.pack_frames
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise EdgeanomError(f"--pack-frames must be a whole number of frames, got {value!r}") from None
    if not 2 <= count <= MAX_PACKED_FRAMES:
        raise EdgeanomError(f"--pack-frames must be in [2, {MAX_PACKED_FRAMES}], got {count}")
    return count


def size_from_frames(frames: list[np.ndarray], preferred: int = DEFAULT_IMAGE_SIDE) -> tuple[int, int]:
    """The default model size, square: `preferred` (128, or the model's `image_set_side` for an image set)
    when the images' smaller side is at least that; between 128 and it, that side rounded down to a multiple
    of 16 (images are never blown up); below 128 (a 28 x 28 folder) their side rounded up to a multiple of 16,
    at least 32, so small images are not blown up to 128."""
    side = min(min(f.shape[:2]) for f in frames)
    if side >= preferred:
        return (preferred, preferred)
    if side >= DEFAULT_IMAGE_SIDE:
        rounded = side // SMALL_IMAGE_MULTIPLE * SMALL_IMAGE_MULTIPLE
        return (rounded, rounded)
    rounded = max(MIN_IMAGE_SIDE, -(-side // SMALL_IMAGE_MULTIPLE) * SMALL_IMAGE_MULTIPLE)
    return (rounded, rounded)


def preprocess_frames(
    records: Iterable[FrameRecord],
    size: Optional[tuple[int, int]],
    color: str,
    packed: int = 0,
    preferred_side: int = DEFAULT_IMAGE_SIDE,
) -> tuple[np.ndarray, list[FrameRecord], str]:
    """Decode-order records -> (N, C, H, W) float32 via ImagePreprocessor; frames are dropped after use.

    `color='auto'` picks gray when the first frames have no colour; `size` None picks it from the first
    frames (`size_from_frames`, towards `preferred_side`). `packed` = T: the records hold frames packed T to a
    sample (`FramePacker`). Returned records keep metadata only.
    """
    it: Iterator[FrameRecord] = iter(records)
    head = list(itertools.islice(it, 8))
    if not head:
        raise EdgeanomError("no frames could be decoded")
    if size is None:
        size = size_from_frames([r.frame for r in head], preferred_side)
    if color == "auto":
        color = "gray" if is_gray_content([r.frame for r in head]) else "rgb"
    pre = ImagePreprocessor(size, color, packed, NEW_BUNDLE_RESIZE)
    chunks: list[np.ndarray] = []
    kept: list[FrameRecord] = []
    pending: list[FrameRecord] = []

    def flush() -> None:
        if pending:
            out = np.empty((len(pending), *pre.sample_shape), dtype=np.float32)
            chunks.append(pre([r.frame for r in pending], out=out))
            for r in pending:
                r.frame = np.empty(0, dtype=np.uint8)  # release the decoded frame
            kept.extend(pending)
            pending.clear()

    for rec in itertools.chain(head, it):
        pending.append(rec)
        if len(pending) >= CHUNK:
            flush()
    flush()
    return np.concatenate(chunks), kept, color


def prepare_images(
    records: Iterable[FrameRecord],
    ordered: bool,
    opts: TrainOptions,
    source: str,
    skipped: Any,
    n_warmup: Callable[[], int] = lambda: 0,
    preferred_side: int = DEFAULT_IMAGE_SIDE,
    min_split: int = 2,
) -> Prepared:
    """Decode, resize and split image records. `min_split`: the fewest images either side of the split may
    keep (1 for a bank that scores every image leave-one-out, which needs only two images in all)."""
    spacing = frame_pack_spacing(opts)
    try:
        x, recs, color = preprocess_frames(
            records,
            image_size(opts.image_size),
            "rgb" if spacing else opts.color,
            frame_pack_count(opts) if spacing else 0,
            preferred_side,
        )
    except EdgeanomError as exc:
        if str(exc) != "no frames could be decoded":
            raise
        n_bad = len(skipped()) if callable(skipped) else 0
        raise EdgeanomError(
            f"{source}: none of the images could be decoded ({n_bad} unreadable files)"
        ) from None
    labels = np.array([r.label or 0 for r in recs], dtype=np.int8)
    normal = np.flatnonzero(labels == 0)
    if ordered:
        tr, va = temporal_split([recs[i].sequence for i in normal], opts.val_fraction, "frames")
    else:
        tr, va = random_split(normal.size, opts.val_fraction, opts.seed, "images", min_each=min_split)
    anomalous = np.flatnonzero(labels == 1)
    h, w = int(x.shape[2]), int(x.shape[3])
    sigma = float(opts.blur_sigma) if opts.blur_sigma is not None else round(2.0 * min(h, w) / 128.0, 3)
    k = int(opts.topk) if opts.topk is not None else max(1, round(0.01 * h * w))
    bad = skipped() if callable(skipped) else []
    info = {
        "source": source,
        "n_frames": len(recs),
        "n_skipped": len(bad),
        # packed: the frames before each sequence's first sample
        **({"n_warmup_frames": n_warmup()} if spacing else {}),
        "skipped": list(bad)[:20],
        "n_anomalous_in_training_data": int(anomalous.size),
        "split": "temporal" if ordered else "random",
        "score_map": {"blur_sigma": sigma, "mode": opts.map_mode, "k": k},
    }
    return Prepared(
        kind="image",
        shape=(int(x.shape[1]), h, w),
        train_x=x[normal[tr]],
        val_x=x[normal[va]],
        val_anomalous_x=x[anomalous] if anomalous.size else None,
        preprocess={
            "image": {
                "size": [h, w],
                "color": color,
                "resize": NEW_BUNDLE_RESIZE,
                **({"pack": {"frames": frame_pack_count(opts), "spacing": spacing}} if spacing else {}),
            },
            "scaler": None,
            "window": None,
            "columns": None,
            "time_column": None,
        },
        names=None,
        info=info,
    )


# --- vectors ----------------------------------------------------------------------------------------------
def default_scaler(opts: TrainOptions, model_type: str) -> str:
    return opts.scaler or get_model(model_type).scaler


def prepare_vectors(tables: list[Table], opts: TrainOptions, model_type: str) -> Prepared:
    x = np.concatenate([t.values for t in tables])
    labels = np.concatenate(
        [t.labels if t.labels is not None else np.zeros(len(t.values), np.int8) for t in tables]
    )
    normal = np.flatnonzero(labels == 0)
    anomalous = np.flatnonzero(labels == 1)
    tr, va = random_split(normal.size, opts.val_fraction, opts.seed, "rows")
    scaler = FeatureScaler.fit(x[normal[tr]], default_scaler(opts, model_type))
    columns = tables[0].columns
    return Prepared(
        kind="vector",
        shape=(len(columns),),
        train_x=scaler(x[normal[tr]]),
        val_x=scaler(x[normal[va]]),
        val_anomalous_x=scaler(x[anomalous]) if anomalous.size else None,
        preprocess={
            "image": None,
            "scaler": scaler.to_json(),
            "window": None,
            "columns": columns,
            "time_column": None,
        },
        names=columns,
        info=_table_info(tables, anomalous.size, "random"),
    )


def _table_info(tables: list[Table], n_anomalous: int, split: str) -> dict[str, Any]:
    return {
        "source": ", ".join(t.source for t in tables[:5]) + (" ..." if len(tables) > 5 else ""),
        "n_files": len(tables),
        "n_rows": int(sum(len(t.values) for t in tables)),
        "n_dropped_rows": int(sum(t.dropped_rows for t in tables)),
        "ignored_columns": sorted({c for t in tables for c in t.ignored_columns}),
        "time_notes": [n for t in tables for n in t.time_notes][:20],
        "label_column": tables[0].label_column,
        "n_anomalous_in_training_data": int(n_anomalous),
        "split": split,
    }


# --- windows ----------------------------------------------------------------------------------------------
DEFAULT_WINDOW = 64
MIN_AUTO_WINDOW = 8
WINDOWS_PER_ROW_BUDGET = 8  # an automatic window is at most 1/8 of the training rows


def auto_window(
    rows: int, model_type: str, series: np.ndarray, params: Optional[dict[str, Any]] = None
) -> int:
    """The window when --window is not given: what the model asks for (a seasonal detector needs three
    periods), else 64 rows, shortened so that short recordings (a few hundred rows) still give enough
    training and validation windows."""
    wanted = getattr(get_model(model_type), "window_for", None)
    if wanted is not None:
        return int(wanted(series, dict(params or {})))
    length = min(DEFAULT_WINDOW, rows // WINDOWS_PER_ROW_BUDGET)
    if length < MIN_AUTO_WINDOW:
        raise EdgeanomError(
            f"too little data: {rows} training rows; a sensor model needs at least "
            f"{MIN_AUTO_WINDOW * WINDOWS_PER_ROW_BUDGET} (about {DEFAULT_WINDOW * WINDOWS_PER_ROW_BUDGET} for "
            f"the default {DEFAULT_WINDOW}-row window), or give a short --window"
        )
    return length


def prepare_windows(tables: list[Table], opts: TrainOptions, model_type: str) -> Prepared:
    rows = sum(len(t.values) for t in tables)
    split_counts(rows, opts.val_fraction, "time steps")
    train_rows = rows - round(rows * opts.val_fraction)
    length = (
        int(opts.window)
        if opts.window
        else auto_window(
            train_rows, model_type, np.concatenate([t.values for t in tables])[:train_rows], opts.params
        )
    )
    stride = int(opts.stride)
    if length < 2 or stride < 1:
        raise EdgeanomError(f"--window must be >= 2 and --stride >= 1, got window={length} stride={stride}")
    train_parts, val_parts = [], []
    for t in tables:
        n = len(t.values)
        cut = n - round(n * opts.val_fraction)
        labels = t.labels if t.labels is not None else np.zeros(n, np.int8)
        train_parts.append((t.values[:cut], labels[:cut]))
        val_parts.append((t.values[cut:], labels[cut:]))
    fit_rows = np.concatenate([v[lab == 0] for v, lab in train_parts])
    if fit_rows.shape[0] < 2:
        raise EdgeanomError("too little normal training data to fit the scaler (fewer than 2 normal rows)")
    scaler = FeatureScaler.fit(fit_rows, default_scaler(opts, model_type))

    def windows(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
        ws, ys = zip(
            *(windows_with_labels(scaler(values), labels, length, stride) for values, labels in parts)
        )
        return np.concatenate(ws), np.concatenate(ys)

    tw, ty = windows(train_parts)
    vw, vy = windows(val_parts)
    if (ty == 0).sum() < 2 or (vy == 0).sum() < 2:
        raise EdgeanomError(
            f"too little data for window length {length}: {int((ty == 0).sum())} normal training and "
            f"{int((vy == 0).sum())} validation windows (need at least 2 each); use a shorter --window, "
            "more data or another --val-fraction"
        )
    anomalous = np.concatenate([tw[ty == 1], vw[vy == 1]])
    columns = tables[0].columns
    info = _table_info(tables, int(anomalous.shape[0]), "temporal")
    info["n_windows"] = int(len(tw) + len(vw))
    return Prepared(
        kind="window",
        shape=(length, len(columns)),
        train_x=tw[ty == 0],
        val_x=vw[vy == 0],
        val_anomalous_x=anomalous if anomalous.size else None,
        preprocess={
            "image": None,
            "scaler": scaler.to_json(),
            "window": {"length": length, "stride": stride},
            "columns": columns,
            "time_column": tables[0].time_column,
        },
        names=columns,
        info=info,
    )
