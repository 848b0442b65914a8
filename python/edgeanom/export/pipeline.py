"""`export_bundle`: what `edgeanom export` does, step by step, with parity numbers for every artifact.

Torch bundles (the checkpoint is the source of truth):
1. re-export the FP32 graph from the checkpoint (`model.onnx`, un-fused, always kept), simplify it with
   onnxslim when that keeps its outputs, and check it against PyTorch on real and random samples (the
   bundle's own training and held-out samples from `holdout.npz`, `--data`, and random inputs);
2. `--fused-score` (default): `model.fused.onnx` = the FP32 graph + the score head; becomes `onnx.file`, so
   `run`, `eval` and `bench` read fused scores (checked against the C++ core);
3. `--fp16`: `model.fp16.onnx` (FP16 inside, FP32 at the edges, fused when 2. is on), with what FP16 costs
   on the held-out samples and on `--data`;
4. `--engine`: a TensorRT engine in the bundle's cache (or, without TensorRT/GPU, the trtexec commands);
5. `--triton DIR`: a Triton model repository.
6. `--deepstream DIR`: a DeepStream nvinfer config, the model and a probe that reads the score.
scikit-learn bundles: the skl2onnx graph is checked against the estimator and written to Triton/trtexec notes.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom.bundle import Bundle, load_bundle
from edgeanom.engines.build import DEFAULT_MAX_BATCH, DEFAULT_WORKSPACE_MB
from edgeanom.engines.cache import EngineCache, Profile
from edgeanom.errors import EdgeanomError
from edgeanom.export.parity import FP32_REL_TOL, ParityRow, fp16_cost, onnx_session, row, run_onnx
from edgeanom.export.samples import Samples, load_samples, parity_inputs
from edgeanom.export.trtexec import TrtexecCommand, trtexec_commands
from edgeanom.fileio import check_output_dir

log = logging.getLogger(__name__)

FP32_FILE = "model.onnx"
FUSED_FILE = "model.fused.onnx"
FP16_FILE = "model.fp16.onnx"
SIMPLIFY_REL_TOL = 1e-6  # a simplified graph must reproduce the exported one this closely
SKLEARN_REL_TOL = 1e-5  # ONNX Runtime scores vs scikit-learn's -decision_function
NO_LABELS = "no labelled data: AUROC delta n/a — pass --data with labels"
SELF_SCORED = {
    "error_map": "the anomaly map",
    "score": "the score",
}  # graph outputs the scorer reads as they are


@dataclass
class ExportOptions:
    fp16: bool = False
    fused: bool = True
    simplify: bool = True
    engine: bool = False
    int8: bool = False
    calib_data: Any = None  # path or preprocessed array; required for INT8
    data: Any = None  # real samples for the parity checks and the FP16 cost (path or array)
    labels: Any = None  # labels for `data` (1 = anomalous), when the data does not carry them
    max_batch: int = DEFAULT_MAX_BATCH
    opt_batch: Optional[int] = None
    workspace_mb: int = DEFAULT_WORKSPACE_MB
    triton_dir: Optional[Path] = None
    triton_name: Optional[str] = None
    triton_kind: str = "auto"  # instance kind of ONNX models: auto (Triton places them), cpu or gpu
    deepstream_dir: Optional[Path] = None
    seed: int = 0
    trust_pickle: bool = False  # scikit-learn baselines: load model.pkl (runs code) for parity/rebuild

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else "fp16" if self.fp16 else "fp32"


@dataclass
class ExportResult:
    bundle: Bundle
    files: dict[str, str] = field(default_factory=dict)  # role -> file inside the bundle
    parity: list[ParityRow] = field(default_factory=list)
    fp16_cost: Optional[dict[str, Any]] = None  # on --data when given, else held-out, else random inputs
    fp16_costs: dict[str, dict[str, Any]] = field(default_factory=dict)  # input set -> FP16 cost
    inputs: dict[str, str] = field(default_factory=dict)  # input set -> what it holds, in words
    simplified: Optional[dict[str, Any]] = None
    engine: Optional[dict[str, Any]] = None  # {"file", "built", "precision"} when an engine exists
    engine_note: Optional[str] = None  # why no engine was built
    trtexec: dict[int, TrtexecCommand] = field(default_factory=dict)
    triton: list[Path] = field(default_factory=list)
    deepstream: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def export_bundle(bundle_dir: Any, options: Optional[ExportOptions] = None) -> ExportResult:
    """Export the bundle at `bundle_dir` as `options` say; returns what was written and the parity numbers."""
    opts = options or ExportOptions()
    _check_options(opts)
    for folder, flag in ((opts.triton_dir, "--triton"), (opts.deepstream_dir, "--deepstream")):
        if folder is not None:
            check_output_dir(Path(folder), flag)  # before the export work, not after it
    bundle = load_bundle(bundle_dir, need_onnx=False)
    if opts.deepstream_dir is not None:
        from edgeanom.export.deepstream import check_servable

        check_servable(bundle)
    result = ExportResult(bundle)
    data = load_samples(bundle, opts.data, opts.labels) if opts.data is not None else None
    calib = load_samples(bundle, opts.calib_data) if opts.calib_data is not None else None
    if data is None and calib is not None:
        data = calib
    inputs = parity_inputs(bundle, data, opts.seed)
    result.inputs = {s.name: s.source for s in inputs}
    if len(inputs) == 1:
        result.notes.append(
            "no real samples: the bundle has no holdout.npz (trained by an older edgeanom or with "
            "holdout_samples: 0) and no --data PATH was given, so parity ran on random inputs only; "
            "the FP16 cost is more meaningful on held-out data"
        )
    sets = [(s.name, s.x) for s in inputs]
    if bundle.model_family == "sklearn":
        _export_sklearn(bundle, opts, sets, result)
    elif bundle.model_family == "stat":
        _export_statistical(bundle, opts, sets, result)
    else:
        _export_torch(bundle, opts, sets, inputs, result)
    # engines built from an earlier graph stay in the cache (run rebuilds on mismatch): list what is there
    bundle.meta["engines"] = EngineCache.for_bundle(bundle.path).bundle_records()
    bundle.save()
    _engine_step(bundle, opts, calib, result)
    if opts.triton_dir is not None:
        _triton_step(bundle, opts, result)
    if opts.deepstream_dir is not None:
        _deepstream_step(bundle, opts, result)
    return result


def _check_options(opts: ExportOptions) -> None:
    if opts.int8 and opts.calib_data is None:
        raise EdgeanomError(
            "--int8 needs calibration data: --calib-data PATH (a few hundred normal samples: an image folder, "
            "a CSV/Parquet file, or a .npy/.npz of preprocessed inputs)"
        )
    if opts.max_batch < 1:
        raise EdgeanomError(f"--max-batch must be >= 1, got {opts.max_batch}")
    if opts.workspace_mb < 1:
        raise EdgeanomError(f"--workspace must be >= 1 MB, got {opts.workspace_mb}")
    if opts.triton_kind.lower() not in ("auto", "cpu", "gpu"):
        raise EdgeanomError(f"--triton-kind must be auto, cpu or gpu, got {opts.triton_kind!r}")


# --- torch models ----------------------------------------------------------------------------------------
def _export_torch(
    bundle: Bundle,
    opts: ExportOptions,
    sets: list[tuple[str, np.ndarray]],
    inputs: list[Samples],
    result: ExportResult,
) -> None:
    from edgeanom.export.fp16 import convert_to_fp16
    from edgeanom.export.fused import ScoreSpec, append_score_head
    from edgeanom.export.onnx_graph import check_graph, export_checkpoint_model, opset_of, save_model
    from edgeanom.export.parity import torch_outputs
    from edgeanom.models.checkpoint import load_model

    model = load_model(bundle)
    input_name = "input"
    output_name = str(model.output_name)
    reference = {name: torch_outputs(model, x) for name, x in sets}

    base = check_graph(export_checkpoint_model(model), FP32_FILE)
    if opts.simplify:
        base = _simplified(base, sets, output_name, result)
    fp32_outputs = {name: run_onnx(onnx_session(base), x)[output_name] for name, x in sets}
    # Relative to the output's largest magnitude over all sets: a memory-bank model (grad-knn) scores its own
    # training samples ~0, where float32 rounding alone would be a large error relative to that set.
    scale = max(float(np.max(np.abs(r))) if np.size(r) else 0.0 for r in reference.values())
    for name, _x in sets:
        result.parity.append(
            row(
                f"{FP32_FILE} vs PyTorch",
                name,
                reference[name],
                fp32_outputs[name],
                FP32_REL_TOL,
                scale=scale,
            )
        )
    _require_ok(
        result.parity, f"the FP32 ONNX graph does not match PyTorch (tolerance {FP32_REL_TOL:g} relative)"
    )
    save_model(base, bundle.path / FP32_FILE)
    result.files["fp32"] = FP32_FILE

    # a graph that outputs the score itself (feat-vae, clip-lstm) needs no score head; one that outputs the
    # anomaly map (synth-seg, feat-map) gets the map's blur, normalisation and reduction appended
    fuse = opts.fused and (output_name not in SELF_SCORED or bool(bundle.score.get("map")))
    if opts.fused and not fuse:
        result.notes.append(f"the graph outputs {SELF_SCORED[output_name]} itself: no score head is appended")
    spec = ScoreSpec.from_bundle(bundle) if fuse else None
    # the score each sample gets when deployed (map score for image bundles with map scoring)
    plain_scorer = _scorer(bundle, output_name, None)
    deployed = {name: plain_scorer(x, {output_name: reference[name]}).scores for name, x in sets}
    if fuse:
        core = {name: _core_scores(spec, x, reference[name]) for name, x in sets if spec.map is None}
        fused = check_graph(append_score_head(base, spec, input_name, output_name), FUSED_FILE)
        session = onnx_session(fused)
        fused_scorer = _scorer(bundle, output_name, spec.outputs)
        for name, x in sets:
            out = run_onnx(session, x)
            if spec.map is not None:  # the whole map score is in the graph: compare it with the core's
                # on the FP32 graph's own output, so the row measures the head (graph vs torch is above)
                ref = plain_scorer(x, {output_name: fp32_outputs[name]})
                resolution = _map_resolution(spec.map, ref.maps)
                for what, want, got in (
                    ("fused map score vs C++ core", ref.scores, out["score"]),
                    ("fused final map vs C++ core", ref.maps, out["error_map"]),
                ):
                    result.parity.append(row(what, name, want, got, FP32_REL_TOL, scale=resolution))
                continue
            result.parity.append(
                row("fused score vs C++ core", name, core[name][0], out["score"], FP32_REL_TOL)
            )
            if spec.error_map:
                result.parity.append(
                    row("fused error_map vs C++ core", name, core[name][1], out["error_map"], FP32_REL_TOL)
                )
            if bundle.score.get("map"):
                got = fused_scorer(x, out).scores
                result.parity.append(
                    row("fused map score vs C++ core", name, deployed[name], got, FP32_REL_TOL)
                )
        _require_ok(
            result.parity, f"fused scores do not match the C++ core (tolerance {FP32_REL_TOL:g} relative)"
        )
        save_model(fused, bundle.path / FUSED_FILE)
        result.files["fused"] = FUSED_FILE

    previous = bundle.onnx.get("fp16_file")
    make_fp16 = opts.fp16 or bool(previous and (bundle.path / previous).is_file())
    if make_fp16 and not opts.fp16:
        result.notes.append(f"{FP16_FILE} existed: refreshed from the new graph so it stays consistent")
    if make_fp16:
        half = convert_to_fp16(base)
        if fuse:
            half = append_score_head(half, spec, input_name, output_name)
        half = check_graph(half, FP16_FILE)
        session = onnx_session(half, fp16=True)
        half_scorer = _scorer(bundle, output_name, spec.outputs if spec is not None else None)
        scores16 = {}
        for name, x in sets:
            out = run_onnx(session, x)
            if not fuse:
                result.parity.append(
                    row(f"{FP16_FILE} output vs FP32", name, fp32_outputs[name], out[output_name])
                )
            scores16[name] = half_scorer(x, out).scores
            result.parity.append(row(f"{FP16_FILE} scores vs FP32", name, deployed[name], scores16[name]))
        _fp16_costs(inputs, deployed, scores16, result)
        save_model(half, bundle.path / FP16_FILE)
        result.files["fp16"] = FP16_FILE

    bundle.meta["onnx"] = {
        **(bundle.meta.get("onnx") or {}),
        "file": FUSED_FILE if fuse else FP32_FILE,
        "fp32_file": FP32_FILE,
        "input": input_name,
        "output": output_name,
        "fused": spec.outputs if spec is not None else None,
        "fp16_file": FP16_FILE if make_fp16 else None,
        "opset": opset_of(base),
        "simplified": bool(result.simplified and result.simplified["kept"]),
        "parity": _parity_record(result),
    }


def _fp16_costs(
    inputs: list[Samples],
    scores32: dict[str, np.ndarray],
    scores16: dict[str, np.ndarray],
    result: ExportResult,
) -> None:
    """What FP16 costs on each set of real samples except the training ones (random inputs when there are
    none); the headline number is on --data when given, else on the held-out samples."""
    real = [s for s in inputs if s.name in ("held-out", "data")]
    for s in real or [s for s in inputs if s.name == "random"]:
        cost = {"samples": s.name, **fp16_cost(scores32[s.name], scores16[s.name], s.labels)}
        if s.labels is not None:
            cost["n_anomalous"] = int((s.labels == 1).sum())
        if cost["delta_auroc"] is None and not cost.get("n_anomalous"):
            cost["auroc_note"] = NO_LABELS
        result.fp16_costs[s.name] = cost
    result.fp16_cost = result.fp16_costs.get("data") or next(iter(result.fp16_costs.values()))


def _simplified(base: Any, sets: list[tuple[str, np.ndarray]], output_name: str, result: ExportResult) -> Any:
    """onnxslim's graph when it is valid and reproduces the exported one; else the exported graph."""
    from edgeanom.export.onnx_graph import check_graph
    from edgeanom.export.parity import compare
    from edgeanom.export.simplify import node_count, simplify

    slim = simplify(base)
    info: dict[str, Any] = {"tool": "onnxslim", "nodes_before": node_count(base), "kept": False}
    if slim is not None:
        info["nodes_after"] = node_count(slim)
        try:
            slim = check_graph(slim, f"{FP32_FILE} (simplified)")
        except EdgeanomError as exc:
            info["reason"] = str(exc)
            slim = None
    if slim is not None:
        before, after = onnx_session(base), onnx_session(slim)
        worst = max(
            compare(run_onnx(before, x)[output_name], run_onnx(after, x)[output_name])[1] for _, x in sets
        )
        info["max_rel_vs_unsimplified"] = worst
        if worst <= SIMPLIFY_REL_TOL and info["nodes_after"] <= info["nodes_before"]:
            info["kept"] = True
        else:
            info["reason"] = (
                f"outputs moved by {worst:.3g} relative" if worst > SIMPLIFY_REL_TOL else "no smaller"
            )
    result.simplified = info
    return slim if info["kept"] else base


