"""PNG figures of a bench report: latency CDF per configuration; throughput and per-frame latency vs batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def _series_label(cfg: dict[str, Any]) -> str:
    t = f" t{cfg['threads']}" if cfg.get("threads") else ""
    return f"{cfg['backend']} {cfg['precision']}{t}"


def _title(report: dict[str, Any]) -> str:
    env = report.get("environment") or {}
    jetson = env.get("jetson") or {}
    cuda = env.get("cuda") or {}
    if jetson.get("module"):
        machine = jetson["module"]
    elif cuda.get("devices"):
        machine = cuda["devices"][0].get("name", "GPU")
    else:
        machine = (env.get("cpu") or {}).get("model") or "unknown machine"
    b = report.get("bundle", {})
    shape = "x".join(str(d) for d in b.get("input_shape", []))
    return f"edgeanom bench: {b.get('model_type', '?')} {shape} on {machine}"


def plot_report(report: dict[str, Any], path: Path) -> Path:
    """Write the three-panel figure to `path` (PNG, Agg backend: no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = report.get("results", [])
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    ax_cdf, ax_fps, ax_lat = axes

    # One colour per backend/precision/threads series (the same in every panel), one line style per batch.
    series = list(dict.fromkeys(_series_label(r["config"]) for r in results))
    palette = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    colour = {label: palette[i % len(palette)] for i, label in enumerate(series)}
    batch_list = sorted({r["config"]["batch"] for r in results})
    styles = ["-", "--", ":", "-."]
    style = {b: styles[i % len(styles)] for i, b in enumerate(batch_list)}

    for r in results:
        samples = np.sort(np.asarray((r.get("samples_ms") or {}).get("end_to_end") or [], dtype=float))
        if samples.size == 0:
            continue
        y = np.arange(1, samples.size + 1) / samples.size
        label = _series_label(r["config"])
        batch = r["config"]["batch"]
        ax_cdf.step(
            samples, y, where="post", color=colour[label], linestyle=style[batch], label=f"{label} b{batch}"
        )
    ax_cdf.set_xscale("log")
    ax_cdf.set_xlabel("end-to-end latency per batch (ms, log)")
    ax_cdf.set_ylabel("fraction of iterations")
    ax_cdf.set_title("Latency CDF")
    ax_cdf.grid(True, which="both", alpha=0.3)

    groups: dict[str, list[dict[str, Any]]] = {}
    for r in results:
        groups.setdefault(_series_label(r["config"]), []).append(r)
    for label, rs in groups.items():
        rs = sorted(rs, key=lambda r: r["config"]["batch"])
        batches = [r["config"]["batch"] for r in rs]
        fps = [r.get("throughput_fps") or np.nan for r in rs]
        line = ax_fps.plot(batches, fps, marker="o", color=colour[label], label=label)[0]
        e2e = [((r["per_frame_ms"] or {}).get("end_to_end") or {}).get("p50", np.nan) for r in rs]
        model = [((r["per_frame_ms"] or {}).get("latency") or {}).get("p50", np.nan) for r in rs]
        ax_lat.plot(batches, e2e, marker="o", color=line.get_color(), label=f"{label} end-to-end")
        ax_lat.plot(
            batches, model, marker="x", linestyle="--", color=line.get_color(), label=f"{label} model"
        )
    all_batches = sorted({r["config"]["batch"] for r in results})
    for ax in (ax_fps, ax_lat):
        ax.set_xscale("log", base=2)
        if all_batches:
            ax.set_xticks(all_batches, [str(b) for b in all_batches])
            ax.minorticks_off()
        ax.set_xlabel("batch size")
        ax.grid(True, which="both", alpha=0.3)
    for ax in (ax_fps, ax_lat):  # backends can differ by orders of magnitude: log scale then
        lines = [y for line in ax.get_lines() for y in np.asarray(line.get_ydata(), dtype=float)]
        finite = [y for y in lines if np.isfinite(y) and y > 0]
        if finite and max(finite) / min(finite) > 20:
            ax.set_yscale("log")
    ax_fps.set_ylabel("frames / s")
    ax_fps.set_title("Throughput vs batch")
    ax_lat.set_ylabel("p50 per frame (ms)")
    ax_lat.set_title("Per-frame latency vs batch")
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(_title(report), fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return path
