"""ELPV solar cells, one-class: train on 80% of the defect-free cells (probability 0), test the other 20%
against the certainly defective cells (probability 1.0); image AUROC, and recall at the bundle's calibrated
threshold and at 10% false alarms on the test good cells; mono and poly cells reported separately too.

Data: `pip install elpv-dataset` (2,624 electroluminescence images, 300 x 300 grey; CC BY-NC-SA, research use).
Training uses `train_bundle` with its defaults unless told otherwise (`--model`, `--epochs`); scoring goes
through the deployed path (bundle Preprocessor -> ONNX Runtime -> Scorer in the C++ core). The split is drawn
once with `--seed`; nothing is tuned on the test cells.

    python benchmarks/quality/elpv.py [--model synth-seg] [--epochs 20] [--threads 2]
    python benchmarks/quality/elpv.py --baselines-only     # the two training-free baselines, seconds

Every run also scores two training-free baselines on the same split, the obvious alternatives a model has to
beat: the cell's mean brightness (defects here are mostly dark) and the nearest training cell's distance at
8 x 8 pixels.
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

DATASET = "ELPV (elpv-dataset), probability 0 vs 1.0"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common.add_image_set_options(p)
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
    p.add_argument(
        "--baselines-only", action="store_true", help="score the training-free baselines alone (no training)"
    )
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


def split(proba: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(training cells, test cells, test labels): 80% of the probability-0 cells train; the other 20% and every
    probability-1.0 cell test."""
    rng = np.random.default_rng(seed)
    normal = rng.permutation(np.flatnonzero(proba == 0.0))
    cut = int(0.8 * len(normal))
    test_good, test_bad = normal[cut:], np.flatnonzero(proba == 1.0)
    labels = np.r_[np.zeros(len(test_good), np.int8), np.ones(len(test_bad), np.int8)]
    return normal[:cut], np.concatenate([test_good, test_bad]), labels


THUMBNAIL = 8  # pixels a side for the nearest-neighbour baseline


def baseline_scores(images: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray) -> dict[str, np.ndarray]:
    """Training-free scores of the test cells: darkness (minus the mean grey level) and the distance to the
    nearest training cell at THUMBNAIL x THUMBNAIL pixels (area-averaged)."""
    import cv2
    from sklearn.neighbors import NearestNeighbors

    def thumbnails(idx: np.ndarray) -> np.ndarray:
        size = (THUMBNAIL, THUMBNAIL)
        return (
            np.stack([cv2.resize(images[i], size, interpolation=cv2.INTER_AREA) for i in idx])
            .reshape(len(idx), -1)
            .astype(np.float64)
            / 255.0
        )

    nearest = NearestNeighbors(n_neighbors=1).fit(thumbnails(train_idx))
    return {
        "darkness": -images[test_idx].reshape(len(test_idx), -1).mean(axis=1) / 255.0,
        f"nearest_cell_{THUMBNAIL}x{THUMBNAIL}": nearest.kneighbors(thumbnails(test_idx))[0][:, 0],
    }


def baselines(
    images: np.ndarray, types: np.ndarray, train_idx: np.ndarray, test_idx: np.ndarray, labels: np.ndarray
) -> dict[str, dict[str, float]]:
    """AUROC of each training-free baseline on all, mono and poly test cells."""
    out = {}
    for name, scores in baseline_scores(images, train_idx, test_idx).items():
        out[name] = {"all": common.auroc(labels, scores)}
        for kind in ("mono", "poly"):
            keep = types[test_idx] == kind
            out[name][kind] = common.auroc(labels[keep], scores[keep])
    return out


def print_baselines(found: dict[str, dict[str, float]]) -> None:
    common.print_table(
        "ELPV training-free baselines (AUROC)",
        ["baseline", "all", "mono", "poly"],
        [[name, v["all"], v["mono"], v["poly"]] for name, v in found.items()],
    )


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

    train_idx, test_idx, labels = split(proba, args.seed)
    protocol = (
        f"train on 80% of the {int((proba == 0.0).sum())} probability-0 cells (seed {args.seed}), test on the "
        f"other 20% and the {int(labels.sum())} probability-1.0 cells"
    )
    found = baselines(images, types, train_idx, test_idx, labels)
    if args.baselines_only:
        path = common.write_results(
            args.out if args.out != "elpv" else "elpv_baselines",
            {"dataset": DATASET, "protocol": protocol, "baselines": found},
            args.results_dir,
        )
        print_baselines(found)
        print(f"wrote {path}")
        return 0
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
    options["frames_ordered"] = args.split == "temporal"
    options["threshold"] = args.threshold  # None: train's default
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
        "dataset": DATASET,
        "protocol": protocol,
        "train_seed": train_seed,
        "model": bundle.model_type,
        "settings": {
            "split": args.split,
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
        "baselines": found,
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
    print_baselines(found)
    print(
        f"train {train_s:.0f} s, {ms_batched:.2f} ms per image batched, {ms_one:.2f} one at a time; wrote {path}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