def _map_resolution(head: Any, maps: Optional[np.ndarray]) -> Optional[float]:
    """The largest value the blurred map reaches times the largest per-pixel normalisation factor: a float32
    rounding of the blurred map (in the core or in the graph) moves the final map and its score by up to
    about 1e-7 of this, so parity is measured relative to it. None (max |ref|) without normalisation."""
    if maps is None or head.scale is None or head.mean is None:
        return None
    blurred = maps / head.scale + head.mean
    finite = np.isfinite(blurred)
    if not finite.any():
        return None
    return float(np.max(np.abs(blurred[finite])) * np.max(head.scale))


def _core_scores(spec: Any, x: np.ndarray, outputs: np.ndarray) -> tuple[np.ndarray, Optional[np.ndarray]]:
    """What the fused head must reproduce, from the C++ core: the per-sample error (squared distance to the
    centre for Deep SVDD) and, for image reconstruction models, the un-blurred error map."""
    from edgeanom import scoring

    out = np.ascontiguousarray(outputs, dtype=np.float32)
    if spec.center is not None:
        return scoring.reconstruction_error(out, np.ascontiguousarray(spec.center), metric="sse"), None
    x = np.ascontiguousarray(x, dtype=np.float32)
    scores = scoring.reconstruction_error(x, out, metric=spec.metric, weights=spec.weights)
    return scores, scoring.error_map(x, out, blur_sigma=0.0) if spec.error_map else None


