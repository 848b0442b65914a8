"""`edgeanom info`: versions, accelerators and Jetson state of this machine, and which backends, inputs and
outputs `run` can use here (`--json` for scripts)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from edgeanom.cli._common import handle_errors


def _yes(value: Any) -> str:
    return {True: "yes", False: "no", None: "unknown"}.get(value, str(value))


def info_lines(env: dict[str, Any]) -> list[tuple[str, str]]:
    """The human-readable view of environment.collect(): (label, value) pairs."""
    pk = env.get("packages") or {}
    cpu = env.get("cpu") or {}
    ort = pk.get("onnxruntime") or {}
    cv = pk.get("opencv") or {}
    torch = pk.get("torch")
    trt = pk.get("tensorrt")
    lines = [
        ("edgeanom", env.get("edgeanom", "?")),
        ("python", f"{env.get('python')} ({env.get('platform')})"),
        ("numpy", pk.get("numpy") or "not installed"),
        (
            "onnxruntime",
            f"{ort['version']} (providers: {', '.join(ort.get('providers') or [])})"
            if ort
            else "not installed",
        ),
        ("opencv", f"{cv['version']} (GStreamer: {_yes(cv.get('gstreamer'))})" if cv else "not installed"),
        (
            "torch",
            f"{torch['version']} (CUDA build: {torch.get('cuda_build') or 'none'}, "
            f"CUDA available: {_yes(torch.get('cuda_available'))})"
            if torch
            else "not installed",
        ),
        ("tensorrt", (trt or {}).get("version") or "not installed"),
    ]
    cuda = env.get("cuda")
    if cuda:
        for d in cuda["devices"]:
            lines.append(
                (
                    f"cuda:{d['index']}",
                    f"{d['name']} ({d.get('memory_total_mb')} MB, sm {d.get('compute_capability')}), "
                    f"driver {cuda.get('driver') or '?'}, CUDA {cuda.get('cuda_runtime') or '?'}",
                )
            )
    else:
        lines.append(("cuda", "no CUDA device"))
    jetson = env.get("jetson")
    if jetson:
        nvp = jetson.get("nvpmodel") or {}
        clocks = jetson.get("jetson_clocks") or {}
        lines += [
            ("jetson", jetson.get("module") or "unknown module"),
            ("l4t / jetpack", f"{jetson.get('l4t') or '?'} / {jetson.get('jetpack') or '?'}"),
            ("nvpmodel", f"{nvp.get('name', '?')} (id {nvp.get('id', '?')})" if nvp else "unknown"),
            ("jetson_clocks", _yes(clocks.get("on")) if clocks else "unknown (run as root)"),
        ]
    lines.append(
        (
            "cpu",
            f"{cpu.get('model') or '?'} ({cpu.get('arch')}, {cpu.get('cores_logical')} logical cores, "
            f"{cpu.get('cores_usable')} usable)",
        )
    )
    mem = (env.get("memory") or {}).get("total_mb")
    if mem:
        lines.append(("memory", f"{mem} MB"))
    temps = env.get("temperatures_c") or {}
    if temps:
        lines.append(("temperatures", ", ".join(f"{k} {v:.1f}C" for k, v in temps.items())))
    scoring = env.get("scoring")
    if scoring:
        lines.append(("scoring core", _scoring_summary(scoring)))
    else:
        lines.append(("scoring core", "not built (pip install -e . builds edgeanom._scoring)"))
    return lines


def extension_lines(env: dict[str, Any]) -> list[tuple[str, str]]:
    """What `run` can use here, from the backend, source and sink tables: available names, then the rest
    with the reason each is missing."""
    lines = []
    for label, key in (("backends", "backends"), ("inputs", "sources"), ("outputs", "sinks")):
        entries = env.get(key) or []
        ready = [e["name"] for e in entries if not e.get("unavailable")]
        missing = [f"{e['name']} ({e['unavailable']})" for e in entries if e.get("unavailable")]
        text = ", ".join(ready) or "none"
        if missing:
            text += "; unavailable: " + "; ".join(missing)
        lines.append((label, text))
    return lines


def collect_info() -> dict[str, Any]:
    """environment.collect() plus the backend, source and sink tables' view of this machine."""
    from edgeanom import environment
    from edgeanom.backends.registry import describe_backends
    from edgeanom.runtime.sinks.registry import describe_sinks
    from edgeanom.runtime.sources.registry import describe_sources

    env = environment.collect(import_torch=True)
    env["backends"] = describe_backends()
    env["sources"] = describe_sources()
    env["sinks"] = describe_sinks()
    return env


def _scoring_summary(info: dict) -> str:
    """One readable line of the core's build info (`--json` keeps every field)."""
    simd = info.get("simd") or {}
    threads = info.get("num_threads", info.get("threads"))
    parts = [
        f"{info.get('compiler', '')} {info.get('compiler_version', '')}".strip(),
        str(info.get("cxx_standard", "")),
        str(info.get("build_type", "")),
        f"flags {info['flags']}" if info.get("flags") else "",
        f"SIMD {simd.get('active')} (CPU: {', '.join(simd.get('cpu') or [])})" if simd.get("active") else "",
        f"{threads} threads" if threads is not None else "",
    ]
    return ", ".join(p for p in parts if p)


def register(app: typer.Typer) -> None:
    @app.command("info")
    @handle_errors
    def info(
        as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")] = False,
    ) -> None:
        """Print versions of edgeanom and its runtimes, accelerators, Jetson state and the scoring core build."""
        env = collect_info()
        if as_json:
            typer.echo(json.dumps(env, indent=2, default=str))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(show_header=False, box=None, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for label, value in [*info_lines(env), *extension_lines(env)]:
            table.add_row(label, str(value))
        Console().print(table)
