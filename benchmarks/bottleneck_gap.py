"""Why the dense autoencoder's bottleneck is narrow: bottleneck 8 vs 64 on the VAE-grid data.

A bottleneck wider than the 20 input features lets the network learn something close to the identity, which
reconstructs anomalies as well as normal rows and closes the gap between their errors. For each width this
reports the mean reconstruction error (the bundle's score) of normal and anomalous test rows, their difference
and ratio, and AUROC. Training uses normal rows only (`train_bundle` with labels); scores come from
`evaluate_bundle` (ONNX Runtime + the C++ scorer).

Usage: python benchmarks/bottleneck_gap.py [--epochs 40] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from seed_vae_grid import describe_data, make_data, split

RESULTS = Path(__file__).resolve().parent / "results" / "bottleneck_gap.json"
BOTTLENECKS = (8, 64)


def run(
    n: int = 5000, epochs: int = 40, bottlenecks: Sequence[int] = BOTTLENECKS, seeds: Sequence[int] = (0,)
) -> list[dict[str, Any]]:
    from edgeanom.evaluate.api import evaluate_bundle
    from edgeanom.train.api import train_bundle

    rows = []
    with tempfile.TemporaryDirectory(prefix="bottleneck-") as tmp:
        for seed in seeds:
            x, y = make_data(n=n, seed=seed)
            x_train, x_test, y_train, y_test = split(x, y, seed=seed)
            for width in bottlenecks:
                started = time.perf_counter()
                # the encoder narrows 64-32-16 by default; a wide bottleneck keeps every layer >= its width
                hidden = [64, 32, 16] if width <= 16 else [max(64, width)] * 3
                bundle = train_bundle(
                    table=x_train,
                    labels=y_train,
                    model="dense-ae",
                    out=Path(tmp) / f"ae-{width}-{seed}",
                    epochs=epochs,
                    seed=seed,
                    bottleneck=width,
                    hidden=hidden,
                    progress=False,
                    threads=1,
                )
                report = evaluate_bundle(bundle.path, table=x_test, labels=y_test, plots=False, threads=1)
                normal = report["scores"]["normal"]["mean"]
                anomalous = report["scores"]["anomalous"]["mean"]
                rows.append(
                    {
                        "bottleneck": width,
                        "hidden": hidden,
                        "seed": seed,
                        "normal_mean_error": normal,
                        "anomalous_mean_error": anomalous,
                        "gap": anomalous - normal,
                        "ratio": anomalous / normal if normal > 0 else None,
                        "auroc": report["auroc"],
                        "aupr": report["aupr"],
                        "seconds": round(time.perf_counter() - started, 2),
                    }
                )
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for width in dict.fromkeys(r["bottleneck"] for r in rows):
        rs = [r for r in rows if r["bottleneck"] == width]
        out.append(
            {
                "bottleneck": width,
                **{
                    k: float(np.mean([r[k] for r in rs]))
                    for k in ("normal_mean_error", "anomalous_mean_error", "gap", "ratio", "auroc", "aupr")
                },
                "n_seeds": len(rs),
            }
        )
    return out


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=40)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="1,500 samples, 10 epochs, 1 seed (smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    n, epochs, seeds = (1500, 10, 1) if args.quick else (5000, args.epochs, args.seeds)
    started = time.perf_counter()
    rows = run(n=n, epochs=epochs, seeds=range(seeds))
    summary = summarise(rows)
    table = Table(
        title=f"dense-ae bottleneck width: mean test reconstruction error (scaled units), {n} x 20, {epochs} epochs, {seeds} seed(s)"
    )
    for col in ("bottleneck", "normal", "anomalous", "gap", "ratio", "AUROC", "AUPR"):
        table.add_column(col, justify="right")
    for s in summary:
        table.add_row(
            str(s["bottleneck"]),
            f"{s['normal_mean_error']:.4f}",
            f"{s['anomalous_mean_error']:.4f}",
            f"{s['gap']:.4f}",
            f"{s['ratio']:.1f}x",
            f"{s['auroc']:.4f}",
            f"{s['aupr']:.4f}",
        )
    Console().print(table)
    result = {
        "benchmark": "bottleneck_gap",
        "data": describe_data(n),
        "epochs": epochs,
        "seeds": seeds,
        "score": "mean squared reconstruction error per row, standard-scaled features (the bundle's score)",
        "summary": summary,
        "runs": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    Console().print(f"wrote {args.out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
