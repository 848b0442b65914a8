"""`edgeanom export`: ONNX (FP32 / FP16, fused scoring), TensorRT engines and Triton repositories, with parity."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgeanom.cli._common import (
    DEFAULT_BUNDLE,
    BundleOption,
    LegacyBundleArgument,
    bundle_from,
    fail,
    handle_errors,
)
from edgeanom.engines.build import DEFAULT_MAX_BATCH, DEFAULT_WORKSPACE_MB


def register(app: typer.Typer) -> None:
    app.command(
        "export",
        help="Re-export a bundle's model (FP32/FP16 ONNX with fused scores), build a TensorRT engine, write Triton repositories.",
    )(export)


@handle_errors
def export(
    legacy_bundle: LegacyBundleArgument = None,
    model: BundleOption = DEFAULT_BUNDLE,
    fp16: Annotated[
        bool,
        typer.Option(
            "--fp16", help="Also write model.fp16.onnx (FP16 inside, FP32 in/out) and build FP16 engines."
        ),
    ] = False,
    fused_score: Annotated[
        bool,
        typer.Option(
            "--fused-score/--no-fused-score",
            help="Append the anomaly score (and image error map) to the graph, so engines return scores.",
        ),
    ] = True,
    engine: Annotated[
        bool, typer.Option("--engine", help="Build a TensorRT engine into the bundle's engine cache.")
    ] = False,
    int8: Annotated[
        bool, typer.Option("--int8", help="INT8 engine (TensorRT 10, calibrated on --calib-data).")
    ] = False,
    calib_data: Annotated[
        Optional[Path],
        typer.Option(
            "--calib-data",
            help="Calibration samples for --int8: image folder, CSV/Parquet, or .npy/.npz of preprocessed inputs.",
        ),
    ] = None,
    data: Annotated[
        Optional[Path],
        typer.Option(
            "--data",
            "-d",
            help="Real samples (normal, labelled anomalies) for the parity checks and the FP16 cost, "
            "in addition to the bundle's own held-out samples.",
        ),
    ] = None,
    labels: Annotated[
        Optional[Path],
        typer.Option("--labels", help="Labels for --data (when the data does not carry them)."),
    ] = None,
    max_batch: Annotated[
        int, typer.Option("--max-batch", help="Largest batch the engine accepts (profile max; min is 1).")
    ] = DEFAULT_MAX_BATCH,
    opt_batch: Annotated[
        Optional[int],
        typer.Option("--opt-batch", help="Batch size TensorRT tunes for (default: half of max)."),
    ] = None,
    workspace: Annotated[
        int, typer.Option("--workspace", help="TensorRT builder workspace limit in MB.")
    ] = DEFAULT_WORKSPACE_MB,
    triton: Annotated[
        Optional[Path], typer.Option("--triton", help="Write a Triton model repository into this directory.")
    ] = None,
    triton_kind: Annotated[
        str,
        typer.Option(
            "--triton-kind",
            help="Where Triton runs the ONNX model: auto (its choice: GPU if it has one, else CPU), cpu or gpu.",
        ),
    ] = "auto",
    triton_name: Annotated[
        Optional[str],
        typer.Option("--triton-name", help="Model name in the Triton repository (default: bundle name)."),
    ] = None,
    deepstream: Annotated[
        Optional[Path],
        typer.Option(
            "--deepstream",
            help="Write a DeepStream nvinfer config, the model and a probe that reads its score into this "
            "directory (image bundles).",
        ),
    ] = None,
    simplify: Annotated[
        bool,
        typer.Option(
            "--simplify/--no-simplify", help="Simplify the graph with onnxslim (kept only when parity holds)."
        ),
    ] = True,
    trust_pickle: Annotated[
        bool,
        typer.Option(
            "--trust-pickle",
            help="scikit-learn baselines: load the bundle's model.pkl (a pickle runs code: only for bundles you "
            "made) to check the ONNX graph against scikit-learn or rebuild it.",
        ),
    ] = False,
) -> None:
    """Write the ONNX artifacts, check them against PyTorch and the C++ core, and build or describe engines."""
    from edgeanom.export.pipeline import ExportOptions, export_bundle

    bundle_dir = bundle_from(model, legacy_bundle)
    result = export_bundle(
        bundle_dir,
        ExportOptions(
            fp16=fp16,
            fused=fused_score,
            simplify=simplify,
            trust_pickle=trust_pickle,
            engine=engine,
            int8=int8,
            calib_data=calib_data,
            data=data,
            labels=labels,
            max_batch=max_batch,
            opt_batch=opt_batch,
            workspace_mb=workspace,
            triton_dir=triton,
            triton_name=triton_name,
            triton_kind=triton_kind,
            deepstream_dir=deepstream,
        ),
    )
    print_result(result, bundle_dir, engine)
    if engine and result.engine is None:
        raise fail(f"no TensorRT engine built: {result.engine_note} (the ONNX files above were written)")


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def print_result(result: Any, bundle_dir: Path, engine_asked: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    # Wide when piped (logs, CI): parity rows and trtexec lines stay on one line each.
    console = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    table = Table(title=f"parity ({bundle_dir})", title_justify="left")
    for col in ("check", "inputs", "n", "max abs err", "max rel err", "tolerance", "ok"):
        table.add_column(col, justify="right" if col not in ("check", "inputs") else "left")
    for r in result.parity:
        ok = "" if r.ok is None else ("yes" if r.ok else "NO")
        table.add_row(r.what, r.inputs, str(r.n), _num(r.max_abs), _num(r.max_rel), _num(r.tol), ok)
    console.print(table)
    for name, what in result.inputs.items():
        console.print(f"  inputs {name}: {what}", markup=False)
    if result.simplified:
        s = result.simplified
        kept = "kept" if s["kept"] else f"not kept ({s.get('reason', 'failed')})"
        console.print(f"onnxslim: {s['nodes_before']} -> {s.get('nodes_after', '?')} nodes, {kept}")
    if result.fp16_costs:
        print_fp16_costs(console, list(result.fp16_costs.values()))
    for role, name in result.files.items():
        console.print(f"wrote {role}: {Path(bundle_dir) / name}", markup=False)
    for path in result.triton:
        console.print(f"wrote Triton config: {path}", markup=False)
    for path in result.deepstream[:2]:
        console.print(
            f"wrote DeepStream {'config' if path.suffix == '.txt' else 'probe'}: {path}", markup=False
        )
    if result.engine:
        verb = "built" if result.engine["built"] else "reused (cached)"
        console.print(
            f"TensorRT {result.engine['precision']} engine {verb}: {Path(bundle_dir) / result.engine['file']}"
        )
    if result.engine_note and not engine_asked:
        console.print(result.engine_note, markup=False)
    if result.trtexec and result.engine is None:
        console.print(
            f"To build the engine on the target device, from inside the bundle directory ({bundle_dir}):",
            markup=False,
        )
        for major, cmd in sorted(result.trtexec.items()):
            console.print(
                f"  TensorRT {major}: {cmd.shell() if cmd.argv else cmd.note}", soft_wrap=True, markup=False
            )
            if cmd.argv and cmd.note:
                console.print(f"    ({cmd.note})", markup=False)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)


def print_fp16_costs(console: Any, costs: list[dict[str, Any]]) -> None:
    """One row per input set: score relative error, Spearman, AUROC FP32 / FP16 and its change."""
    from rich.table import Table

    table = Table(title="what FP16 costs (deployed scores, FP16 vs FP32)", title_justify="left")
    for col in (
        "inputs",
        "n",
        "anomalous",
        "score rel err (median / p99 / max)",
        "Spearman",
        "AUROC FP32",
        "AUROC FP16",
        "delta AUROC",
    ):
        table.add_column(col, justify="left" if col == "inputs" else "right")
    for c in costs:
        rel = " / ".join(
            _num(c[k]) for k in ("score_rel_err_median", "score_rel_err_p99", "score_rel_err_max")
        )
        delta = "n/a" if c["delta_auroc"] is None else f"{c['delta_auroc']:+.4f}"
        table.add_row(
            str(c["samples"]),
            str(c["n"]),
            _num(c.get("n_anomalous")),
            rel,
            _num(c["spearman"], 6),
            _num(c["auroc_fp32"], 4),
            _num(c["auroc_fp16"], 4),
            delta,
        )
    console.print(table)
    for c in costs:
        if c.get("auroc_note"):
            console.print(f"FP16 cost on {c['samples']}: {c['auroc_note']}", markup=False)
