"""ELPV solar cells, one-class: train on 80% of the defect-free cells (probability 0), test the other 20%
against the certainly defective cells (probability 1.0); image AUROC, and recall at the bundle's calibrated
threshold and at 10% false alarms on the test good cells; mono and poly cells reported separately too.

Data: `pip install elpv-dataset` (2,624 electroluminescence images, 300 x 300 grey; CC BY-NC-SA, research use).
Training uses `train_bundle` with its defaults unless told otherwise (`--model`, `--epochs`); scoring goes
through the deployed path (bundle Preprocessor -> ONNX Runtime -> Scorer in the C++ core). The split is drawn
once with `--seed`; nothing is tuned on the test cells.

    python benchmarks/quality/elpv.py [--model synth-seg] [--epochs 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=None, help="model type (default: train's default for images)")
    p.add_argument("--epochs", type=int, default=None, help="default: train's")
    p.add_argument("--image-size", type=int, default=None, help="train's --image-size (default: train's)")
    p.add_argument("--loss", default=None, help="train's --loss (default: train's, l2)")
    p.add_argument("--folds", type=int, default=0, help="train's --folds: out-of-fold calibration scores")
    p.add_argument(
        "--seed", type=int, default=0, help="the train/test split's seed (and training's by default)"
    )
    p.add_argument("--train-seed", type=int, default=None, help="training's seed alone: run-to-run spread")
    common.add_param_option(p)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--work", type=Path, default=common.REPO_ROOT / "build" / "quality" / "elpv")
    p.add_argument("--out", default="elpv", help="results file name (<results-dir>/<out>.json)")
    p.add_argument("--results-dir", type=Path, default=common.RESULTS_DIR)
    return p.parse_args(argv)


def load() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    try:
        from elpv_dataset.utils import load_dataset
    except ImportError:
        raise SystemExit("ELPV is not installed: pip install elpv-dataset") from None
    images, proba, types = load_dataset()
    return images, np.asarray(proba, dtype=np.float64), np.asarray(types)


def metrics(scores: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, Any]:
    good = scores[labels == 0]
    at_far10 = float(np.quantile(good, 0.9))
    return {
        "n_good": int((labels == 0).sum()),
        "n_defective": int((labels == 1).sum()),
        "auroc": common.auroc(labels, scores),
        "recall_at_calibrated": float((scores[labels == 1] > threshold).mean()),
        "far_at_calibrated": float((good > threshold).mean()),
        "recall_at_far_10pct": float((scores[labels == 1] > at_far10).mean()),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    images, proba, types = load()
    import cv2

    from edgeanom.backends.onnxruntime import OnnxRuntimeRunner
    from edgeanom.inference import score_arrays
    from edgeanom.train.api import train_bundle

    rng = np.random.default_rng(args.seed)
    normal = rng.permutation(np.flatnonzero(proba == 0.0))
    cut = int(0.8 * len(normal))
    train_idx, test_good = normal[:cut], normal[cut:]
    test_bad = np.flatnonzero(proba == 1.0)
    test_idx = np.concatenate([test_good, test_bad])
    labels = np.r_[np.zeros(len(test_good), np.int8), np.ones(len(test_bad), np.int8)]
    frames = [cv2.cvtColor(images[i], cv2.COLOR_GRAY2BGR) for i in range(len(images))]
    train_seed = args.seed if args.train_seed is None else args.train_seed
    options: dict[str, Any] = {"seed": train_seed, "threads": args.threads, "progress": False}
    if args.epochs is not None:
        options["epochs"] = args.epochs
    if args.folds:
        options["folds"] = args.folds
    if args.loss:
        options["loss"] = args.loss
    if args.image_size:
        options["image_size"] = args.image_size
    options.update(common.param_options(args.param))
    started = time.perf_counter()
    bundle = train_bundle(frames=[frames[i] for i in train_idx], model=args.model, out=args.work, **options)
    train_s = time.perf_counter() - started
    test = [frames[i] for i in test_idx]
    with OnnxRuntimeRunner(
        bundle.onnx_path, providers=["CPUExecutionProvider"], intra_op_threads=args.threads
    ) as r:
        t0 = time.perf_counter()
        scores = score_arrays(bundle, r, test, 16).scores.astype(np.float64)
        ms_batched = 1000 * (time.perf_counter() - t0) / len(test)
        t0 = time.perf_counter()
        score_arrays(bundle, r, test[:50], 1)
        ms_one = 1000 * (time.perf_counter() - t0) / 50
    threshold = bundle.threshold.value
    result = {"all": metrics(scores, labels, threshold)}
    tail = bundle.threshold.stats.get("tail")
    if tail:  # did the promised false-alarm rate hold on the unseen good cells?
        from edgeanom.evaluate.api import calibration_check

        good = int((labels == 0).sum())
        fp = round(result["all"]["far_at_calibrated"] * good)
        result["all"]["calibration"] = {**tail, **calibration_check(tail, fp, good)}
    for kind in ("mono", "poly"):
        keep = types[test_idx] == kind
        result[kind] = metrics(scores[keep], labels[keep], threshold)
    payload = {
        "dataset": "ELPV (elpv-dataset), probability 0 vs 1.0",
        "protocol": f"train on 80% of the {len(normal)} probability-0 cells (seed {args.seed}), test on the other "
        f"20% and the {len(test_bad)} probability-1.0 cells",
        "train_seed": train_seed,
        "model": bundle.model_type,
        "settings": {
            "epochs": bundle.meta["model"]["train"].get("epochs"),
            "loss": bundle.meta["model"]["train"].get("loss"),
            "params": bundle.meta["model"]["params"],
            "input": bundle.meta["input"],
        },
        "threshold": {
            "value": threshold,
            "method": bundle.threshold.method,
            "n_calibration_scores": bundle.threshold.stats.get("n"),
            "out_of_fold": bundle.threshold.stats.get("out_of_fold"),
            "held_out_normal_scores": {  # training-data statistics, e.g. to put two models' scores on one scale
                k: v for k, v in bundle.threshold.stats.items() if isinstance(v, (int, float))
            },
        },
        "results": result,
        "scores": {"cell": test_idx, "label": labels, "score": scores},  # per test cell, for later analysis
        "timings": {
            "train_seconds": round(train_s, 1),
            "ms_per_image_batched": ms_batched,
            "ms_per_image_one": ms_one,
        },
        "machine": common.machine_info(args.threads),
    }
    path = common.write_results(args.out, payload, args.results_dir)
    rows = [
        [k, v["auroc"], v["recall_at_calibrated"], v["far_at_calibrated"], v["recall_at_far_10pct"]]
        for k, v in result.items()
    ]
    common.print_table(
        f"ELPV one-class, {bundle.model_type}",
        ["cells", "AUROC", "recall@cal", "FAR@cal", "recall@FAR10%"],
        rows,
    )
    print(
        f"train {train_s:.0f} s, {ms_batched:.2f} ms per image batched, {ms_one:.2f} one at a time; wrote {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
