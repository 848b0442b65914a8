"""`edgeanom train`: learn normal data (files, or a live camera/video/sensor capture) into a model bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgeanom.cli._common import deprecated, handle_errors
from edgeanom.errors import EdgeanomError


def _registered_models() -> str:
    """The registry's models for the help text (it needs torch; without it the help says so)."""
    try:
        from edgeanom.models import describe_models

        return describe_models()
    except ImportError:
        return "see `pip install 'edgeanom[train]'`"


def _default_models() -> str:
    """Which model each kind of data gets when none is named, from the registry (no list kept here)."""
    try:
        from edgeanom.models import default_model

        kinds = (("image", "images"), ("window", "sensor windows"), ("vector", "tables"))
        named = [f"{default_model(kind)} {label}" for kind, label in kinds]
        return ", ".join([*named, f"{default_model('image', packed_frames=True)} with --frame-pack"])
    except ImportError:
        return "see `pip install 'edgeanom[train]'`"


def register(app: typer.Typer) -> None:
    app.command(
        "train", help="Train an anomaly detector on normal data and write a calibrated model bundle."
    )(train)


@handle_errors
def train(
    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data",
            "-d",
            help="Normal training data: image folder/file, video, frame folders, CSV/Parquet table or sensor CSV (or a folder of them).",
        ),
    ] = None,
    model_type: Annotated[
        Optional[str],
        typer.Option(
            "--model-type",
            "-t",
            help="Model type (edgeanom.models registry): "
            + _registered_models()
            + ". Default by data kind: "
            + _default_models()
            + ".",
        ),
    ] = None,
    legacy_model: Annotated[
        Optional[str], typer.Option("--model", "-m", hidden=True, help="Deprecated: use --model-type.")
    ] = None,
    out: Annotated[
        Optional[Path],
        typer.Option("--out", "-o", help="Bundle directory to write (default ./edgeanom-model)."),
    ] = None,
    config: Annotated[
        Optional[Path], typer.Option("--config", help="YAML file of options (flags override it).")
    ] = None,
    camera: Annotated[
        Optional[str],
        typer.Option(
            "--camera",
            help="Capture training frames from this camera (index, URL, GStreamer pipeline or csi:N) "
            "for --duration seconds, then train on them.",
        ),
    ] = None,
    video: Annotated[
        Optional[Path], typer.Option("--video", help="Train on the frames of this video file.")
    ] = None,
    sensor: Annotated[
        Optional[str],
        typer.Option(
            "--sensor",
            help="Train on sensor windows: a CSV file (time column + channels), or capture rows from "
            "serial://PORT, mqtt://host/topic or - (stdin) for --duration seconds.",
        ),
    ] = None,
    duration: Annotated[
        Optional[float],
        typer.Option(
            "--duration", help="Seconds to capture from --camera or a live --sensor before training."
        ),
    ] = None,
    max_frames: Annotated[
        Optional[int],
        typer.Option("--max-frames", help="Use (or capture) at most this many frames or sensor rows."),
    ] = None,
    frame_step: Annotated[
        Optional[int], typer.Option("--frame-step", help="Use every N-th frame of videos/captures.")
    ] = None,
    frame_pack: Annotated[
        Optional[int],
        typer.Option(
            "--frame-pack",
            help="Video models: pack the grey frames t-2S, t-S, t of each video/camera as the channels of "
            "one RGB frame (causal; recorded in the bundle, so run and eval pack the same way). "
            "Default model then: frame-pred.",
            metavar="S",
        ),
    ] = None,
    pack_frames: Annotated[
        Optional[int],
        typer.Option(
            "--pack-frames",
            help="With --frame-pack: how many frames, S apart, make one input (default: what the model "
            "reads: 3, clip-lstm 8).",
            metavar="T",
        ),
    ] = None,
    input_kind: Annotated[
        Optional[str],
        typer.Option("--input-kind", help="image, window or vector (guessed from the data by default)."),
    ] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Training epochs (default 50).")] = None,
    batch_size: Annotated[
        Optional[int],
        typer.Option("--batch", help="Mini-batch size (default 16 for images, 64 otherwise)."),
    ] = None,
    legacy_batch_size: Annotated[
        Optional[int], typer.Option("--batch-size", hidden=True, help="Deprecated: use --batch.")
    ] = None,
    lr: Annotated[Optional[float], typer.Option("--lr", help="Adam learning rate (default 1e-3).")] = None,
    weight_decay: Annotated[
        Optional[float],
        typer.Option("--weight-decay", help="Adam weight decay (default 1e-6 for deep-svdd, else 0)."),
    ] = None,
    loss: Annotated[
        Optional[str], typer.Option("--loss", help="Reconstruction loss: l2 or ssim+l2 (images).")
    ] = None,
    patience: Annotated[
        Optional[int],
        typer.Option("--patience", help="Stop after this many epochs without a better validation loss."),
    ] = None,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Random seed (default 0).")] = None,
    device: Annotated[
        Optional[str], typer.Option("--device", help="auto (CUDA when present), cpu or cuda[:N].")
    ] = None,
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", help="CPU threads for torch and ONNX Runtime (default min(2, cores))."),
    ] = None,
    val_fraction: Annotated[
        Optional[float],
        typer.Option(
            "--val-fraction",
            help="Share of normal data held out for validation and calibration (default 0.2).",
        ),
    ] = None,
    folds: Annotated[
        Optional[int],
        typer.Option(
            "--folds",
            help="Calibrate on out-of-fold scores too: K more trainings, each without one K-th of the training "
            "data, score what they left out (hundreds of normal scores instead of tens; K times the time).",
            metavar="K",
        ),
    ] = None,
    threshold: Annotated[
        Optional[str],
        typer.Option(
            "--threshold",
            help="percentile:Q, contamination:P, sigma:K, fpr:R (tail-fitted) or f1 (labelled validation data). "
            "Default fpr:0.05 for image sets, fpr:0.01 for video and captured frames, percentile:99 for sensors "
            "and tables.",
        ),
    ] = None,
    image_size: Annotated[
        Optional[str],
        typer.Option(
            "--image-size",
            help="Model input size N or HxW (default 128; smaller images keep their size, rounded up to 16).",
        ),
    ] = None,
    color: Annotated[
        Optional[str],
        typer.Option("--color", help="auto, gray or rgb (auto: gray when the frames have no colour)."),
    ] = None,
    blur_sigma: Annotated[
        Optional[float],
        typer.Option(
            "--blur-sigma",
            help="Gaussian blur of the error map before scoring (default 2 at 128 px, scaled with size).",
        ),
    ] = None,
    topk: Annotated[
        Optional[int],
        typer.Option(
            "--topk", help="Image score = mean of the k largest error-map pixels (default 1% of pixels)."
        ),
    ] = None,
    map_normalize: Annotated[
        Optional[bool],
        typer.Option(
            "--map-normalize/--no-map-normalize",
            help="Images: z-score the blurred error map per pixel by its mean and std over the training "
            "images before the top-k score (default on; helps aligned objects and fixed cameras).",
        ),
    ] = None,
    scaler: Annotated[
        Optional[str],
        typer.Option("--scaler", help="minmax or standard (default minmax for vae, standard otherwise)."),
    ] = None,
    columns: Annotated[
        Optional[str],
        typer.Option("--columns", help="Comma-separated feature columns (default: every numeric column)."),
    ] = None,
    ignore_columns: Annotated[
        Optional[str], typer.Option("--ignore-columns", help="Comma-separated columns to leave out.")
    ] = None,
    label_column: Annotated[
        Optional[str],
        typer.Option(
            "--label-column",
            help="Label column (1 = anomaly; default 'label' when present); never trained on.",
        ),
    ] = None,
    time_column: Annotated[
        Optional[str],
        typer.Option(
            "--time-column",
            help="Time column of a sensor CSV (default: one named time/timestamp/datetime/date).",
        ),
    ] = None,
    drop_na: Annotated[
        Optional[bool],
        typer.Option("--drop-na", help="Drop rows with missing or non-finite values instead of failing."),
    ] = None,
    window: Annotated[
        Optional[int],
        typer.Option(
            "--window",
            help="Sensor window length in samples (default 64, fewer for short data; seasonal: 3 periods).",
        ),
    ] = None,
    stride: Annotated[
        Optional[int], typer.Option("--stride", help="Step between windows (default 1).")
    ] = None,
    labels: Annotated[
        Optional[Path],
        typer.Option(
            "--labels",
            help="Labels for the training data (known anomalies are held out and used for calibration).",
        ),
    ] = None,
    val_data: Annotated[
        Optional[Path],
        typer.Option(
            "--val-data", help="Labelled validation data for calibration (e.g. for --threshold f1)."
        ),
    ] = None,
    val_labels: Annotated[
        Optional[Path], typer.Option("--val-labels", help="Labels file for --val-data.")
    ] = None,
    latent: Annotated[
        Optional[int],
        typer.Option("--latent", help="Latent size (vae, conv-ae, conv-vae, window-ae, lstm-ae)."),
    ] = None,
    beta: Annotated[
        Optional[float], typer.Option("--beta", help="KL weight of vae / conv-vae / feat-vae.")
    ] = None,
    backbone: Annotated[
        Optional[str],
        typer.Option(
            "--backbone",
            help="ImageNet backbone of the feature models (feat-vae, feat-svdd, feat-map, clip-lstm): "
            "resnet18, efficientnet_b0, mobilenet_v3_large or mobilenet_v3_small.",
        ),
    ] = None,
    backbone_weights: Annotated[
        Optional[Path],
        typer.Option(
            "--backbone-weights",
            help="torchvision's weight file for --backbone (e.g. resnet18-f37072fd.pth); nothing is downloaded.",
        ),
    ] = None,
    param: Annotated[
        Optional[list[str]],
        typer.Option(
            "--param", help="Model hyper-parameter NAME=VALUE (repeatable), e.g. --param hidden=64,32."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar or summary.")] = False,
) -> None:
    """Train on normal data; Ctrl-C stops training and still writes the best bundle so far."""
    from edgeanom.train.api import train_bundle
    from edgeanom.train.config import parse_param

    sources = [
        n
        for n, v in (("--data", data), ("--camera", camera), ("--video", video), ("--sensor", sensor))
        if v is not None
    ]
    if len(sources) > 1:
        raise EdgeanomError(f"give one data source, got {', '.join(sources)}")
    if legacy_model is not None:
        deprecated("train --model TYPE", f"--model-type {legacy_model}")
        model_type = model_type or legacy_model
    if legacy_batch_size is not None:
        deprecated("--batch-size", f"--batch {legacy_batch_size}")
        batch_size = batch_size if batch_size is not None else legacy_batch_size
    params: dict[str, Any] = dict(parse_param(p) for p in (param or []))
    flags = (("latent", latent), ("beta", beta), ("backbone", backbone))
    for name, value in (
        *flags,
        ("backbone_weights", None if backbone_weights is None else str(backbone_weights)),
    ):
        if value is not None:
            params[name] = value
    options: dict[str, Any] = {
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "weight_decay": weight_decay,
        "loss": loss,
        "patience": patience,
        "seed": seed,
        "device": device,
        "threads": threads,
        "val_fraction": val_fraction,
        "folds": folds,
        "threshold": threshold,
        "image_size": image_size,
        "color": color,
        "blur_sigma": blur_sigma,
        "topk": topk,
        "map_normalize": map_normalize,
        "scaler": scaler,
        "columns": columns,
        "ignore_columns": ignore_columns,
        "label_column": label_column,
        "time_column": time_column,
        "drop_na": drop_na,
        "window": window,
        "stride": stride,
        "input_kind": "window" if sensor is not None and input_kind is None else input_kind,
        "max_frames": max_frames,
        "frame_step": frame_step,
        "frame_pack": frame_pack,
        "pack_frames": pack_frames,
        "val_data": val_data,
        "val_labels": val_labels,
        "progress": False if quiet else None,
        **({"params": params} if params else {}),
    }
    live_sensor = sensor is not None and (
        str(sensor) == "-" or "://" in str(sensor) or str(sensor).startswith("serial:")
    )
    if camera is not None:
        from edgeanom.train.capture import capture_frames

        frames = capture_frames(camera, duration, max_frames)
        bundle = train_bundle(frames=frames, model=model_type, out=out, config=config, **options)
    elif live_sensor:
        from edgeanom.train.capture import capture_sensor

        table = capture_sensor(str(sensor), duration, max_frames)
        bundle = train_bundle(series=table, model=model_type, out=out, config=config, **options)
    else:
        source = data or video or sensor
        if source is None and config is None:
            raise EdgeanomError(
                "no training data: give --data PATH (or --camera/--video/--sensor, or --config)"
            )
        bundle = train_bundle(source, model=model_type, out=out, config=config, labels=labels, **options)
    if not quiet:
        print_summary(bundle)


def print_summary(bundle: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgeanom.models import get_model

    meta = bundle.meta
    train = meta["model"].get("train", {})
    t = bundle.threshold
    table = Table(title=f"bundle {bundle.path}", show_header=False)
    table.add_row("model", f"{bundle.model_type}  {meta['model']['params']}")
    table.add_row("input", f"{bundle.input_kind} {list(bundle.input_shape)}")
    d = meta["data"]
    table.add_row(
        "data",
        f"{d['n_train']} train, {d['n_val_normal']} val normal, {d['n_val_anomalous']} val anomalous"
        + (f", {d['n_skipped']} unreadable skipped" if d.get("n_skipped") else ""),
    )
    for note in d.get("time_notes") or []:
        table.add_row("time order", note)
    if "best_epoch" in train and not get_model(bundle.model_type).trainable:
        params = meta["model"]["params"]
        bank, cells = params.get("n_bank"), params.get("n_cells")
        fitted = f"memory bank of {bank} images" if bank else "fitted from the training data"
        if bank and cells:
            fitted += f" and {cells} of their cells"
        table.add_row("training", f"{fitted} (no epochs), {train['seconds']:.1f} s")
    elif "best_epoch" in train:
        note = (
            " (interrupted)"
            if train.get("interrupted")
            else " (early stop)"
            if train.get("stopped_early")
            else ""
        )
        table.add_row(
            "training",
            f"best epoch {train['best_epoch']}/{train['epochs_run']}{note}, val loss {train['best_val_loss']:.5g}, {train['seconds']:.1f} s",
        )
    score_map = (meta.get("score") or {}).get("map")
    if score_map:
        norm = score_map.get("normalize")
        table.add_row(
            "map score",
            f"blur sigma {score_map['blur_sigma']:g}, {score_map['mode']} k={score_map['k']}, "
            + (f"normalised per pixel ({norm.get('n_maps', '?')} training maps)" if norm else "raw"),
        )
    out_of_fold = t.stats.get("out_of_fold") or {}
    scored = (
        f"{t.stats['n']} leave-one-out normal scores"
        if out_of_fold.get("leave_one_out")
        else f"{t.stats['n']} normal scores ({out_of_fold['n_scores']} of them out of fold)"
        if out_of_fold
        else "held-out normal scores"
    )
    table.add_row(
        "threshold",
        f"{t.value:.6g} ({t.method}); {scored} mean {t.stats['mean']:.4g}, max {t.stats['max']:.4g}",
    )
    console = Console(stderr=True)
    console.print(table)
    tail = t.stats.get("tail") or {}
    if tail.get("expected_far", 0.0) > 1.5 * tail.get("requested_far", 1.0):
        lo, hi = tail["far_interval_90"]
        console.print(
            f"[yellow]warning:[/] {t.method} asked for {tail['requested_far']:.1%} false alarms, but {tail['n']} "
            f"normal scores cannot place a threshold that far out: expect {tail['expected_far']:.1%} "
            f"(90%: {lo:.1%}..{hi:.1%}); add normal data or give --threshold"
        )
