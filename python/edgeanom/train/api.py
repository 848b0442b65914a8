"""`train_bundle`: normal data in, a calibrated model bundle out (the function behind `edgeanom train`).

Steps: load data -> hold out validation -> preprocess with the deployed pipeline -> train (torch) or fit
(scikit-learn) -> export FP32 ONNX -> (images) per-pixel statistics of the training images' error maps
(map_norm.py) -> score held-out data through ONNX Runtime and the C++ scorer -> calibrate the threshold ->
keep a capped sample of held-out and training inputs (holdout.npz, for export's parity checks) -> write the
bundle. Everything is written to a staging folder first and moved into place at the end (bundle.json last),
so an existing bundle is never left half-overwritten.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom import data as loaders
from edgeanom.adaptive import section as adaptive_section
from edgeanom.bundle import BUNDLE_FILE, Bundle, load_bundle, new_bundle, onnx_section
from edgeanom.calibration import calibrate, check_labels, parse_method
from edgeanom.errors import EdgeanomError
from edgeanom.fileio import check_output_dir
from edgeanom.models import default_model, get_model, model_kinds
from edgeanom.models.registry import resolve_params
from edgeanom.train.config import TrainOptions, build_options, default_threshold, resolve_threads
from edgeanom.train.prepare import (
    DEFAULT_IMAGE_SIDE,
    Prepared,
    frame_pack_count,
    frame_pack_spacing,
    prepare_images,
    prepare_vectors,
    prepare_windows,
    preprocess_frames,
)

KINDS = ("image", "window", "vector")


def train_bundle(
    data: Any = None,
    model: Optional[str] = None,
    out: Any = None,
    *,
    frames: Any = None,
    table: Any = None,
    series: Any = None,
    labels: Any = None,
    config: Any = None,
    **options: Any,
) -> Bundle:
    """Train on normal data and write a bundle to `out` (default ./edgeanom-model); returns the loaded bundle.

    Give data as a path (`data`: image/video folder or file, CSV/Parquet table or sensor CSV) or in memory:
    `frames` (list of BGR uint8 arrays), `table` (array or DataFrame of rows) or `series` ((T, C) array or
    DataFrame). `labels` (1 = anomaly) mark known anomalies, which are held out of training and used for
    calibration. Options are TrainOptions fields (epochs, batch_size, lr, image_size, color, window,
    stride, scaler, threshold, val_fraction, seed, device, loss, frame_pack, map_normalize, ...); other
    keywords are model hyper-parameters (e.g. latent=10, beta=0.1). `config` is a YAML file whose values the keywords override.
    `frame_pack=S` packs each sequence's grey frames t-2S, t-S, t as the channels of one RGB frame (causal,
    recorded as preprocess.image.pack) and makes `frame-pred` the default model; `frames=` is one sequence.
    """
    opts = build_options(config, model=model, out=None if out is None else str(out), **options)
    check_output_dir(Path(opts.out), "--out")  # before any work: a wrong --out must not cost a training run
    loaders.single_source(data=data, frames=frames, table=table, series=series)
    kind = _input_kind(opts, data, frames, table, series)
    packing = frame_pack_spacing(opts) > 0
    if packing and kind != "image":
        raise EdgeanomError(f"--frame-pack packs video frames, but the data are {kind}s")
    if not packing and opts.pack_frames is not None:
        raise EdgeanomError(
            f"--pack-frames {opts.pack_frames} needs --frame-pack S (the spacing of the frames)"
        )
    model_type = opts.model or default_model(kind, packed_frames=packing)
    if kind not in model_kinds(model_type):
        raise EdgeanomError(
            f"model {model_type!r} takes {' or '.join(model_kinds(model_type))} input, the data are {kind}s"
        )
    model_cls = get_model(model_type)
    model_cls.check_params(resolve_params(model_type, opts.params, model_cls.defaults))
    _check_folds(opts.folds, model_type, model_cls.family)
    if opts.threshold is not None:
        parse_method(opts.threshold)  # before any work: a wrong --threshold must not cost a training run
    if packing and opts.pack_frames is None:
        opts.pack_frames = model_cls.packed_frames  # the clip length the model reads (3 unless it says)
    prepared = _prepare(kind, opts, model_type, data, frames, table, series, labels)
    if opts.val_data is not None:
        _add_validation_data(prepared, opts)
    if opts.threshold is None:
        opts.threshold = default_threshold(kind, _ordered(prepared))
    check_labels(opts.threshold, 0 if prepared.val_anomalous_x is None else len(prepared.val_anomalous_x))
    return _train_and_write(prepared, opts, model_type)


def _check_folds(value: Any, model_type: str, family: str) -> None:
    try:
        folds = int(value or 0)
    except (TypeError, ValueError):
        raise EdgeanomError(f"--folds must be a whole number, got {value!r}") from None
    if folds and not 2 <= folds <= 20:
        raise EdgeanomError(f"--folds must be 0 (off) or in [2, 20], got {folds}")
    if folds and family != "torch":
        raise EdgeanomError(f"--folds retrains torch models; {model_type!r} is fitted once, use --folds 0")


def _input_kind(opts: TrainOptions, data: Any, frames: Any, table: Any, series: Any) -> str:
    if opts.input_kind is not None:
        if opts.input_kind not in KINDS:
            raise EdgeanomError(f"--input-kind must be one of {', '.join(KINDS)}, got {opts.input_kind!r}")
        return str(opts.input_kind)
    if frames is not None:
        return "image"
    if table is not None:
        return "vector"
    if series is not None:
        return "window"
    if opts.model and len(model_kinds(opts.model)) == 1:
        return model_kinds(opts.model)[0]
    if not isinstance(data, (str, os.PathLike)):
        raise EdgeanomError("data= must be a path; pass arrays as frames=, table= or series=")
    return loaders.guess_kind(data)


def _load_tables(source: Any, opts: TrainOptions, labels: Any, detect_time: bool) -> list[loaders.Table]:
    return loaders.load_tables(
        source,
        columns=opts.columns,
        label_column=opts.label_column,
        time_column=opts.time_column,
        detect_time=detect_time,
        drop_na=opts.drop_na,
        labels=labels,
        ignore_columns=opts.ignore_columns,
    )


def _image_records(
    source: Any, labels: Any, opts: TrainOptions
) -> tuple[Any, bool, str, Any, Callable[[], int]]:
    """(records, ordered, description, skipped-list getter, warm-up frame count getter) for a path or a list of
    frames.

    With --frame-pack every frame is packed (per sequence) before --frame-step / --max-frames pick the ones
    to keep, so the spacing counts source frames, as it does in `run` and `eval`; each sequence's warm-up
    frames (no full past yet) give no sample, as in `run`.
    """
    spacing = frame_pack_spacing(opts)
    # the pack record as the bundle keeps it
    pack = {"spacing": spacing, "frames": frame_pack_count(opts)} if spacing else {}
    step = max(1, int(opts.frame_step))
    if isinstance(source, (str, os.PathLike)):
        folder = loaders.ImageSource(
            source,
            labels=labels,
            frame_step=1 if spacing else step,
            max_frames=None if spacing else opts.max_frames,
        )
        if not spacing:
            return folder, folder.ordered, str(source), lambda: folder.skipped, lambda: 0
        packed = loaders.ScoredPacking(folder, pack, str(source))
        kept = _keep_every(iter(packed), step, opts.max_frames)
        return kept, True, str(source), lambda: folder.skipped, lambda: packed.n_warmup
    if spacing:
        packed = loaders.ScoredPacking(loaders.memory_frames(list(source), labels), pack, "frames")
        return _keep_every(iter(packed), step, opts.max_frames), True, "frames", list, lambda: packed.n_warmup
    frames = list(source)[::step]
    y = None if labels is None else list(labels)[::step]
    if opts.max_frames is not None:
        frames, y = frames[: int(opts.max_frames)], None if y is None else y[: int(opts.max_frames)]
    return loaders.memory_frames(frames, y), bool(opts.frames_ordered), "frames", list, lambda: 0


def _keep_every(
    records: Iterator[loaders.FrameRecord], step: int, max_frames: Optional[int]
) -> Iterator[loaders.FrameRecord]:
    """Every `step`-th frame of each sequence, at most `max_frames` in all (stops reading after the last)."""
    kept = 0
    for rec in records:
        if rec.position % step:
            continue
        yield rec
        kept += 1
        if max_frames is not None and kept >= int(max_frames):
            return


def _prepare(
    kind: str,
    opts: TrainOptions,
    model_type: str,
    data: Any,
    frames: Any,
    table: Any,
    series: Any,
    labels: Any,
) -> Prepared:
    if kind == "image":
        if table is not None or series is not None:
            raise EdgeanomError("image models need images: pass frames= or a folder/video path")
        records, ordered, source, skipped, n_warmup = _image_records(
            frames if frames is not None else data, labels, opts
        )
        info = get_model(model_type)
        # a model may see more of an image set than of frames, where `run` must keep up with the camera
        side = None if ordered else info.image_set_side
        # a bank that scores each image without itself calibrates on every image, validation split included:
        # a few good images (an inspection set up from a handful of parts) are enough
        few = _leave_one_out(info, resolve_params(model_type, opts.params, info.defaults), ordered)
        return prepare_images(
            records,
            ordered,
            opts,
            source,
            skipped,
            n_warmup,
            side or DEFAULT_IMAGE_SIDE,
            min_split=1 if few else 2,
        )
    source = next(v for v in (data, table, series) if v is not None)
    if frames is not None:
        raise EdgeanomError(f"{kind} models need numbers: pass table=, series= or a CSV/Parquet path")
    tables = _load_tables(source, opts, labels, detect_time=kind == "window")
    if kind == "vector":
        return prepare_vectors(tables, opts, model_type)
    return prepare_windows(tables, opts, model_type)


def _add_validation_data(prepared: Prepared, opts: TrainOptions) -> None:
    """Preprocess a labelled validation set exactly like the training data and add it for calibration."""
    from edgeanom.data import windows_with_labels
    from edgeanom.preprocess import FeatureScaler

    if prepared.kind == "image":
        spec = prepared.preprocess["image"]
        records, _, _, _, _ = _image_records(opts.val_data, opts.val_labels, opts)
        frames = (spec.get("pack") or {}).get("frames", 0)
        x, recs, _ = preprocess_frames(records, tuple(spec["size"]), spec["color"], frames)
        y = np.array([r.label or 0 for r in recs], dtype=np.int8)
    else:
        scaler = FeatureScaler.from_json(prepared.preprocess["scaler"])
        assert scaler is not None
        tables = loaders.load_tables(
            opts.val_data,
            columns=prepared.names,
            label_column=opts.label_column,
            time_column=opts.time_column,
            detect_time=prepared.kind == "window",
            drop_na=opts.drop_na,
            labels=opts.val_labels,
        )
        if prepared.kind == "vector":
            x = scaler(np.concatenate([t.values for t in tables]))
            y = np.concatenate(
                [t.labels if t.labels is not None else np.zeros(len(t.values), np.int8) for t in tables]
            )
        else:
            length, stride = prepared.shape[0], int(prepared.preprocess["window"]["stride"])
            xs, ys = zip(*(windows_with_labels(scaler(t.values), t.labels, length, stride) for t in tables))
            x, y = np.concatenate(xs), np.concatenate(ys)
    prepared.val_x = np.concatenate([prepared.val_x, x[y == 0]])
    if (y == 1).any():
        extra = x[y == 1]
        prev = prepared.val_anomalous_x
        prepared.val_anomalous_x = extra if prev is None else np.concatenate([prev, extra])
    prepared.info["validation_data"] = {
        "source": str(opts.val_data),
        "n_normal": int((y == 0).sum()),
        "n_anomalous": int((y == 1).sum()),
    }


# --- training, export, calibration -------------------------------------------------------------------------
def _threads(opts: TrainOptions) -> int:
    return resolve_threads(opts.threads)


def _train_and_write(prepared: Prepared, opts: TrainOptions, model_type: str) -> Bundle:
    out = Path(opts.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.staging-"))
    try:
        bundle = _new_bundle(staging, prepared, model_type)
        family = get_model(model_type).family
        if family == "sklearn":
            _fit_baseline(prepared, opts, model_type, staging, bundle.meta)
        elif family == "stat":
            _fit_statistical(prepared, opts, model_type, staging, bundle.meta)
        else:
            _fit_torch(prepared, opts, model_type, staging, bundle.meta)
        extra = _out_of_fold_scores(prepared, opts, model_type, staging, bundle.meta["score"]["map"])
        _calibrate(bundle, prepared, opts, extra)
        _keep_holdout(bundle, prepared, opts)
        bundle.save()
        _publish(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return load_bundle(out)


def _new_bundle(staging: Path, prepared: Prepared, model_type: str) -> Bundle:
    bundle = new_bundle(
        staging,
        model_type=model_type,
        family=get_model(model_type).family,
        input_kind=prepared.kind,
        shape=prepared.shape,
        names=prepared.names,
        preprocess=prepared.preprocess,
        score_map=prepared.info.pop("score_map", None),
        data={
            "fingerprint": prepared.fingerprint(),
            "n_train": len(prepared.train_x),
            "n_val_normal": len(prepared.val_x),
            "n_val_anomalous": 0 if prepared.val_anomalous_x is None else len(prepared.val_anomalous_x),
            **prepared.info,
        },
    )
    bundle.meta["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return bundle


def _fit_torch(
    prepared: Prepared, opts: TrainOptions, model_type: str, staging: Path, meta: dict[str, Any]
) -> None:
    import torch

    from edgeanom.models import build_model
    from edgeanom.models.checkpoint import TORCH_CHECKPOINT, save_torch
    from edgeanom.models.onnx_export import export_onnx
    from edgeanom.train.losses import get_loss
    from edgeanom.train.trainer import fit, resolve_device

    device = resolve_device(opts.device)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(_threads(opts))
    try:
        torch.manual_seed(opts.seed)
        net = build_model(model_type, prepared.shape, opts.params)
        batch = int(opts.batch_size or (16 if prepared.kind == "image" else 64))
        wd = float(opts.weight_decay if opts.weight_decay is not None else net.weight_decay)
        leave_one_out = _leave_one_out(net, net.params, _ordered(prepared))
        result = fit(
            net,
            np.concatenate([prepared.train_x, prepared.val_x]) if leave_one_out else prepared.train_x,
            prepared.val_x,
            loss_fn=get_loss(opts.loss, prepared.kind),
            epochs=int(opts.epochs),
            batch_size=batch,
            lr=float(opts.lr),
            weight_decay=wd,
            device=device,
            seed=int(opts.seed),
            patience=opts.patience,
            progress=bool(opts.progress),
        )
        save_torch(net, staging / TORCH_CHECKPOINT)
        parity = export_onnx(net, staging / "model.onnx", seed=int(opts.seed))
    finally:
        torch.set_num_threads(previous_threads)
    meta["model"]["params"] = net.params
    meta["model"]["train"] = {
        "epochs": int(opts.epochs),
        "batch_size": batch,
        "lr": float(opts.lr),
        "weight_decay": wd,
        "loss": opts.loss,
        "seed": int(opts.seed),
        "device": device,
        "best_epoch": result.best_epoch,
        "best_val_loss": result.best_val_loss,
        "epochs_run": len(result.history),
        "interrupted": result.interrupted,
        "stopped_early": result.stopped_early,
        "diverged": result.diverged,
        "seconds": round(result.seconds, 3),
        "leave_one_out": leave_one_out,
    }
    meta["history"] = result.history
    meta["checkpoint"] = TORCH_CHECKPOINT
    meta["onnx"] = onnx_section(net.output_name, parity=parity)
    meta["score"] = net.score_section(staging, meta["score"]["map"])


def _fit_baseline(
    prepared: Prepared, opts: TrainOptions, model_type: str, staging: Path, meta: dict[str, Any]
) -> None:
    from edgeanom.models.baselines import export_baseline, fit_baseline
    from edgeanom.models.checkpoint import SKLEARN_CHECKPOINT, save_sklearn

    started = time.perf_counter()
    estimator, params = fit_baseline(model_type, prepared.train_x, opts.params, seed=int(opts.seed))
    seconds = time.perf_counter() - started
    save_sklearn(estimator, staging / SKLEARN_CHECKPOINT)
    parity = export_baseline(estimator, prepared.shape, staging / "model.onnx")
    meta["model"]["params"] = params
    meta["model"]["train"] = {"seed": int(opts.seed), "seconds": round(seconds, 3)}
    meta["checkpoint"] = SKLEARN_CHECKPOINT
    meta["score"] = get_model(model_type)().score_section(staging, None)
    meta["onnx"] = onnx_section("score", parity=parity)


def _fit_statistical(
    prepared: Prepared, opts: TrainOptions, model_type: str, staging: Path, meta: dict[str, Any]
) -> None:
    from edgeanom.models.statistical import fit_statistical

    started = time.perf_counter()
    params, parity = fit_statistical(model_type, prepared.train_x, opts.params, staging / "model.onnx")
    meta["model"]["params"] = params
    meta["model"]["train"] = {"seconds": round(time.perf_counter() - started, 3)}
    meta["score"] = get_model(model_type)().score_section(staging, None)
    meta["onnx"] = onnx_section("score", parity=parity)


def _scores_of(
    bundle: Bundle, prepared: Prepared, opts: TrainOptions, train_x: np.ndarray, *sets: Optional[np.ndarray]
) -> list[Optional[np.ndarray]]:
    """Score `sets` through ONNX Runtime + the C++ scorer exactly as `run` will.

    Image bundles with a map score first get per-pixel map normalisation from `train_x` (the images the
    model was trained on; `map_normalize`, on by default), so scores are normalised ones.
    """
    from edgeanom.backends.onnxruntime import OnnxRuntimeRunner
    from edgeanom.inference import score_arrays

    batch = 16 if prepared.kind == "image" else 256
    with OnnxRuntimeRunner(
        bundle.onnx_path, providers=["CPUExecutionProvider"], intra_op_threads=_threads(opts), spin_wait=False
    ) as runner:
        spec = bundle.meta["score"] or {}
        if opts.map_normalize and spec.get("map") and get_model(bundle.model_type).map_normalize:
            from edgeanom.train.map_norm import fit_map_normalisation

            fit_map_normalisation(bundle, runner, train_x, batch_size=batch, seed=int(opts.seed))
        return [
            None if x is None else score_arrays(bundle, runner, x, batch, preprocessed=True).scores
            for x in sets
        ]


def _leave_one_out(model: Any, params: dict[str, Any], ordered: bool) -> bool:
    """Whether a model (class or instance) is a memory bank that scores its own samples leave-one-out: it is then
    fitted on the validation split too and calibrated on every sample's score. Not for ordered data (video
    frames), whose neighbours in time are near-copies that would make those scores optimistic: the held-out block
    stays as it is."""
    return not ordered and not model.trainable and model.leave_one_out(params)


def _ordered(prepared: Prepared) -> bool:
    """Samples in time order (video frames, sensor windows): held out in blocks, never one by one."""
    return prepared.info.get("split") == "temporal" or prepared.kind == "window"


def fold_indices(n: int, folds: int, ordered: bool, seed: int) -> list[np.ndarray]:
    """`folds` disjoint index sets covering range(n): contiguous blocks for ordered data (a frame and its
    neighbours mostly share a fold, so a fold model has not seen near-copies of what it scores), else a
    seeded random partition."""
    order = np.arange(n) if ordered else np.random.default_rng(seed).permutation(n)
    return [np.sort(part) for part in np.array_split(order, folds)]


def _out_of_fold_scores(
    prepared: Prepared,
    opts: TrainOptions,
    model_type: str,
    staging: Path,
    score_map: Optional[dict[str, Any]],
) -> Optional[np.ndarray]:
    """`--folds K`: train K models, each without one fold of the training data, and score that fold with it.

    Every training sample then has a score from a model that never saw it, so calibration sees hundreds of
    normal scores instead of the tens held out (images). Costs K more trainings; torch models only.
    """
    folds = int(opts.folds or 0)
    if folds == 0:
        return None
    n = len(prepared.train_x)
    if n < 2 * folds:
        raise EdgeanomError(f"--folds {folds} needs at least {2 * folds} training samples, got {n}")
    ordered = _ordered(prepared)
    scores = np.empty(n, dtype=np.float32)
    for i, held in enumerate(fold_indices(n, folds, ordered, int(opts.seed))):
        keep = np.setdiff1d(np.arange(n), held)
        part = dataclasses.replace(prepared, train_x=prepared.train_x[keep], info={"score_map": score_map})
        folder = Path(tempfile.mkdtemp(dir=staging, prefix=f"fold{i}-"))
        try:
            fold_bundle = _new_bundle(folder, part, model_type)
            _fit_torch(part, opts, model_type, folder, fold_bundle.meta)
            scores[held] = _scores_of(fold_bundle, part, opts, part.train_x, prepared.train_x[held])[0]
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return scores


def _calibrate(
    bundle: Bundle, prepared: Prepared, opts: TrainOptions, out_of_fold: Optional[np.ndarray] = None
) -> None:
    """Score held-out data through ONNX Runtime + the C++ scorer and store the threshold and statistics;
    out-of-fold scores of the training data (`--folds`), or a leave-one-out model's in-sample scores of it,
    join the held-out ones."""
    leave_one_out = bool(((bundle.meta["model"] or {}).get("train") or {}).get("leave_one_out"))
    held_out, anomalous, in_sample = _scores_of(
        bundle,
        prepared,
        opts,
        prepared.train_x,
        prepared.val_x,
        prepared.val_anomalous_x,
        prepared.train_x if leave_one_out and out_of_fold is None else None,
    )
    assert held_out is not None
    if in_sample is not None:  # each training sample scored without itself: out-of-fold scores for free
        out_of_fold = in_sample
    normal = held_out if out_of_fold is None else np.concatenate([held_out, out_of_fold])
    threshold = calibrate(opts.threshold, normal, anomalous)
    if in_sample is not None:
        threshold.stats["out_of_fold"] = {"leave_one_out": True, "n_scores": int(in_sample.size)}
    elif out_of_fold is not None:
        threshold.stats["out_of_fold"] = {"folds": int(opts.folds), "n_scores": int(out_of_fold.size)}
    bundle.meta["threshold"] = threshold.to_json()
    if bundle.input_kind in ("window", "vector"):  # sensor and table bundles judge scores adaptively at run
        window = (bundle.meta["preprocess"].get("window") or {}).get("length")
        errors = bundle.meta["score"].get("metric") != "model"
        # on for streams (windows, or rows with a time column); a table of independent rows has no history
        stream = bundle.input_kind == "window" or bool(bundle.meta["preprocess"].get("time_column"))
        spec = adaptive_section(bundle.input_kind, window, normal, errors=errors, enabled=stream)
        bundle.meta["score"]["adaptive"] = spec


def _keep_holdout(bundle: Bundle, prepared: Prepared, opts: TrainOptions) -> None:
    """Store a capped sample of held-out and training inputs (holdout.npz) for export's parity checks."""
    from edgeanom.holdout import sample_holdout, save_holdout

    holdout = sample_holdout(
        prepared.val_x,
        prepared.val_anomalous_x,
        prepared.train_x,
        seed=int(opts.seed),
        max_per_class=max(0, int(opts.holdout_samples)),
    )
    bundle.meta["holdout"] = None if holdout is None else save_holdout(holdout, bundle.path)


def _publish(staging: Path, out: Path) -> None:
    """Move staged files into `out`; bundle.json goes last so readers see the old or the new bundle."""
    out.mkdir(parents=True, exist_ok=True)
    files = sorted(p for p in staging.iterdir() if p.is_file() and p.name != BUNDLE_FILE)
    for p in files:
        p.replace(out / p.name)
    (staging / BUNDLE_FILE).replace(out / BUNDLE_FILE)
