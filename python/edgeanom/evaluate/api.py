"""`evaluate_bundle`: score labelled data through the deployed path and write a quality report.

Raw samples go through `Preprocessor(bundle)` -> `OnnxRuntimeRunner(bundle.onnx_path)` -> `Scorer(bundle)`
(the C++ core), exactly what `run` does on the device, so the numbers describe the deployed model. Bundles that
pack frames (preprocess.image.pack) get each video / frame folder packed in order, like a `run` stream.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom import data as loaders
from edgeanom.bundle import DEFAULT_BUNDLE_DIR, Bundle, load_bundle
from edgeanom.errors import EdgeanomError
from edgeanom.fileio import atomic_write_text, check_output_dir

IMAGE_CHUNK = 64


@dataclass
class EvalSet:
    """Scores with their labels, classes and sample names, in data order."""

    scores: np.ndarray
    labels: np.ndarray
    classes: Optional[list[Optional[str]]] = None
    names: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    threshold: Optional[float] = None  # what `scores` are compared with (None: the bundle's threshold)
    maps: Optional[np.ndarray] = None  # anomaly maps [N, H, W] when ground-truth masks were found
    masks: Optional[np.ndarray] = None  # their masks [N, H, W] (bool)
    image_root: Optional[Path] = None  # where the evaluated images are (for overlays)


def evaluate_bundle(
    bundle_dir: Any = DEFAULT_BUNDLE_DIR,
    data: Any = None,
    labels: Any = None,
    report_dir: Any = None,
    *,
    frames: Any = None,
    table: Any = None,
    series: Any = None,
    label_column: Optional[str] = None,
    drop_na: bool = False,
    batch_size: Optional[int] = None,
    threads: Optional[int] = None,
    plots: bool = True,
    adaptive: Optional[bool] = None,
    masks: Any = None,
) -> dict[str, Any]:
    """Evaluate a bundle on labelled data; returns the report (also written to `report_dir`/report.json).

    Labels come from MVTec-style class folders (``good/`` normal), a labels file (`labels`: Ped2-style JSON
    ranges, a name,label CSV, or one 0/1 per sample), a label column of a table/sensor CSV, or an array.
    A window is labelled anomalous when any of its time steps is. Sensor and table bundles with an adaptive
    stage (`adaptive`: None = the bundle's setting) are judged by it as `run` does: causally, each file a
    fresh stream, so the report's scores are surprises and its threshold the stage's. Image sets with
    ground-truth masks (`masks`, or MVTec's `ground_truth/` beside the test folder) also get pixel AUROC and
    PRO of the anomaly maps, and overlays of the worst misses and false alarms in `report_dir`.
    """
    from edgeanom.backends.onnxruntime import OnnxRuntimeRunner

    bundle = load_bundle(bundle_dir)
    from edgeanom.threads import resolve_threads

    if report_dir is not None:
        check_output_dir(Path(report_dir), "--report")  # before scoring, not after

    loaders.single_source(data=data, frames=frames, table=table, series=series)
    n_threads = resolve_threads(threads)
    with OnnxRuntimeRunner(
        bundle.onnx_path, intra_op_threads=n_threads, spin_wait=False, sample_shape=bundle.input_shape
    ) as runner:
        if bundle.input_kind == "image":
            evalset = _score_images(
                bundle, runner, frames if frames is not None else data, labels, batch_size or 16, masks
            )
        else:
            source = next(v for v in (data, table, series) if v is not None)
            evalset = _score_tables(
                bundle, runner, source, labels, label_column, drop_na, batch_size or 256, adaptive
            )
        evalset.info["backend"] = runner.name
    return build_report(bundle, evalset, report_dir, plots=plots)


def _score_images(
    bundle: Bundle, runner: Any, source: Any, labels: Any, batch_size: int, masks: Any = None
) -> EvalSet:
    from edgeanom.evaluate.localisation import find_mask_dir, load_mask
    from edgeanom.inference import score_arrays
    from edgeanom.preprocess import Preprocessor
    from edgeanom.scorer import Scorer

    if isinstance(source, (str, os.PathLike)):
        folder = loaders.ImageSource(source, labels=labels)
        if not folder.labelled:
            raise EdgeanomError(
                f"eval needs labels for '{source}': use MVTec-style folders (good/ and one folder per defect "
                "type) or give --labels FILE (Ped2-style JSON ranges, name,label CSV, or one 0/1 per frame)"
            )
        records: Iterator[loaders.FrameRecord] = iter(folder)
        skipped = folder
    else:
        if labels is None:
            raise EdgeanomError("eval with frames= needs labels= (one 0/1 per frame)")
        records = loaders.memory_frames(list(source), labels)
        skipped = None
    where = str(source) if isinstance(source, (str, os.PathLike)) else "frames"  # for messages
    pre, scorer = Preprocessor(bundle), Scorer(bundle)
    mask_dir: Optional[Path] = None
    if isinstance(source, (str, os.PathLike)) and bundle.score.get("map"):
        mask_dir = Path(masks) if masks is not None else find_mask_dir(source)
        if mask_dir is not None and not mask_dir.is_dir():
            raise EdgeanomError(f"--masks {mask_dir}: not a directory")
    kept_maps: list[np.ndarray] = []
    kept_masks: list[np.ndarray] = []
    packing: Optional[loaders.ScoredPacking] = None
    if pre.pack is not None:  # video models: each video / frame folder packed causally, as `run` does
        packing = loaders.ScoredPacking(records, pre.pack, where)
        records = iter(packing)
    scores: list[np.ndarray] = []
    y: list[int] = []
    classes: list[Optional[str]] = []
    names: list[str] = []

    def flush(batch: list[loaders.FrameRecord]) -> None:
        result = score_arrays(
            bundle,
            runner,
            [r.frame for r in batch],
            batch_size,
            preprocessor=pre,
            scorer=scorer,
            keep_maps=mask_dir is not None,
        )
        scores.append(result.scores)
        if mask_dir is not None and result.maps is not None:
            kept_maps.append(result.maps)
            size = result.maps.shape[1:]
            kept_masks.extend(load_mask(mask_dir, r.name, size) for r in batch)
        for r in batch:
            y.append(int(r.label or 0))
            classes.append(r.cls)
            names.append(r.name)
        batch.clear()

    pending: list[loaders.FrameRecord] = []
    for rec in records:
        pending.append(rec)
        if len(pending) >= IMAGE_CHUNK:
            flush(pending)
    if pending:
        flush(pending)
    bad = list(skipped.skipped) if skipped is not None else []
    n_warmup = packing.n_warmup if packing is not None else 0
    if not names:
        raise EdgeanomError(f"{where}: none of the images could be decoded ({len(bad)} unreadable files)")
    return EvalSet(
        np.concatenate(scores),
        np.asarray(y, dtype=np.int8),
        classes if any(c is not None for c in classes) else None,
        names,
        {
            "source": str(source) if isinstance(source, (str, os.PathLike)) else "frames",
            "n_skipped": len(bad),
            "skipped": bad[:20],
            "truncated_videos": list(getattr(skipped, "truncated", []))[:20],
            "n_warmup": n_warmup,  # packed-frame warm-up: `run` emits no sample for these either
        },
        maps=np.concatenate(kept_maps) if kept_maps else None,
        masks=np.stack(kept_masks) if kept_masks else None,
        image_root=Path(source) if isinstance(source, (str, os.PathLike)) else None,
    )


def _score_tables(
    bundle: Bundle,
    runner: Any,
    source: Any,
    labels: Any,
    label_column: Optional[str],
    drop_na: bool,
    batch_size: int,
    adaptive: Optional[bool] = None,
) -> EvalSet:
    from edgeanom.inference import score_arrays
    from edgeanom.preprocess import Preprocessor

    spec = bundle.preprocess
    tables = loaders.load_tables(
        source,
        columns=spec.get("columns"),
        label_column=label_column,
        time_column=spec.get("time_column"),
        detect_time=bundle.input_kind == "window",
        drop_na=drop_na,
        labels=labels,
    )
    missing = [t.source for t in tables if t.labels is None]
    if missing:
        raise EdgeanomError(
            f"eval needs labels: {missing[0]} has no label column (give --label-column NAME, or --labels FILE)"
        )
    from edgeanom.adaptive import stage_for

    stage = stage_for(bundle, adaptive)
    pre = Preprocessor(bundle)
    scores, ys, names = [], [], []
    for t in tables:
        assert t.labels is not None
        if bundle.input_kind == "vector":
            x, y = t.values, t.labels
            names += [f"{t.source}:{i + 1}" for i in range(len(y))]
        else:
            from edgeanom.data import windows_with_labels

            window = spec["window"]
            length, stride = int(window["length"]), int(window["stride"])
            x, y = windows_with_labels(t.values, t.labels, length, stride)  # raw: Preprocessor scales
            names += [f"{t.source}:{i * stride + 1}-{i * stride + length}" for i in range(len(y))]
        if len(x):
            raw = score_arrays(bundle, runner, x, batch_size, preprocessor=pre).scores
            if stage is not None:  # the file is one stream, judged from its first sample as `run` does
                stage.reset()
                raw = stage.update(raw, pre(x), np.zeros(len(raw), np.int64)).surprise
            scores.append(raw)
            ys.append(y)
    if not scores:
        raise EdgeanomError(f"no samples to evaluate in {source} (series shorter than the window?)")
    info = {
        "source": ", ".join(t.source for t in tables[:5]) + (" ..." if len(tables) > 5 else ""),
        "n_files": len(tables),
        "n_dropped_rows": int(sum(t.dropped_rows for t in tables)),
    }
    if stage is not None:
        info["scoring"] = f"adaptive (surprise; alarm at {stage.threshold:g})"
    return EvalSet(
        np.concatenate(scores),
        np.concatenate(ys),
        None,
        names,
        info,
        threshold=None if stage is None else stage.threshold,
    )


def calibration_check(tail: dict[str, Any], false_alarms: int, normals: int) -> dict[str, Any]:
    """Did the promised false-alarm rate hold? The rate seen on these normals has its own sampling error
    (a 90% Clopper-Pearson interval); the promise held when that interval meets the predicted one."""
    from scipy.stats import beta

    lo, hi = tail["far_interval_90"]
    k, n = int(false_alarms), int(normals)
    seen_lo = 0.0 if k == 0 else float(beta.ppf(0.05, k, n - k + 1))
    seen_hi = 1.0 if k == n else float(beta.ppf(0.95, k + 1, n - k))
    return {
        "expected_far": tail["expected_far"],
        "far_interval_90": [lo, hi],
        "far_on_these_normals": k / n if n else None,
        "seen_interval_90": [seen_lo, seen_hi],
        "held": bool(seen_lo <= hi and lo <= seen_hi),
        "method": tail["method"],
    }


def build_report(
    bundle: Bundle, evalset: EvalSet, report_dir: Any = None, plots: bool = True
) -> dict[str, Any]:
    """Metrics at the bundle's threshold plus curves; writes report.json, scores.csv and PNGs when asked."""
    from edgeanom.evaluate.metrics import detection_metrics, finite_scores

    threshold = bundle.threshold.value if evalset.threshold is None else evalset.threshold
    report = detection_metrics(evalset.scores, evalset.labels, threshold, evalset.classes)
    report["model"] = {
        "bundle": str(bundle.path),
        "type": bundle.model_type,
        "input": bundle.meta["input"],
        "threshold_method": bundle.threshold.method if evalset.threshold is None else "adaptive",
    }
    report["data"] = evalset.info
    if evalset.maps is not None and evalset.masks is not None:
        from edgeanom.evaluate.localisation import pixel_auroc, pro_score

        report["localisation"] = {
            "pixel_auroc": pixel_auroc(evalset.maps, evalset.masks),
            "pro_0.3": pro_score(evalset.maps, evalset.masks),
            "n_images_with_defect_pixels": int(
                evalset.masks.reshape(len(evalset.masks), -1).any(axis=1).sum()
            ),
            "map_size": list(evalset.maps.shape[1:]),
        }
    tail = bundle.threshold.stats.get("tail") if evalset.threshold is None else None
    if tail and report["far"] is not None:
        report["calibration"] = calibration_check(tail, report["confusion"]["fp"], report["n_normal"])
    if report_dir is not None:
        out = Path(report_dir)
        out.mkdir(parents=True, exist_ok=True)
        files: dict[str, str] = {"report": "report.json", "scores": "scores.csv"}
        with (out / "scores.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["name", "label", "class", "score"])
            cls = evalset.classes or [None] * len(evalset.names)
            for name, label, c, s in zip(evalset.names, evalset.labels, cls, evalset.scores):
                w.writerow([name, int(label), c or "", f"{float(s):.9g}"])
        if plots:
            from edgeanom.evaluate import plots as figs

            s = finite_scores(evalset.scores)
            figs.score_histogram(
                np.asarray(evalset.scores, dtype=np.float64), evalset.labels, threshold, out / "histogram.png"
            )
            files["histogram"] = "histogram.png"
            if report["auroc"] is not None:
                figs.roc_curve_plot(s, evalset.labels, report["auroc"], out / "roc.png")
                figs.pr_curve_plot(s, evalset.labels, report["aupr"], out / "pr.png")
                files.update(roc="roc.png", pr="pr.png")
        if evalset.maps is not None and evalset.image_root is not None:
            from edgeanom.evaluate.localisation import write_overlays

            files["overlays"] = write_overlays(
                out / "overlays",
                evalset.image_root,
                evalset.names,
                evalset.scores,
                evalset.labels,
                evalset.maps,
            )
        report["files"] = files
        atomic_write_text(out / "report.json", json.dumps(report, indent=2) + "\n")
    return report