def _scorer(bundle: Bundle, output_name: str, fused: Optional[dict[str, Any]]) -> Any:
    """The runtime's Scorer for a graph with (or without) fused outputs: the deployed score, exactly."""
    from edgeanom.scorer import Scorer

    onnx_meta = {**bundle.onnx, "output": output_name, "fused": fused}
    return Scorer(Bundle(bundle.path, {**bundle.meta, "onnx": onnx_meta}))


def _require_ok(rows: list[ParityRow], message: str) -> None:
    bad = [r for r in rows if r.ok is False]
    if bad:
        worst = max(bad, key=lambda r: r.max_rel)
        raise EdgeanomError(
            f"{message}: {worst.what} on {worst.inputs} samples has max relative error {worst.max_rel:.3g}"
        )


def _parity_record(result: ExportResult) -> dict[str, Any]:
    return {
        "checked": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "inputs": result.inputs,
        "checks": [r.to_json() for r in result.parity],
        "fp16": result.fp16_cost,
        "fp16_by_inputs": result.fp16_costs or None,
        "simplify": result.simplified,
    }


# --- scikit-learn baselines ---------------------------------------------------------------------------------
def _export_sklearn(
    bundle: Bundle, opts: ExportOptions, sets: list[tuple[str, np.ndarray]], result: ExportResult
) -> None:
    import onnx

    from edgeanom.export.onnx_graph import check_graph
    from edgeanom.models.baselines import export_baseline
    from edgeanom.models.checkpoint import load_sklearn

    path = bundle.onnx_path
    if not opts.trust_pickle:
        # a pickle executes code when loaded: a stranger's bundle must not run anything here
        if not path.is_file():
            raise EdgeanomError(
                f"bundle {bundle.path}: {path.name} is missing and rebuilding it means loading model.pkl, which "
                "runs code; pass --trust-pickle if you made this bundle"
            )
        check_graph(onnx.load(str(path)), path.name)
        session = onnx_session(str(path))
        for name, x in sets:
            got = np.asarray(run_onnx(session, x)["score"])
            if got.shape != (len(x),) or not np.all(np.isfinite(got)):
                raise EdgeanomError(
                    f"{path.name}: the graph gives no finite score per sample on the {name} samples"
                )
        result.notes.append(
            "model.pkl was not loaded (a pickle runs code when loaded), so the graph was checked on its own, not "
            "against scikit-learn; pass --trust-pickle for that, only for bundles you made"
        )
    else:
        estimator = load_sklearn(bundle)
        result.notes.append("--trust-pickle: loaded model.pkl, which can run code")
        if not path.is_file():
            export_baseline(estimator, bundle.input_shape, path)
            result.notes.append(f"{path.name} was missing: re-exported from the scikit-learn checkpoint")
        check_graph(onnx.load(str(path)), path.name)
        session = onnx_session(str(path))
        for name, x in sets:
            want = -estimator.decision_function(x.reshape(len(x), -1))
            got = run_onnx(session, x)["score"]
            result.parity.append(row(f"{path.name} vs scikit-learn", name, want, got, SKLEARN_REL_TOL))
        _require_ok(
            result.parity, f"ONNX scores do not match scikit-learn (tolerance {SKLEARN_REL_TOL:g} relative)"
        )
    result.files["onnx"] = path.name
    if opts.fp16 or not opts.fused:
        result.notes.append(
            "--fp16 / --no-fused-score do not apply to scikit-learn baselines (FP32 score graphs)"
        )
    bundle.meta["onnx"] = {**(bundle.meta.get("onnx") or {}), "parity": _parity_record(result)}


