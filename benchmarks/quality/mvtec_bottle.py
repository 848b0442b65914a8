"""MVTec AD bottle: image-level AUROC of an edgeanom image autoencoder trained from scratch on the 209 good images.

Train with `edgeanom.train.api.train_bundle` (no pretrained weights), export FP32-fused and FP16 ONNX with
`edgeanom.export`, then score every test image through the deployed path (OpenCV decode -> bundle
`Preprocessor` -> ONNX Runtime -> `Scorer`: error map, Gaussian blur and top-k mean in the C++ core).
Settings are fixed in advance (never tuned on test AUROC); the test set is only scored once.

`--unaligned` turns and shifts every image (training and test) at random, so the bottles no longer sit in the
same place: real defects on objects that are not placed the same way each time, as on a belt (MVTec's
hazelnut, screw and metal nut are photographed like that).

    python benchmarks/quality/mvtec_bottle.py [--data ../shared/data/mvtec_bottle] [--epochs 50] [--unaligned]
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common

PUBLISHED = {
    "GANomaly (no pretrained weights)": 0.794,
    "DRAEM (from scratch, synthetic anomalies)": 0.992,
    "RIAD (from scratch)": 0.999,
    "PatchCore (ImageNet features)": 1.000,
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--data", type=Path, default=common.DEFAULT_DATA_ROOT / "mvtec_bottle", help="bottle folder"
    )
    p.add_argument("--work", type=Path, default=common.REPO_ROOT / "build" / "quality" / "mvtec_bottle")
    common.add_image_set_options(p)
    p.add_argument("--image-size", type=int, default=None, help="train's --image-size (default: train's)")
    p.add_argument("--color", default="rgb")
    p.add_argument("--loss", default=None, help="train's --loss (default: train's, l2)")
    p.add_argument(
        "--val-fraction",
        type=float,
        default=None,
        help="held-out share of the good images (default: train's)",
    )
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch", "--batch-size", dest="batch_size", type=int, default=16)
    p.add_argument("--blur-sigma", type=float, default=None, help="default: the train API's (2 px per 128)")
    p.add_argument("--topk", type=int, default=None, help="default: the train API's (1 %% of the pixels)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--unaligned",
        action="store_true",
        help=f"turn each image by up to +-{MAX_TURN:g} degrees and shift it by up to {MAX_SHIFT:.0%}% (seeded)",
    )
    common.add_param_option(p)
    p.add_argument(
        "--threads", type=int, default=1, help="torch/ONNX Runtime threads (1 wins on a busy 2-core box)"
    )
    p.add_argument("--out", default="mvtec_bottle", help="results file name (<results-dir>/<out>.json)")
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return p.parse_args(argv)


MAX_TURN, MAX_SHIFT = 20.0, 0.08  # --unaligned: degrees; fraction of the image side


def unalign(frames: list[np.ndarray], seed: int) -> list[np.ndarray]:
    """Each image turned about its centre and shifted at random (mirrored borders, so no black corners)."""
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for img in frames:
        h, w = img.shape[:2]
        turn = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-MAX_TURN, MAX_TURN), 1.0)
        turn[:, 2] += rng.uniform(-MAX_SHIFT, MAX_SHIFT, 2) * (w, h)
        out.append(cv2.warpAffine(img, turn, (w, h), borderMode=cv2.BORDER_REFLECT_101))
    return out


def score_images(
    bundle: Any, onnx_file: Path, frames: list[np.ndarray], threads: int, batch: int
) -> tuple[np.ndarray, float]:
    """Deployed-path scores and milliseconds per image at this batch size."""
    from edgeanom.backends.onnxruntime import OnnxRuntimeRunner
    from edgeanom.inference import score_arrays

    with OnnxRuntimeRunner(onnx_file, providers=["CPUExecutionProvider"], intra_op_threads=threads) as runner:
        score_arrays(bundle, runner, frames[:2], batch)  # warm-up
        t0 = time.perf_counter()
        scores = score_arrays(bundle, runner, frames, batch).scores.astype(np.float64)
        ms = 1000.0 * (time.perf_counter() - t0) / len(frames)
    return scores, ms


def report(labels: np.ndarray, groups: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    """AUROC (all, per defect) and what the bundle's calibrated threshold does on the test images."""
    return {
        "auroc": common.auroc(labels, scores),
        "per_defect_auroc": common.per_group_auroc(labels, scores, groups),
        "recall_at_calibrated": float((scores[labels == 1] > threshold).mean()),
        "far_at_calibrated": float((scores[labels == 0] > threshold).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    root = common.require_dir(args.data, "MVTec AD bottle")
    import torch

    from edgeanom.bundle import Bundle, load_bundle
    from edgeanom.export.pipeline import ExportOptions, export_bundle
    from edgeanom.train.api import train_bundle

    torch.set_num_threads(args.threads)
    train_paths, test = common.mvtec_split(root)
    train_frames = common.read_images(train_paths)
    test_frames = common.read_images([t.path for t in test])
    labels = np.array([t.label for t in test])
    if args.unaligned:
        train_frames, test_frames = unalign(train_frames, args.seed), unalign(test_frames, args.seed + 1)
    groups = np.array([t.defect for t in test])
    print(
        f"MVTec bottle: {len(train_frames)} good training images, {len(test_frames)} test images", flush=True
    )

    started = time.perf_counter()
    bundle = train_bundle(
        frames=train_frames,
        frames_ordered=args.split == "temporal",
        model=args.model,
        out=args.work,
        image_size=args.image_size,
        color=args.color,
        epochs=args.epochs,
        batch_size=args.batch_size,
        blur_sigma=args.blur_sigma,
        topk=args.topk,
        seed=args.seed,
        threads=args.threads,
        progress=False,
        loss=args.loss,  # None: train's default (train_bundle ignores None options)
        val_fraction=args.val_fraction,
        threshold=args.threshold,
        **common.param_options(args.param),
    )
    train_s = float(bundle.meta["model"]["train"]["seconds"])
    t0 = time.perf_counter()
    export_bundle(args.work, ExportOptions(fp16=True, fused=True, seed=args.seed))
    export_s = time.perf_counter() - t0
    bundle = load_bundle(args.work)

    fp16_file = bundle.path / bundle.onnx["fp16_file"]
    # 1) edgeanom train's default: the blurred error map z-scored per pixel with its statistics on the good
    #    training images (score.map.normalize, fitted by train_bundle), then the top-k mean
    s32, ms32 = score_images(bundle, bundle.onnx_path, test_frames, args.threads, 16)
    s16, ms16 = score_images(bundle, fp16_file, test_frames, args.threads, 16)
    score_map = bundle.score.get("map")  # None for models that output the score itself (feat-vae)
    norm_info = dict((score_map or {}).get("normalize") or {})  # empty for maps not normalised (grad-knn)
    # 2) the same model and maps without that normalisation (plain blurred L2 map, top-k mean), through the
    #    un-fused FP32 graph: the fused one normalises inside the graph
    d32: Any = None
    if norm_info:
        plain = Bundle(bundle.path, copy.deepcopy(bundle.meta))
        plain.meta["score"]["map"].pop("normalize", None)
        plain.meta["onnx"]["fused"] = None
        d32, _ = score_images(plain, bundle.path / bundle.onnx["fp32_file"], test_frames, args.threads, 16)
    _, ms1 = score_images(bundle, bundle.onnx_path, test_frames[:40], args.threads, 1)
    threshold = float(bundle.threshold.value)
    r32, r16 = report(labels, groups, s32, threshold), report(labels, groups, s16, threshold)
    rd32 = report(labels, groups, d32, threshold) if d32 is not None else None
    rel = np.abs(s16 - s32) / np.maximum(np.abs(s32), 1e-12)
    payload = {
        "dataset": "MVTec AD bottle (209 train/good; test 20 good, 63 defective), 256x256 copies"
        + (
            f", each turned up to +-{MAX_TURN:g} degrees and shifted up to {MAX_SHIFT:.0%}"
            if args.unaligned
            else ""
        ),
        "metric": "image-level AUROC",
        "headline": f"{bundle.model_type} with edgeanom train's defaults"
        + (": per-pixel normalised map score (score.map.normalize)" if norm_info else "")
        + ", FP32",
        "fp32": r32,
        "fp16": r16,
        "without_map_normalisation": {"fp32": rd32},
        "map_normalisation": norm_info,
        "fp16_change": {
            "auroc": r16["auroc"] - r32["auroc"],
            "score_rel_err_median": float(np.median(rel)),
            "score_rel_err_max": float(rel.max()),
        },
        "published": PUBLISHED,
        "settings": {
            "model": bundle.model_type,
            "params": bundle.meta["model"]["params"],
            "image_size": bundle.meta["preprocess"]["image"]["size"],
            "color": args.color,
            "loss": bundle.meta["model"]["train"]["loss"],
            "val_fraction": "train's default" if args.val_fraction is None else args.val_fraction,
            "epochs": args.epochs,
            "epochs_run": bundle.meta["model"]["train"]["epochs_run"],
            "best_epoch": bundle.meta["model"]["train"]["best_epoch"],
            "batch_size": args.batch_size,
            "score_map": bundle.score.get("map"),
            "seed": args.seed,
            "split": args.split,
            "unaligned": args.unaligned,
            "pretrained_weights": None,
            "scored_through": "exported fused ONNX in ONNX Runtime (CPU) + edgeanom Preprocessor/Scorer (C++ core)",
        },
        "timings": {
            "train_seconds": train_s,
            "export_seconds": export_s,
            "wall_seconds_total": time.perf_counter() - started,
            "ms_per_image_batch16_fp32": ms32,
            "ms_per_image_batch16_fp16": ms16,
            "ms_per_image_batch1_fp32": ms1,
        },
        "machine": common.machine_info(args.threads),
        "scores": {"fp32": s32, "fp16": s16, "fp32_default": d32, "labels": labels, "defect": groups},
    }
    path = common.write_results(args.out, payload, args.results_dir)
    defects = sorted(r32["per_defect_auroc"])
    rows = [
        *[
            [
                f"edgeanom {bundle.model_type} {what} ({prec})",
                r["auroc"],
                *[r["per_defect_auroc"][d] for d in defects],
            ]
            for what, pair in (
                ("train default (map normalisation)" if norm_info else "train default", (r32, r16)),
                *((("without map normalisation", (rd32,)),) if rd32 is not None else ()),
            )
            for prec, r in zip(("FP32", "FP16"), pair)
        ],
        *[[f"published {k}", v, *["" for _ in defects]] for k, v in PUBLISHED.items()],
    ]
    common.print_table("MVTec AD bottle, image-level AUROC", ["method", "AUROC", *defects], rows)
    print(
        f"at the calibrated threshold (FP32): recall {r32['recall_at_calibrated']:.2f}, "
        f"{r32['far_at_calibrated']:.0%} of the good test images flagged"
    )
    print(f"train {train_s:.0f}s, {ms1:.1f} ms per image one at a time, {ms32:.1f} ms batched; wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
