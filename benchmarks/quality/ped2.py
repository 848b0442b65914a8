"""UCSD Ped2: frame-level AUROC (all test frames pooled) of an edgeanom image autoencoder, deployed path.

Train with `edgeanom.train.api.train_bundle` on the 16 normal training videos, export FP32-fused and FP16
ONNX, then score every test frame through OpenCV decode -> bundle `Preprocessor` -> ONNX Runtime -> `Scorer`
(error map, Gaussian blur, top-k mean in the C++ core). Reported:

- pooled AUROC of the raw per-frame scores (the headline number);
- pooled AUROC after causal EWMA smoothing with the runtime's own `edgeanom.scoring.AlarmFilter` (past frames
  only, so `edgeanom run` computes exactly this);
- pooled AUROC after per-video min-max normalisation (non-causal: uses the whole video, as many papers do;
  for comparison only);
- with frame packing, the same three over the frames `run` scores (`frames_run_scores`): each stream's first
  (frames - 1) * S frames have no past yet and `run` emits no sample for them (Liu et al.'s protocol for
  prediction models leaves the unpredictable first frames out too). `--rescore FILE` recomputes a results
  file's FP32 metrics from its saved frame scores.

`--temporal S` packs grey frames t-2S, t-S, t into one frame's colour channels with the runtime's causal
`FramePacker` (one per video, past frames only; recorded as preprocess.image.pack) and trains
`frame-pred`, which predicts frame t from the two older ones; its error map is the prediction error.

Settings (image size, epochs, EWMA alpha) are fixed in advance; the test set is only scored once.

    python benchmarks/quality/ped2.py [--data ../shared/data/ucsd_ped2] [--epochs 12]
    python benchmarks/quality/ped2.py --temporal 2 --epochs 8 --batch 16 --out ped2_temporal \
        --work build/quality/ped2_temporal
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

PUBLISHED = {
    "Conv-AE (Hasan et al. 2016, paper / re-run)": "0.900 / 0.850",
    "ConvLSTM-AE": "0.881",
    "MNAD reconstruction": "0.902",
    "MemAE": "0.941",
    "Future-frame prediction": "0.954",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", type=Path, default=common.DEFAULT_DATA_ROOT / "ucsd_ped2", help="ucsd_ped2 folder"
    )
    p.add_argument("--work", type=Path, default=common.REPO_ROOT / "build" / "quality" / "ped2")
    p.add_argument("--model", default="conv-ae")
    p.add_argument("--height", type=int, default=96)
    p.add_argument("--width", type=int, default=144)
    p.add_argument("--channels", default="16,32,64,64", help="conv-ae encoder channels per stage")
    p.add_argument("--latent", type=int, default=128)
    p.add_argument("--loss", default="l2")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--batch", "--batch-size", dest="batch_size", type=int, default=32)
    p.add_argument(
        "--frame-step", type=int, default=2, help="use every n-th training frame (neighbours are near copies)"
    )
    p.add_argument("--blur-sigma", type=float, default=None, help="default: the train API's (2 px per 128)")
    p.add_argument("--topk", type=int, default=None, help="default: the train API's (1 %% of the pixels)")
    p.add_argument(
        "--temporal",
        type=int,
        default=0,
        help="0: one grey frame per sample; S > 0: frames t-2S, t-S, t packed as channels and the frame-pred model",
    )
    p.add_argument(
        "--pack-frames",
        type=int,
        default=3,
        help="with --temporal S: frames packed per sample, S apart (3: t-2S, t-S, t; more gives frame-pred a longer past)",
    )
    p.add_argument("--unet-width", type=int, default=16, help="frame-pred U-Net width")
    p.add_argument(
        "--gradient-weight",
        type=float,
        default=None,
        help="frame-pred gradient-difference loss weight (default: the model's)",
    )
    p.add_argument(
        "--ewma-alpha", type=float, default=0.3, help="causal smoothing weight of the newest frame"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch/ONNX Runtime threads (1 wins on a busy 2-core box)"
    )
    p.add_argument(
        "--rescore",
        type=Path,
        default=None,
        metavar="RESULTS_JSON",
        help="recompute the metrics of a results file from its saved FP32 frame scores (no training) and rewrite it",
    )
    p.add_argument("--out", default="ped2", help="results file name (<results-dir>/<out>.json)")
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return p.parse_args(argv)


def score_videos(
    bundle: Any, onnx_file: Path, videos: dict[str, list[np.ndarray]], threads: int, batch: int = 32
) -> tuple[dict[str, np.ndarray], float]:
    """Deployed-path scores per video and milliseconds per frame at this batch size. Bundles that pack frames
    get raw frames packed per video by the runtime's causal `FramePacker` (`score_arrays(pack=True)`)."""
    from edgeanom.backends.onnxruntime import OnnxRuntimeRunner
    from edgeanom.inference import score_arrays

    out: dict[str, np.ndarray] = {}
    n, seconds = 0, 0.0
    with OnnxRuntimeRunner(onnx_file, providers=["CPUExecutionProvider"], intra_op_threads=threads) as runner:
        for vid, frames in videos.items():
            t0 = time.perf_counter()
            out[vid] = score_arrays(bundle, runner, frames, batch, pack=True).scores.astype(np.float64)
            seconds += time.perf_counter() - t0
            n += len(frames)
    return out, 1000.0 * seconds / max(n, 1)