def _export_statistical(
    bundle: Bundle, opts: ExportOptions, sets: list[tuple[str, np.ndarray]], result: ExportResult
) -> None:
    """Statistical detectors: the graph is rebuilt from the bundle's statistics when missing, and checked
    against the float64 reference on the parity sets."""
    import onnx

    from edgeanom.export.onnx_graph import check_graph
    from edgeanom.fileio import atomic_write_bytes
    from edgeanom.models import get_model

    cls = get_model(bundle.model_type)
    params = bundle.meta["model"]["params"]
    path = bundle.onnx_path
    if not path.is_file():
        atomic_write_bytes(path, cls.graph(tuple(bundle.input_shape), params).SerializeToString())
        result.notes.append(f"{path.name} was missing: rebuilt from the bundle's statistics")
    check_graph(onnx.load(str(path)), path.name)
    session = onnx_session(str(path))
    for name, x in sets:
        got = run_onnx(session, x)["score"]
        result.parity.append(
            row(f"{path.name} vs float64 reference", name, cls.numpy_score(x, params), got, FP32_REL_TOL)
        )
    _require_ok(result.parity, "ONNX scores do not match the detector's float64 reference")
    result.files["onnx"] = path.name
    if opts.fp16 or not opts.fused:
        result.notes.append(
            "--fp16 / --no-fused-score do not apply to statistical detectors (FP32 score graphs)"
        )
    bundle.meta["onnx"] = {**(bundle.meta.get("onnx") or {}), "parity": _parity_record(result)}


