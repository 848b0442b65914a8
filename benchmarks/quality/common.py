"""Shared pieces of the quality benchmarks: data layouts, protocol metrics, the deployed scoring path, results.

Every benchmark scores through what a device runs: the exported ONNX model in ONNX Runtime, the bundle's
`Preprocessor`, and the bundle's `Scorer` (the C++ core `edgeanom.scoring`). The protocol code here is pure
numpy so the smoke test can check it on tiny generated data.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from edgeanom.jsonutil import to_jsonable

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = Path(os.environ.get("EDGEANOM_DATA", REPO_ROOT.parent / "shared" / "data"))
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results" / "quality"
MISSING_DATA_EXIT = 2


def require_dir(path: Path, what: str) -> Path:
    """Exit with a one-line message (status 2) when a data folder is missing; benchmarks need the real data."""
    if not Path(path).is_dir():
        print(
            f"error: {what} data folder '{path}' not found. This benchmark needs the real data set "
            f"(see ../shared/data/README.md); pass --data PATH or set EDGEANOM_DATA.",
            file=sys.stderr,
        )
        raise SystemExit(MISSING_DATA_EXIT)
    return Path(path)


# ---------------------------------------------------------------------------------------------- SKAB
SKAB_LABEL_COLUMNS = ("anomaly", "changepoint")


@dataclass
class SkabExperiment:
    name: str  # e.g. "valve1/3"
    values: np.ndarray  # float64 (T, 8) sensor readings in file order
    anomaly: np.ndarray  # bool (T,)
    columns: list[str]


def skab_experiment_files(root: Path) -> list[Path]:
    """Every experiment CSV (all folders except anomaly-free), sorted by folder then number."""

    def key(p: Path) -> tuple[str, int, str]:
        return (p.parent.name, int(p.stem) if p.stem.isdigit() else 1 << 30, p.stem)

    files = [p for p in Path(root).rglob("*.csv") if "anomaly-free" not in p.parts]
    return sorted(files, key=key)


def read_skab(path: Path) -> SkabExperiment:
    """One `;`-separated SKAB file -> sensor matrix (every column but datetime and the labels) and labels."""
    import pandas as pd

    frame = pd.read_csv(path, sep=";")
    missing = [c for c in ("datetime", *SKAB_LABEL_COLUMNS) if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: column(s) {missing} missing; expected a SKAB experiment file")
    sensors = [c for c in frame.columns if c not in ("datetime", *SKAB_LABEL_COLUMNS)]
    return SkabExperiment(
        name=f"{path.parent.name}/{path.stem}",
        values=frame[sensors].to_numpy(dtype=np.float64),
        anomaly=frame["anomaly"].to_numpy() > 0.5,
        columns=sensors,
    )


def skab_point_flags(
    window_flags: np.ndarray, n_points: int, length: int, rule: str = "leaderboard"
) -> np.ndarray:
    """Map window-level alarms (window i covers points i..i+length-1, stride 1) to point-level flags.

    rule="leaderboard": exactly SKAB's Conv-AE notebook, which produced the published table: point d is
    flagged when windows d-length+1 .. d-1 all alarm, for d in [length-1, n_windows-length] (so the first
    length-1 and the last ~2*length-2 points are never flagged).
    rule="covering": point p is flagged when every window that contains it alarms (edges included).
    """
    wf = np.asarray(window_flags, dtype=bool)
    n_windows = wf.shape[0]
    out = np.zeros(n_points, dtype=bool)
    # misses[i] = number of non-alarming windows among the first i windows
    misses = np.concatenate([[0], np.cumsum(~wf)])
    if rule == "leaderboard":
        d = np.arange(length - 1, n_windows - length + 1)
        if d.size:
            out[d] = (misses[d] - misses[d - length + 1]) == 0
        return out
    if rule == "covering":
        p = np.arange(n_points)
        lo = np.maximum(0, p - length + 1)
        hi = np.minimum(n_windows - 1, p)
        has = lo <= hi
        out[has] = (misses[hi[has] + 1] - misses[lo[has]]) == 0
        return out
    raise ValueError(f"unknown point rule {rule!r}: expected 'leaderboard' or 'covering'")


def binary_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """SKAB's point-wise metrics: F1 = TP / (TP + (FP + FN) / 2), FAR = FP / (FP + TN), MAR = FN / (FN + TP)."""
    t = np.asarray(y_true, dtype=bool)
    p = np.asarray(y_pred, dtype=bool)
    tp, fp = int((t & p).sum()), int((~t & p).sum())
    fn, tn = int((t & ~p).sum()), int((~t & ~p).sum())
    return {
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "tn": tn,
        "f1": tp / (tp + (fp + fn) / 2) if tp + fp + fn else 0.0,
        "far_pct": 100.0 * fp / (fp + tn) if fp + tn else 0.0,
        "mar_pct": 100.0 * fn / (fn + tp) if fn + tp else 0.0,
    }


# ---------------------------------------------------------------------------------------------- UCSD Ped2
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif")


def list_images(folder: Path) -> list[Path]:
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def ped2_videos(root: Path, split: str) -> dict[str, list[Path]]:
    """`{video id: frame files in order}` for split 'training' or 'testing' (layout `<split>/frames/<id>/NNN.jpg`)."""
    base = Path(root) / split / "frames"
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: not found (expected ucsd_ped2/{split}/frames/<video>/<frame>.jpg)")
    return {d.name: list_images(d) for d in sorted(base.iterdir()) if d.is_dir()}


