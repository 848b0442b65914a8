"""`edgeanom eval`: detection quality of a bundle on labelled data, scored through the deployed path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgeanom.cli._common import BATCH_HELP, DEFAULT_BUNDLE, BundleOption, deprecated, handle_errors


def register(app: typer.Typer) -> None:
    app.command("eval", help="Evaluate a model bundle on labelled data: AUROC, AUPR, F1, FAR/MAR, plots.")(
        evaluate
    )


@handle_errors
def evaluate(
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            "-d",
            help="Labelled test data: MVTec-style folder (good/ + defect folders), frames/video with --labels, or a table/sensor CSV with a label column.",
        ),
    ],
    model: BundleOption = DEFAULT_BUNDLE,
    masks: Annotated[
        Optional[Path],
        typer.Option(
            "--masks",
            help="Ground-truth masks <class>/<name>_mask.png for pixel AUROC and PRO (default: MVTec's "
            "ground_truth/ beside the test folder, when there is one).",
        ),
    ] = None,
    labels: Annotated[
        Optional[Path],
        typer.Option(
            "--labels", help="Labels file: Ped2-style JSON ranges, name,label CSV, or one 0/1 per sample."
        ),
    ] = None,
    label_column: Annotated[
        Optional[str],
        typer.Option(
            "--label-column",
            help="Label column of a table/sensor CSV (default 'label' or 'anomaly' when present).",
        ),
    ] = None,
    report: Annotated[
        Optional[Path],
        typer.Option("--report", help="Write report.json, scores.csv and PNG plots to this directory."),
    ] = None,
    drop_na: Annotated[
        bool, typer.Option("--drop-na", help="Drop rows with missing values instead of failing.")
    ] = False,
    batch: Annotated[Optional[int], typer.Option("--batch", min=1, help=BATCH_HELP)] = None,
    legacy_batch_size: Annotated[
        Optional[int], typer.Option("--batch-size", hidden=True, help="Deprecated: use --batch.")
    ] = None,
    threads: Annotated[
        Optional[int], typer.Option("--threads", help="ONNX Runtime CPU threads (default min(2, cores)).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON instead of a table.")
    ] = False,
    adaptive: Annotated[
        Optional[bool],
        typer.Option(
            "--adaptive/--no-adaptive",
            help="Sensor bundles: judge scores with the adaptive stage as `run` does (default: the bundle's).",
        ),
    ] = None,
) -> None:
    """Score labelled data with ONNX Runtime and the C++ scorer, exactly as `run` would on the device."""
    from edgeanom.evaluate.api import evaluate_bundle

    result = evaluate_bundle(
        model,
        data,
        labels=labels,
        report_dir=report,
        label_column=label_column,
        drop_na=drop_na,
        batch_size=_batch(batch, legacy_batch_size),
        threads=threads,
        adaptive=adaptive,
        masks=masks,
    )
    if as_json:
        typer.echo(json.dumps(result, indent=2))
    else:
        print_report(result, report)


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def print_report(result: dict[str, Any], report_dir: Optional[Path]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"eval of {result['model']['type']} ({result['model']['bundle']})")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key in (
        "auroc",
        "aupr",
        "f1",
        "precision",
        "recall",
        "far",
        "mar",
        "threshold",
        "best_f1",
        "best_threshold",
        "n_normal",
        "n_anomalous",
    ):
        table.add_row(key, _fmt(result.get(key)))
    c = result["confusion"]
    table.add_row("confusion", f"tp {c['tp']}  fp {c['fp']}  fn {c['fn']}  tn {c['tn']}")
    for far, recall in (result.get("recall_at_far") or {}).items():
        table.add_row(f"recall at FAR {float(far):.0%}", _fmt(recall))
    loc = result.get("localisation")
    if loc:
        table.add_row("pixel AUROC", _fmt(loc["pixel_auroc"]))
        table.add_row("PRO (FPR <= 0.3)", _fmt(loc["pro_0.3"]))
    cal = result.get("calibration")
    if cal:
        lo, hi = cal["far_interval_90"]
        table.add_row(
            "calibrated FAR",
            f"{cal['far_on_these_normals']:.2%} here; expected {cal['expected_far']:.2%} "
            f"(90%: {lo:.2%}..{hi:.2%}) — {'held' if cal['held'] else 'NOT HELD'}",
        )
    console.print(table)
    for line in (result.get("data") or {}).get("truncated_videos") or []:
        console.print(f"[yellow]warning[/]: {line}; frames past the cut were not scored")
    if (result.get("data") or {}).get("n_warmup"):
        console.print(
            f"{result['data']['n_warmup']} frames not scored: each sequence's first frames fill the model's "
            "frame packing, and `run` emits no sample for them either"
        )
    if result.get("auroc") is None:
        console.print(
            f"[yellow]warning[/]: AUROC n/a: the {result['n_normal'] + result['n_anomalous']} scored samples hold "
            f"{result['n_anomalous']} anomalous and {result['n_normal']} normal ones (both are needed)"
        )
    if result.get("per_class"):
        pc = Table(title="per class")
        for col in ("class", "n", "flagged", "mean score", "AUROC vs normal"):
            pc.add_column(col, justify="left" if col == "class" else "right")
        for name, e in result["per_class"].items():
            pc.add_row(
                name,
                str(e["n"]),
                f"{e['flagged']:.3f}",
                _fmt(e["scores"]["mean"]),
                _fmt(e.get("auroc_vs_normal")),
            )
        console.print(pc)
    if report_dir is not None:
        console.print(f"report written to {report_dir}/report.json")


def _batch(batch: Optional[int], legacy: Optional[int]) -> Optional[int]:
    if legacy is not None:
        deprecated("--batch-size", f"--batch {legacy}")
    return batch if batch is not None else legacy