# --- TensorRT ---------------------------------------------------------------------------------------------
def _calibration_cache(bundle: Bundle, precision: str) -> str:
    """The calibration cache name the Python builder uses for the graph an INT8 engine is built from."""
    from edgeanom.engines.build import calibration_cache_name
    from edgeanom.engines.cache import sha256_file

    graph = bundle.path / str(bundle.onnx.get("file", FP32_FILE))
    return calibration_cache_name(sha256_file(graph)) if graph.is_file() else "calibration.cache"


def _engine_step(bundle: Bundle, opts: ExportOptions, calib: Optional[Samples], result: ExportResult) -> None:
    from edgeanom.engines.cache import ENGINE_DIR

    if bundle.model_family == "sklearn":
        if opts.engine:
            result.engine_note = (
                "TensorRT cannot run scikit-learn graphs (ai.onnx.ml operators); they run in ONNX Runtime"
            )
        return
    precision = opts.precision
    profile = Profile.for_batch(bundle.input_shape, opts.max_batch, opts.opt_batch)
    result.trtexec = trtexec_commands(
        onnx_fp32=bundle.onnx.get("file", FP32_FILE),
        onnx_fp16=bundle.onnx.get("fp16_file"),
        plan=f"{ENGINE_DIR}/model.{precision}.b{opts.max_batch}.plan",
        input_name=str(bundle.onnx.get("input", "input")),
        profile=profile,
        precision=precision,
        workspace_mb=opts.workspace_mb,
        timing_cache=f"{ENGINE_DIR}/timing.cache",
        calib_cache=f"{ENGINE_DIR}/{_calibration_cache(bundle, precision)}" if precision == "int8" else None,
        fused=bool(bundle.onnx.get("fused")),
    )
    if not opts.engine:
        result.engine_note = "no engine built here (pass --engine to build one with this machine's TensorRT)"
        return
    from edgeanom.engines.build import ensure_engine, tensorrt_status

    usable, why = tensorrt_status()
    if not usable:
        result.engine_note = why
        return
    path, built = ensure_engine(
        bundle,
        precision=precision,
        max_batch=opts.max_batch,
        opt_batch=opts.opt_batch,
        workspace_mb=opts.workspace_mb,
        calib_data=None if calib is None else calib.normal,
        exact_profile=True,
    )
    result.engine = {"file": str(path.relative_to(bundle.path)), "built": built, "precision": precision}


