"""Report figures as PNG (matplotlib's Agg canvas; no display or pyplot state needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _figure() -> tuple[object, object]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def score_histogram(scores: np.ndarray, labels: np.ndarray, threshold: float, path: Path) -> Path:
    """Normal vs anomalous score distributions with the decision threshold."""
    fig, ax = _figure()
    finite = scores[np.isfinite(scores)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lo, hi = min(lo, threshold), max(hi, threshold)
    bins = np.linspace(lo, hi if hi > lo else lo + 1.0, 50)
    for value, name, color in ((0, "normal", "tab:blue"), (1, "anomalous", "tab:red")):
        sel = scores[(labels == value) & np.isfinite(scores)]
        if sel.size:
            ax.hist(sel, bins=bins, alpha=0.55, color=color, label=f"{name} (n={sel.size})", density=True)
    ax.axvline(threshold, color="black", linestyle="--", label=f"threshold {threshold:.4g}")
    ax.set_xlabel("anomaly score")
    ax.set_ylabel("density")
    ax.set_title("Score distribution")
    ax.legend()
    fig.savefig(path)
    return path


def roc_curve_plot(scores: np.ndarray, labels: np.ndarray, auroc: float, path: Path) -> Path:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    fig, ax = _figure()
    ax.plot(fpr, tpr, color="tab:blue", label=f"AUROC {auroc:.4f}")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":")
    ax.set_xlabel("false-alarm rate")
    ax.set_ylabel("detection rate")
    ax.set_title("ROC curve")
    ax.legend(loc="lower right")
    fig.savefig(path)
    return path


def pr_curve_plot(scores: np.ndarray, labels: np.ndarray, aupr: float, path: Path) -> Path:
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(labels, scores)
    fig, ax = _figure()
    ax.plot(recall, precision, color="tab:red", label=f"AUPR {aupr:.4f}")
    ax.axhline(float(np.mean(labels)), color="grey", linestyle=":", label="chance")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_ylim(0, 1.02)
    ax.set_title("Precision-recall curve")
    ax.legend(loc="lower left")
    fig.savefig(path)
    return path
