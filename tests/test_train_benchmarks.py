"""Fast versions of the design benchmarks (benchmarks/seed_vae_grid.py, bottleneck_gap.py), loose bounds."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import bottleneck_gap
import seed_vae_grid


def test_vae_grid_best_cell_detects_shifted_anomalies():
    rows = seed_vae_grid.run_grid(n=1200, epochs=8, betas=(0.1,), latents=(10,), settings=("clean",))
    (row,) = rows
    assert row["auroc"] > 0.95 and row["aupr"] > 0.8, row


def test_bottleneck_gap_both_widths_separate_anomalies():
    rows = bottleneck_gap.run(n=1200, epochs=8)
    assert [r["bottleneck"] for r in rows] == [8, 64]
    for r in rows:
        assert r["gap"] > 0 and r["ratio"] > 2 and r["auroc"] > 0.95, r