def _served_graph(bundle: Bundle, opts: ExportOptions) -> tuple[Path, bool]:
    """The graph a server gets (Triton, DeepStream): the FP16 one with --fp16, else the deployed one; and
    whether it is the FP16 one."""
    half = bool(opts.fp16 and bundle.onnx.get("fp16_file"))
    name = bundle.onnx.get("fp16_file") if half else bundle.onnx.get("file")
    return bundle.path / str(name or FP32_FILE), half


# --- DeepStream -------------------------------------------------------------------------------------------
def _deepstream_step(bundle: Bundle, opts: ExportOptions, result: ExportResult) -> None:
    from edgeanom.export.deepstream import write_deepstream

    assert opts.deepstream_dir is not None
    onnx_path, half = _served_graph(bundle, opts)
    precision = "int8" if opts.int8 else ("fp16" if half else "fp32")
    engine = bundle.path / result.engine["file"] if result.engine is not None else None
    result.deepstream = write_deepstream(
        Path(opts.deepstream_dir),
        bundle,
        onnx_path,
        batch_size=opts.max_batch,
        precision=precision,
        engine=engine,
    )


# --- Triton -----------------------------------------------------------------------------------------------
def _triton_step(bundle: Bundle, opts: ExportOptions, result: ExportResult) -> None:
    from edgeanom.export.triton import safe_model_name, write_model_repository, write_python_backend_model

    assert opts.triton_dir is not None
    name = safe_model_name(opts.triton_name or bundle.path.resolve().name)
    onnx_path, _half = _served_graph(bundle, opts)
    # scikit-learn graphs use ai.onnx.ml operators, which run on CPU only; the rest: as asked, AUTO by default
    kind = "KIND_CPU" if bundle.model_family == "sklearn" else f"KIND_{opts.triton_kind.upper()}"
    parameters = {
        "edgeanom_threshold": repr(float(bundle.threshold.value)),
        "edgeanom_threshold_method": bundle.threshold.method,
        "edgeanom_model": bundle.model_type,
        "edgeanom_input": json.dumps(bundle.meta["input"]),
        "edgeanom_score": json.dumps({k: v for k, v in bundle.score.items() if k != "adaptive"}),
        "edgeanom_version": str(bundle.meta.get("edgeanom_version", "")),
    }
    result.triton.append(
        write_model_repository(
            opts.triton_dir, name, onnx_path, max_batch_size=opts.max_batch, kind=kind, parameters=parameters
        )
    )
    # the same graph for Triton builds with only the Python backend (ONNX Runtime inside model.py)
    result.triton.append(
        write_python_backend_model(
            opts.triton_dir, f"{name}-python", onnx_path, max_batch_size=opts.max_batch, parameters=parameters
        )
    )
    if result.engine is not None:
        # FP32 and FP16 graphs share their inputs and outputs (float32 at the edges), so either describes the plan.
        plan = bundle.path / result.engine["file"]
        result.triton.append(
            write_model_repository(
                opts.triton_dir,
                f"{name}-trt",
                plan,
                max_batch_size=opts.max_batch,
                io_from=bundle.onnx_path,
                parameters=parameters,
            )
        )
        result.notes.append(
            f"Triton model '{name}-trt' holds an engine for this GPU only; rebuild it on the server"
        )