def ped2_labels(labels_file: Path) -> dict[str, np.ndarray]:
    """labels.json -> `{video id: bool[frames]}`; ranges are 1-based and inclusive (frame k is file k-1)."""
    spec = json.loads(Path(labels_file).read_text())
    videos = spec.get("videos")
    if not isinstance(videos, dict):
        raise ValueError(f"{labels_file}: expected a 'videos' object")
    out: dict[str, np.ndarray] = {}
    for vid, info in videos.items():
        n = int(info["frames"])
        flags = np.zeros(n, dtype=bool)
        for first, last in info.get("anomalous_ranges", []):
            if not 1 <= int(first) <= int(last) <= n:
                raise ValueError(f"{labels_file}: video {vid}: range [{first}, {last}] outside 1..{n}")
            flags[int(first) - 1 : int(last)] = True
        out[str(vid)] = flags
    return out


# ---------------------------------------------------------------------------------------------- MVTec AD
@dataclass
class LabelledImage:
    path: Path
    defect: str  # "good" or the defect folder name
    label: int  # 1 = anomalous


def mvtec_split(root: Path) -> tuple[list[Path], list[LabelledImage]]:
    """train/good images and every test image with its defect type (from the folder name)."""
    train = list_images(Path(root) / "train" / "good")
    test: list[LabelledImage] = []
    for d in sorted((Path(root) / "test").iterdir()):
        if d.is_dir():
            test += [LabelledImage(p, d.name, int(d.name != "good")) for p in list_images(d)]
    return train, test


def read_images(paths: Iterable[Path]) -> list[np.ndarray]:
    """Decode with OpenCV (BGR uint8, grey kept as 3 channels, as the camera path sees frames)."""
    import cv2

    frames = []
    for p in paths:
        img = cv2.imread(str(p), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{p}: OpenCV cannot decode this image")
        frames.append(img)
    return frames


# ---------------------------------------------------------------------------------------------- metrics
def auroc(labels: Sequence[int], scores: Sequence[float]) -> float:
    from sklearn.metrics import roc_auc_score

    return float(
        roc_auc_score(np.asarray(labels), np.nan_to_num(np.asarray(scores, dtype=np.float64), posinf=1e30))
    )


def per_group_auroc(
    labels: np.ndarray, scores: np.ndarray, groups: np.ndarray, normal: str = "good"
) -> dict[str, float]:
    """AUROC of each anomalous group against the normal group (MVTec per-defect-type AUROC)."""
    out = {}
    normal_mask = groups == normal
    for g in sorted(set(groups.tolist()) - {normal}):
        m = normal_mask | (groups == g)
        out[g] = auroc(labels[m], scores[m])
    return out


# ---------------------------------------------------------------------------------------------- timing
@dataclass
class Stopwatch:
    """Accumulates wall time and sample counts (per-sample cost = seconds / samples)."""

    seconds: float = 0.0
    samples: int = 0
    laps: list[float] = field(default_factory=list)

    def time(self, fn: Callable[[], Any], samples: int) -> Any:
        t0 = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t0
        self.seconds += dt
        self.samples += samples
        self.laps.append(dt / max(samples, 1))
        return out

    @property
    def ms_per_sample(self) -> float:
        return 1000.0 * self.seconds / max(self.samples, 1)


def add_param_option(parser: Any) -> None:
    """`--param NAME=VALUE` (repeatable): a model hyper-parameter, as `edgeanom train --param` takes it."""
    parser.add_argument(
        "--param", action="append", default=[], help="model hyper-parameter NAME=VALUE (train's --param)"
    )


def add_image_set_options(parser: Any) -> None:
    """`--model` (default: train's image default), `--split` and `--threshold` for the scripts that train on an
    image set."""
    parser.add_argument(
        "--split",
        choices=("random", "temporal"),
        default="random",
        help="validation split of the training images: random, as `edgeanom train --data FOLDER` does (default), "
        "or temporal (the last 20%% of the sorted images; the rows measured before 2026-12-03)",
    )
    parser.add_argument("--model", default=None, help="model type (default: train's default for images)")
    parser.add_argument(
        "--threshold", default=None, help="train's --threshold (default: train's, fpr:0.05 for an image set)"
    )


def param_options(texts: Sequence[str]) -> dict[str, Any]:
    """train_bundle keywords for the `--param` values: {"params": {...}}, or nothing when none were given."""
    from edgeanom.train.config import parse_param

    return {"params": dict(parse_param(t) for t in texts)} if texts else {}


def machine_info(threads: int) -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return {
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "threads": threads,
        "loadavg_at_end": [round(x, 2) for x in load],
        "python": platform.python_version(),
        "note": "shared 2-core machine: other engineers' jobs ran at the same time, so timings are pessimistic",
    }


# ---------------------------------------------------------------------------------------------- results
def write_results(name: str, payload: dict[str, Any], results_dir: Path = RESULTS_DIR) -> Path:
    """Write `<results_dir>/<name>.json` atomically (temp file + rename)."""
    results_dir.mkdir(parents=True, exist_ok=True)
    target = results_dir / f"{name}.json"
    tmp = target.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(to_jsonable(payload), indent=2) + "\n")
    tmp.replace(target)
    return target


def print_table(title: str, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for h in header:
        table.add_column(str(h))
    for r in rows:
        table.add_row(*[_fmt(v) for v in r])
    Console().print(table)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)