def causal_ewma(scores: dict[str, np.ndarray], alpha: float, threshold: float) -> dict[str, np.ndarray]:
    """The runtime's EWMA (edgeanom.scoring.AlarmFilter.smoothed), one stream per video."""
    from edgeanom import scoring

    out = {}
    for vid, s in scores.items():
        alarm = scoring.AlarmFilter(threshold, ewma_alpha=alpha)
        out[vid] = np.asarray(
            alarm.update(np.ascontiguousarray(s, dtype=np.float32)).smoothed, dtype=np.float64
        )
    return out


def per_video_minmax(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {v: (s - s.min()) / max(float(np.ptp(s)), 1e-12) for v, s in scores.items()}


def pooled(labels: dict[str, np.ndarray], scores: dict[str, np.ndarray]) -> float:
    vids = list(labels)
    return common.auroc(np.concatenate([labels[v] for v in vids]), np.concatenate([scores[v] for v in vids]))


def metrics(
    labels: dict[str, np.ndarray],
    scores: dict[str, np.ndarray],
    alpha: float,
    threshold: float,
    warmup: int = 0,
) -> dict[str, Any]:
    """AUROCs over every test frame, and (``warmup`` > 0) over the frames `run` scores: with frame packing it
    emits nothing for each stream's first ``warmup`` frames, whose past is the first frame repeated, and its
    smoothing starts at the first frame it scores. Prediction models are evaluated so in the literature too
    (Liu et al.'s protocol leaves out the frames that cannot be predicted)."""
    per_video = {}
    for v in labels:
        if 0 < labels[v].sum() < len(labels[v]):
            per_video[v] = common.auroc(labels[v], scores[v])
    out: dict[str, Any] = {
        "auroc_pooled": pooled(labels, scores),
        "auroc_pooled_causal_ewma": pooled(labels, causal_ewma(scores, alpha, threshold)),
        "auroc_pooled_per_video_minmax_noncausal": pooled(labels, per_video_minmax(scores)),
        "auroc_per_video": per_video,
    }
    if warmup:
        out["frames_run_scores"] = {
            "warmup_frames_per_video": warmup,
            **metrics(
                {v: y[warmup:] for v, y in labels.items()},
                {v: s[warmup:] for v, s in scores.items()},
                alpha,
                threshold,
            ),
        }
    return out


def rescore(results: Path, labels: dict[str, np.ndarray], alpha: float) -> dict[str, Any]:
    """A results file's FP32 metrics recomputed from its saved frame scores; the threshold it was written with
    is not saved, and the EWMA's smoothed values do not depend on it."""
    try:
        payload = json.loads(results.read_text())
        scores = {v: np.asarray(s, dtype=np.float64) for v, s in payload["scores_fp32"].items()}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"error: {results}: not a Ped2 results file with scores_fp32 ({exc})") from None
    from edgeanom.preprocess import pack_warmup

    pack = (payload.get("settings") or {}).get("pack")
    if pack is None and (payload.get("settings") or {}).get("temporal_spacing"):
        pack = {"frames": 3, "spacing": payload["settings"]["temporal_spacing"]}  # written before "pack" was
    payload["fp32"] = metrics(labels, scores, alpha, 0.0, pack_warmup(pack))
    return payload


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = common.require_dir(args.data, "UCSD Ped2")
    if args.rescore is not None:
        payload = rescore(args.rescore, common.ped2_labels(root / "labels.json"), args.ewma_alpha)
        common.write_results(args.rescore.stem, payload, args.rescore.parent)
        m = payload["fp32"].get("frames_run_scores", payload["fp32"])
        print(
            f"{args.rescore}: frames run scores: pooled {m['auroc_pooled']:.4f}, EWMA {m['auroc_pooled_causal_ewma']:.4f}"
        )
        return 0
    import torch

    from edgeanom.bundle import load_bundle
    from edgeanom.export.pipeline import ExportOptions, export_bundle
    from edgeanom.models import get_model
    from edgeanom.preprocess import pack_warmup
    from edgeanom.train.api import train_bundle

    torch.set_num_threads(args.threads)
    train_videos = common.ped2_videos(root, "training")
    test_videos = common.ped2_videos(root, "testing")
    labels = common.ped2_labels(root / "labels.json")
    for vid, frames in test_videos.items():
        if vid not in labels or len(labels[vid]) != len(frames):
            raise SystemExit(
                f"error: {root}/labels.json: video {vid} has {len(frames)} frames, labels disagree"
            )
    if args.temporal:
        from edgeanom.preprocess import FramePacker

        s = args.temporal
        train_frames = []
        for paths in train_videos.values() if args.pack_frames == 3 else ():  # else train packs them
            packer = FramePacker(s)
            warm = pack_warmup({"spacing": s})  # no full past yet: train and run give these no sample
            train_frames += [packer.push(f) for f in common.read_images(paths)][warm :: args.frame_step]
        test_frames = {v: common.read_images(p) for v, p in test_videos.items()}  # packed while scoring
        model = "frame-pred" if args.model == "conv-ae" else args.model
        color, params = "rgb", {"width": args.unet_width}
        if args.gradient_weight is not None:
            params["gradient_weight"] = args.gradient_weight
    else:
        train_frames = [f for v in train_videos.values() for f in common.read_images(v[:: args.frame_step])]
        test_frames = {v: common.read_images(p) for v, p in test_videos.items()}
        model, color = args.model, "gray"
        params = {"channels": [int(c) for c in args.channels.split(",")], "latent": args.latent}
        if not set(params) <= set(get_model(model).defaults):  # --channels/--latent are the autoencoder's
            params = {}
    n_test = sum(len(f) for f in test_frames.values())
    print(
        f"Ped2: {len(train_frames)} training frames (step {args.frame_step}), {n_test} test frames",
        flush=True,
    )

    started = time.perf_counter()
    # more than three packed frames: train reads the Ped2 frame folders and packs each video itself
    native = {"data": root / "training" / "frames", "frame_pack": args.temporal, "pack_frames": args.pack_frames,
              "frame_step": args.frame_step} if args.temporal and args.pack_frames != 3 else {"frames": train_frames}  # fmt: skip
    bundle = train_bundle(
        **native,
        model=model,
        out=args.work,
        image_size=[args.height, args.width],
        color=color,
        loss=args.loss,
        epochs=args.epochs,
        batch_size=args.batch_size,
        blur_sigma=args.blur_sigma,
        topk=args.topk,
        val_fraction=0.1,
        seed=args.seed,
        map_normalize=False,  # per-pixel map normalisation cost ~0.02 AUROC on Ped2 (docs/quality.md)
        threads=args.threads,
        progress=False,
        params=params,
    )
    train_s = float(bundle.meta["model"]["train"]["seconds"])
    if (
        args.temporal and args.pack_frames == 3
    ):  # record the packing, so eval/run/export pack raw frames alike
        bundle.meta["preprocess"]["image"]["pack"] = {"frames": 3, "spacing": args.temporal}
        bundle.save()
    t0 = time.perf_counter()
    export_bundle(args.work, ExportOptions(fp16=True, fused=True, seed=args.seed))
    export_s = time.perf_counter() - t0
    bundle = load_bundle(args.work)
    threshold = float(bundle.threshold.value)

    s32, ms32 = score_videos(bundle, bundle.onnx_path, test_frames, args.threads)
    s16, ms16 = score_videos(bundle, bundle.path / bundle.onnx["fp16_file"], test_frames, args.threads)
    first = next(iter(test_frames))
    _, ms1 = score_videos(bundle, bundle.onnx_path, {first: test_frames[first][:60]}, args.threads, 1)
    warmup = pack_warmup(bundle.preprocess["image"].get("pack"))
    m32 = metrics(labels, s32, args.ewma_alpha, threshold, warmup)
    m16 = metrics(labels, s16, args.ewma_alpha, threshold, warmup)
    a32, a16 = np.concatenate(list(s32.values())), np.concatenate(list(s16.values()))
    rel = np.abs(a16 - a32) / np.maximum(np.abs(a32), 1e-12)
    payload = {
        "dataset": f"UCSD Ped2 ({len(test_videos)} test videos, {n_test} frames)",
        "metric": "frame-level AUROC over all test frames pooled (frames_run_scores: over the frames run scores)",
        "fp32": m32,
        "fp16": m16,
        "fp16_change": {
            "auroc_pooled": m16["auroc_pooled"] - m32["auroc_pooled"],
            "score_rel_err_median": float(np.median(rel)),
            "score_rel_err_max": float(rel.max()),
        },
        "published": PUBLISHED,
        "settings": {
            "model": model,
            "params": bundle.meta["model"]["params"],
            "image_size": [args.height, args.width],
            "color": color,
            "temporal_spacing": args.temporal,
            "pack": bundle.preprocess["image"].get("pack"),
            "loss": args.loss,
            "epochs": args.epochs,
            "epochs_run": bundle.meta["model"]["train"]["epochs_run"],
            "best_epoch": bundle.meta["model"]["train"]["best_epoch"],
            "frame_step": args.frame_step,
            "n_train_frames": int(bundle.meta["data"]["n_train"]),
            "score_map": bundle.score.get("map"),
            "ewma_alpha": args.ewma_alpha,
            "seed": args.seed,
            "selection": "settings fixed in advance; best epoch by validation loss on held-out training frames",
            "scored_through": "exported fused ONNX in ONNX Runtime (CPU) + edgeanom Preprocessor/Scorer (C++ core)",
        },
        "timings": {
            "train_seconds": train_s,
            "export_seconds": export_s,
            "wall_seconds_total": time.perf_counter() - started,
            "ms_per_frame_batch32_fp32": ms32,
            "ms_per_frame_batch32_fp16": ms16,
            "ms_per_frame_batch1_fp32": ms1,
        },
        "machine": common.machine_info(args.threads),
        "scores_fp32": s32,
    }
    path = common.write_results(args.out, payload, args.results_dir)
    views = [(f"edgeanom {model} (FP32)", m32), (f"edgeanom {model} (FP16)", m16)]
    views += [
        (f"{name}, frames run scores", m["frames_run_scores"])
        for name, m in views
        if "frames_run_scores" in m
    ]
    rows = [
        *[
            [
                name,
                m["auroc_pooled"],
                m["auroc_pooled_causal_ewma"],
                m["auroc_pooled_per_video_minmax_noncausal"],
            ]
            for name, m in views
        ],
        *[[f"published {k}", v, "", ""] for k, v in PUBLISHED.items()],
    ]
    common.print_table(
        "UCSD Ped2, frame-level AUROC (pooled)",
        ["method", "raw", "causal EWMA", "per-video min-max (non-causal)"],
        rows,
    )
    print(f"train {train_s:.0f}s, {ms1:.1f} ms per frame one at a time, {ms32:.1f} ms batched; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
