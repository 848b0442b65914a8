"""`edgeanom bench`: whole-pipeline latency, throughput, memory and power per backend x precision x batch."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from edgeanom.cli._common import (
    BATCH_HELP,
    DEFAULT_BUNDLE,
    BundleOption,
    LegacyBundleArgument,
    bundle_from,
    deprecated,
    fail,
    handle_errors,
)
from edgeanom.errors import EdgeanomError

DEFAULT_BATCHES = ["1", "2", "4", "8", "16"]


def _sweep(values: Optional[list[str]], option: str, default: list[str]) -> list[str]:
    """The values of a repeatable sweep option (`--batch 1 --batch 8`). A comma list, the old spelling,
    still works for one release and says so in one line."""
    values = list(values) if values else list(default)
    if any("," in v for v in values):
        split = [p.strip() for v in values for p in v.split(",")]
        deprecated(f"{option} {','.join(values)}", " ".join(f"{option} {p}" for p in split if p))
        values = split
    return [v for v in values if v]


def parse_int_list(
    values: Optional[list[str]], option: str, default: Optional[list[str]] = None
) -> list[int]:
    """['1', '4'] -> [1, 4]; each value is one positive integer, as the same option means in `run`."""
    out = []
    for part in _sweep(values, option, default or []):
        if not part.isdigit() or int(part) == 0:
            raise EdgeanomError(f"{option}: expected a positive integer, got '{part}'")
        out.append(int(part))
    if not out:
        raise EdgeanomError(f"{option}: expected at least one value")
    return list(dict.fromkeys(out))


def parse_name_list(
    values: Optional[list[str]], option: str, allowed: tuple[str, ...], default: str
) -> list[str]:
    """Names, one per occurrence of the option, each one of `allowed`."""
    names = [v.lower() for v in _sweep(values, option, [default])]
    bad = [v for v in names if v not in allowed]
    if bad or not names:
        raise EdgeanomError(f"{option}: '{bad[0] if bad else ''}' is not one of {', '.join(allowed)}")
    return list(dict.fromkeys(names))


def _fmt(value: Optional[float], digits: int = 3) -> str:
    if value is None:
        return "-"
    if value >= 100:
        return f"{value:.0f}"
    return f"{value:.{digits}g}"


def _stat(r: dict[str, Any], field: str, key: str) -> Optional[float]:
    s = r.get(field)
    return None if not s else s.get(key)


def results_table(doc: dict[str, Any]) -> Any:
    """Headline numbers: rows = backend x precision x batch (x threads)."""
    from rich.table import Table

    with_power = any(r.get("power") for r in doc["results"])
    table = Table(title="edgeanom bench: ms per batch unless noted; latency = H2D + compute + D2H")
    cols = [
        "backend",
        "prec",
        "batch",
        "thr",
        "frames/s",
        "lat p50",
        "lat p99",
        "e2e p50",
        "e2e p99",
        "e2e/frame",
    ]
    if with_power:
        cols += ["W", "mJ/frame"]
    for name in cols:
        table.add_column(name, justify="left" if name in ("backend", "prec") else "right")
    for r in doc["results"]:
        c = r["config"]
        row = [
            c["backend"],
            r.get("precision_used") or c["precision"],
            str(c["batch"]),
            str(c.get("threads") or "-"),
            _fmt(r.get("throughput_fps"), 4) + (" !" if r.get("warnings") else ""),
            _fmt(_stat(r, "latency_ms", "p50")),
            _fmt(_stat(r, "latency_ms", "p99")),
            _fmt(_stat(r, "end_to_end_ms", "p50")),
            _fmt(_stat(r, "end_to_end_ms", "p99")),
            _fmt(((r.get("per_frame_ms") or {}).get("end_to_end") or {}).get("p50")),
        ]
        if with_power:
            power = r.get("power") or {}
            row += [_fmt(power.get("input_w")), _fmt(power.get("energy_mj_per_frame"))]
        table.add_row(*row)
    return table


STAGE_COLUMNS = ("decode", "preprocess", "h2d", "compute", "d2h", "score", "total")


def stages_table(doc: dict[str, Any]) -> Any:
    """Mean time of each pipeline stage (ms per batch); '-' where a stage does not apply."""
    from rich.table import Table

    table = Table(title="stages: mean ms per batch ('-' = not applicable)")
    for name in ("backend", "prec", "batch", "thr", *STAGE_COLUMNS):
        table.add_column(name, justify="left" if name in ("backend", "prec") else "right")
    for r in doc["results"]:
        c = r["config"]
        st = r["stages_ms"]
        table.add_row(
            c["backend"],
            r.get("precision_used") or c["precision"],
            str(c["batch"]),
            str(c.get("threads") or "-"),
            *(_fmt((st.get(s) or {}).get("mean")) for s in STAGE_COLUMNS),
        )
    return table


def _console(**kwargs: Any) -> Any:
    """A rich console; when output goes to a file or pipe, wide enough that tables are not squeezed."""
    from rich.console import Console

    console = Console(**kwargs)
    if not console.is_terminal:
        console = Console(width=max(console.width, 132), **kwargs)
    return console


def compare_table(cmp: dict[str, Any], name_a: str, name_b: str) -> Any:
    from rich.table import Table

    table = Table(title=f"B / A   (A = {name_a}, B = {name_b})")
    for col in (
        "A",
        "B",
        "frames/s A",
        "B",
        "B/A",
        "lat p50 A",
        "B",
        "B/A",
        "e2e p99 A",
        "B",
        "B/A",
        "differs",
    ):
        table.add_column(col, justify="left" if col in ("A", "differs") else "right")
    for row in cmp["pairs"]:
        m = row["metrics"]
        cells = [row["a"], row["b"]]
        for metric in ("throughput_fps", "latency_p50_ms", "end_to_end_p99_ms"):
            v = m[metric]
            ratio = v["ratio"]
            cells += [_fmt(v["a"], 4), _fmt(v["b"], 4), "-" if ratio is None else f"{ratio:.2f}x"]
        cells.append(", ".join(row["differs"]) or "")
        table.add_row(*cells)
    return table


def _run_compare(paths: tuple[Path, Path], json_out: Optional[Path]) -> None:
    import json

    from rich.markup import escape

    from edgeanom.benchmarking.compare import compare_reports
    from edgeanom.benchmarking.report import load_report

    a, b = (load_report(p) for p in paths)
    cmp = compare_reports(a, b)
    console = _console()
    console.print(compare_table(cmp, str(paths[0]), str(paths[1])))
    for d in cmp["environment_differences"]:
        console.print(
            f"[yellow]environment differs[/]: {escape(d['field'])}: A={escape(repr(d['a']))}  B={escape(repr(d['b']))}"
        )
    for key in cmp["only_in_a"]:
        console.print(f"only in A: {key}")
    for key in cmp["only_in_b"]:
        console.print(f"only in B: {key}")
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(cmp, indent=1) + "\n")
        console.print(f"wrote {json_out}")


def register(app: typer.Typer) -> None:
    @app.command("bench")
    @handle_errors
    def bench(
        legacy_bundle: LegacyBundleArgument = None,
        model: BundleOption = DEFAULT_BUNDLE,
        backend: Annotated[
            Optional[list[str]],
            typer.Option(
                "--backend",
                help="all | tensorrt | onnxruntime | torch; repeat to compare several. 'all' (default) "
                "skips missing ones.",
            ),
        ] = None,
        precision: Annotated[
            Optional[list[str]],
            typer.Option("--precision", help="fp32 (default) | fp16 | int8; repeat to sweep."),
        ] = None,
        batch: Annotated[
            Optional[list[str]],
            typer.Option("--batch", help=f"{BATCH_HELP} Repeat to sweep (default 1, 2, 4, 8, 16)."),
        ] = None,
        threads: Annotated[
            Optional[list[str]],
            typer.Option(
                "--threads",
                help="CPU inference threads for CPU runtimes, as in `run`; repeat to sweep (default: the "
                "runtime's).",
            ),
        ] = None,
        warmup_s: Annotated[
            float, typer.Option("--warmup-s", min=0.0, help="Warm-up seconds (not timed).")
        ] = 2.0,
        duration_s: Annotated[
            float, typer.Option("--duration-s", min=0.0, help="Timed seconds per configuration.")
        ] = 10.0,
        source: Annotated[
            str, typer.Option("--source", help="synthetic | camera | camera:N | path to a video file.")
        ] = "synthetic",
        report_out: Annotated[
            Optional[Path],
            typer.Option("--report", help="Write the JSON report (or comparison) to this file."),
        ] = None,
        legacy_json: Annotated[
            Optional[Path], typer.Option("--json", hidden=True, help="Deprecated: use --report FILE.")
        ] = None,
        plot_out: Annotated[Optional[Path], typer.Option("--plot", help="Write a PNG figure here.")] = None,
        compare: Annotated[
            Optional[tuple[Path, Path]],
            typer.Option("--compare", help="Compare two reports: --compare A.json B.json (ratios B/A)."),
        ] = None,
        tegrastats_interval_ms: Annotated[
            int, typer.Option("--tegrastats-interval-ms", min=10, help="Power sampling interval on a Jetson.")
        ] = 100,
    ) -> None:
        """Measure latency, throughput, memory and power of the whole pipeline, the way trtexec does."""
        json_out = report_out
        if legacy_json is not None:
            deprecated("--json FILE", f"--report {legacy_json}")
            json_out = json_out or legacy_json
        bundle_dir = bundle_from(model, legacy_bundle)
        if compare:
            _run_compare(compare, json_out)
            return
        from rich.console import Console
        from rich.markup import escape

        from edgeanom.benchmarking import report as report_mod
        from edgeanom.benchmarking.runner import BACKENDS, PRECISIONS, BenchPlan, run_bench

        plan = BenchPlan(
            bundle_dir=bundle_dir,
            backends=parse_name_list(backend, "--backend", ("all", *BACKENDS), "all"),
            precisions=parse_name_list(precision, "--precision", PRECISIONS, "fp32"),
            batches=parse_int_list(batch, "--batch", DEFAULT_BATCHES),
            threads=parse_int_list(threads, "--threads") if threads else [None],
            warmup_s=warmup_s,
            duration_s=duration_s,
            source=source,
            tegrastats_interval_ms=tegrastats_interval_ms,
        )
        out = Console(stderr=True)
        previous = signal.getsignal(signal.SIGTERM)
        try:
            signal.signal(signal.SIGTERM, _sigterm_to_interrupt)
        except ValueError:  # not the main thread (e.g. embedded use): keep the default handler
            previous = None
        try:
            doc = run_bench(
                plan,
                on_start=lambda c: out.print(f"[dim]running {escape(c.key)} ...[/]"),
                on_skip=lambda s: out.print(f"[yellow]skipped[/] {escape(s.reason)}"),
            )
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        console = _console()
        if doc["results"]:
            console.print(results_table(doc))
            console.print(stages_table(doc))
        for r in doc["results"]:
            for w in r["warnings"]:
                out.print(f"[yellow]warning[/] {escape(r['key'])}: {escape(w)}")
        for w in doc["warnings"]:
            out.print(f"[yellow]warning[/] {escape(w)}")
        choice = doc.get("cpu_backend")
        if choice:
            times = ", ".join(f"{k} {v:.3g} ms" for k, v in choice["per_frame_ms"].items())
            out.print(
                f"on this machine `run --backend auto` will use {choice['choice']} on the CPU ({times} per frame)"
            )
        if json_out is not None:
            report_mod.write_report(doc, json_out)
            out.print(f"wrote {json_out}")
        if plot_out is not None and doc["results"]:
            from edgeanom.benchmarking.plot import plot_report

            plot_report(doc, plot_out)
            out.print(f"wrote {plot_out}")
        if doc.get("interrupted"):
            raise typer.Exit(130)
        if not doc["results"]:
            reasons = "; ".join(s["reason"] for s in doc["skipped"]) or "no configuration"
            raise fail(f"nothing was benchmarked: {reasons}")


def _sigterm_to_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt
