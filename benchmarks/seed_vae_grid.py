"""The VAE study: beta x latent grid on a 3-centre Gaussian blob mixture with ~3% shifted anomalies.

Data: 5,000 samples x 20 features; normal rows from sklearn's make_blobs (3 centres, std 1, centres in
[-10, 10]), anomalies from a unit Gaussian shifted by +4 in every feature; stratified 80/20 split. The
VAE is trained with edgeanom's own `train_bundle` (min-max scaler fitted on training rows) and scored with
`evaluate_bundle` (ONNX Runtime + the C++ scorer), so these are the numbers the deployed model gives.

Two training settings per cell:
- ``clean``: the training split's labels are given, so its anomalies are held out of training (edgeanom's
  intended use: learn normal data only);
- ``contaminated``: the training split is used as is, ~3% anomalies included (unlabelled real-world data).

Usage: python benchmarks/seed_vae_grid.py [--epochs 30] [--seeds 1] [--quick]
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

RESULTS = Path(__file__).resolve().parent / "results" / "seed_vae_grid.json"
BETAS = (0.1, 1.0, 5.0)
LATENTS = (2, 5, 10)
SETTINGS = ("clean", "contaminated")


def make_data(
    n: int = 5000, features: int = 20, anomaly_fraction: float = 0.03, shift: float = 4.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(X, y): blob-mixture normals (y=0) and shifted-Gaussian anomalies (y=1), shuffled."""
    from sklearn.datasets import make_blobs

    rng = np.random.default_rng(seed)
    n_anom = round(n * anomaly_fraction)
    normal, _ = make_blobs(
        n_samples=n - n_anom, n_features=features, centers=3, cluster_std=1.0, random_state=seed
    )
    anomalies = rng.normal(size=(n_anom, features)) + shift
    x = np.concatenate([normal, anomalies])
    y = np.concatenate([np.zeros(len(normal), np.int8), np.ones(n_anom, np.int8)])
    order = rng.permutation(len(x))
    return x[order], y[order]


def describe_data(n: int) -> dict[str, Any]:
    """What `make_data` + `split` produce, for the results JSON."""
    return {
        "n": n,
        "features": 20,
        "centres": 3,
        "anomaly_fraction": 0.03,
        "shift": 4.0,
        "split": "stratified 80/20",
    }


def split(
    x: np.ndarray, y: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    return train_test_split(x, y, test_size=0.2, stratify=y, random_state=seed)


def run_cell(
    data: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    beta: float,
    latent: int,
    setting: str,
    seed: int,
    epochs: int,
    workdir: Path,
) -> dict[str, Any]:
    from edgeanom.evaluate.api import evaluate_bundle
    from edgeanom.train.api import train_bundle

    x_train, x_test, y_train, y_test = data
    started = time.perf_counter()
    bundle = train_bundle(
        table=x_train,
        labels=y_train if setting == "clean" else None,
        model="vae",
        out=workdir / f"vae-{setting}-{beta}-{latent}-{seed}",
        epochs=epochs,
        seed=seed,
        beta=beta,
        latent=latent,
        progress=False,
        threads=1,
    )
    report = evaluate_bundle(bundle.path, table=x_test, labels=y_test, plots=False, threads=1)
    return {
        "beta": beta,
        "latent": latent,
        "setting": setting,
        "seed": seed,
        "auroc": report["auroc"],
        "aupr": report["aupr"],
        "f1_at_threshold": report["f1"],
        "best_f1": report["best_f1"],
        "seconds": round(time.perf_counter() - started, 2),
    }


def run_grid(
    n: int = 5000,
    epochs: int = 30,
    betas: Sequence[float] = BETAS,
    latents: Sequence[int] = LATENTS,
    settings: Sequence[str] = SETTINGS,
    seeds: Sequence[int] = (0,),
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="vae-grid-") as tmp:
        for seed in seeds:
            x, y = make_data(n=n, seed=seed)
            data = split(x, y, seed=seed)
            for setting in settings:
                for beta in betas:
                    for latent in latents:
                        rows.append(run_cell(data, beta, latent, setting, seed, epochs, Path(tmp)))
    return rows


def summarise(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean AUROC/AUPR per (setting, beta, latent) over seeds."""
    cells: dict[tuple[str, float, int], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["setting"], r["beta"], r["latent"]), []).append(r)
    return [
        {
            "setting": s,
            "beta": b,
            "latent": lat,
            "auroc": float(np.mean([r["auroc"] for r in rs])),
            "aupr": float(np.mean([r["aupr"] for r in rs])),
            "best_f1": float(np.mean([r["best_f1"] for r in rs])),
            "n_seeds": len(rs),
        }
        for (s, b, lat), rs in cells.items()
    ]


def main(argv: Sequence[str] | None = None) -> int:
    from rich.console import Console
    from rich.table import Table

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=1, help="repeat every cell with seeds 0..N-1")
    ap.add_argument("--quick", action="store_true", help="1,500 samples, 10 epochs (smoke test)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    n, epochs = (1500, 10) if args.quick else (5000, args.epochs)
    started = time.perf_counter()
    rows = run_grid(n=n, epochs=epochs, seeds=range(args.seeds))
    summary = summarise(rows)
    table = Table(
        title=f"VAE grid: {n} x 20 blobs, 3% anomalies (+4), {epochs} epochs, AUROC / AUPR on the 20% test split"
    )
    table.add_column("setting")
    table.add_column("beta", justify="right")
    for lat in LATENTS:
        table.add_column(f"latent {lat}", justify="right")
    for setting in SETTINGS:
        best = max((c for c in summary if c["setting"] == setting), key=lambda c: (c["auroc"], c["aupr"]))
        for beta in BETAS:
            cells = []
            for lat in LATENTS:
                c = next(c for c in summary if (c["setting"], c["beta"], c["latent"]) == (setting, beta, lat))
                text = f"{c['auroc']:.4f} / {c['aupr']:.4f}"
                cells.append(f"[bold green]{text}[/]" if c is best else text)
            table.add_row(setting, f"{beta:g}", *cells)
    Console().print(table)
    result = {
        "benchmark": "seed_vae_grid",
        "data": describe_data(n),
        "epochs": epochs,
        "seeds": args.seeds,
        "scored_with": "edgeanom.evaluate.evaluate_bundle (ONNX Runtime + C++ scorer)",
        "best": {
            s: max((c for c in summary if c["setting"] == s), key=lambda c: (c["auroc"], c["aupr"]))
            for s in SETTINGS
        },
        "grid": summary,
        "runs": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    Console().print(f"wrote {args.out} ({result['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
