"""Numbers that prove an exported graph computes what the trained model computes.

- `compare`: max absolute and max relative error of one output against a reference. Relative error is taken
  against the reference's largest magnitude (max |a - b| / max |b|), so near-zero elements do not blow it up.
- `fp16_cost`: what FP16 costs in anomaly-detection terms: per-sample score relative error, Spearman rank
  correlation of the scores, and the change in AUROC on held-out normal + labelled anomalous samples.
- `onnx_session` / `run_onnx`: ONNX Runtime on CPU, the same way for every check.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Optional, Union

import numpy as np

from edgeanom.errors import EdgeanomError

FP32_REL_TOL = 1e-5  # FP32 ONNX vs PyTorch, and fused scores vs the C++ core
AUROC_TARGET = 0.005  # |delta AUROC| FP16 vs FP32


@dataclass
class ParityRow:
    """One line of the parity table: `what` compared on `inputs` samples."""

    what: str
    inputs: str
    n: int
    max_abs: float
    max_rel: float
    tol: Optional[float] = None

    @property
    def ok(self) -> Optional[bool]:
        return None if self.tol is None else bool(self.max_rel <= self.tol)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def compare(ref: np.ndarray, got: np.ndarray) -> tuple[float, float]:
    """(max abs error, max abs error / max |ref|) over finite reference elements; inf when shapes or
    non-finite positions differ."""
    ref = np.asarray(ref, dtype=np.float64)
    got = np.asarray(got, dtype=np.float64)
    if ref.shape != got.shape:
        return float("inf"), float("inf")
    finite = np.isfinite(ref)
    if not np.array_equal(finite, np.isfinite(got)) or not np.array_equal(ref[~finite], got[~finite]):
        return float("inf"), float("inf")
    if not finite.any():
        return 0.0, 0.0
    diff = np.abs(ref[finite] - got[finite])
    scale = float(np.max(np.abs(ref[finite])))
    max_abs = float(diff.max())
    return max_abs, (max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf")))


def row(
    what: str,
    inputs: str,
    ref: np.ndarray,
    got: np.ndarray,
    tol: Optional[float] = None,
    scale: Optional[float] = None,
) -> ParityRow:
    """A parity row; `scale` replaces max |ref| as the denominator of the relative error when the values
    are an amplified copy of a quantity whose float32 resolution is what can be asked for (a map normalised
    per pixel by factors up to 10^4: both the graph and the core round the map before it is amplified)."""
    max_abs, max_rel = compare(ref, got)
    if scale is not None and np.isfinite(max_abs):
        max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    return ParityRow(
        what, inputs, int(np.asarray(ref).shape[0]) if np.ndim(ref) else 1, max_abs, max_rel, tol
    )


# --- ONNX Runtime --------------------------------------------------------------------------------------
ModelSource = Union[bytes, str, Any]


def onnx_session(model: ModelSource, fp16: bool = False) -> Any:
    """A CPU InferenceSession on a path, serialized bytes or ModelProto.

    FP16 graphs run with ONNX Runtime's NCHWc layout pass disabled: it is an FP32-only x86 optimisation and
    crashes on some FP16 graphs (LSTM models, onnxruntime 1.32).
    """
    import onnxruntime as ort

    if hasattr(model, "SerializeToString"):
        model = model.SerializeToString()
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    kwargs = {"disabled_optimizers": ["NchwcTransformer"]} if fp16 else {}
    try:
        return ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"], **kwargs)
    except Exception as exc:  # onnxruntime raises Fail / InvalidGraph / NotImplemented
        raise EdgeanomError(f"ONNX Runtime cannot load the exported graph: {exc}") from None


def run_onnx(session: Any, x: np.ndarray, batch: int = 64) -> dict[str, np.ndarray]:
    """All outputs for `x`, run in batches; float outputs come back as float32."""
    name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    parts: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for start in range(0, len(x), batch):
        chunk = np.ascontiguousarray(x[start : start + batch], dtype=np.float32)
        for n, v in zip(names, session.run(names, {name: chunk})):
            parts[n].append(v)
    return {n: np.concatenate(v).astype(np.float32, copy=False) for n, v in parts.items()}


def torch_outputs(model: Any, x: np.ndarray, batch: int = 64) -> np.ndarray:
    """The torch model's output for `x` (float32, CPU, no grad), the reference every graph is held to."""
    import torch

    outs = []
    with torch.no_grad():
        for start in range(0, len(x), batch):
            outs.append(model(torch.from_numpy(np.ascontiguousarray(x[start : start + batch]))).numpy())
    return np.concatenate(outs).astype(np.float32, copy=False)


# --- FP16 cost -------------------------------------------------------------------------------------------
def fp16_cost(
    scores32: np.ndarray, scores16: np.ndarray, labels: Optional[Sequence[int]] = None
) -> dict[str, Any]:
    """Score relative error, Spearman correlation and AUROC change of FP16 scores against FP32 ones.

    `labels` (1 = anomalous) gives the AUROC; without both classes it is reported as None with the reason.
    """
    from scipy.stats import spearmanr

    s32 = np.asarray(scores32, dtype=np.float64).reshape(-1)
    s16 = np.asarray(scores16, dtype=np.float64).reshape(-1)
    if s32.shape != s16.shape or s32.size == 0:
        raise EdgeanomError(f"FP16 cost: {s16.size} FP16 scores for {s32.size} FP32 scores")
    ok = np.isfinite(s32) & np.isfinite(s16)
    rel = np.abs(s16[ok] - s32[ok]) / np.maximum(np.abs(s32[ok]), np.finfo(np.float32).tiny)
    out: dict[str, Any] = {
        "n": int(s32.size),
        "score_rel_err_median": float(np.median(rel)) if rel.size else None,
        "score_rel_err_p99": float(np.quantile(rel, 0.99)) if rel.size else None,
        "score_rel_err_max": float(rel.max()) if rel.size else None,
        "spearman": None,
        "auroc_fp32": None,
        "auroc_fp16": None,
        "delta_auroc": None,
        "auroc_note": None,
    }
    if ok.sum() >= 3 and np.ptp(s32[ok]) > 0 and np.ptp(s16[ok]) > 0:
        out["spearman"] = float(spearmanr(s32[ok], s16[ok]).statistic)
    y = None if labels is None else np.asarray(labels).astype(int).reshape(-1)
    if y is None:
        out["auroc_note"] = "no labelled samples"
    elif y.size != s32.size:
        raise EdgeanomError(f"FP16 cost: {y.size} labels for {s32.size} scores")
    elif y.min() == y.max():
        out["auroc_note"] = f"labels hold one class only ({int(y.sum())} anomalous of {y.size})"
    else:
        from sklearn.metrics import roc_auc_score

        big = np.finfo(np.float64).max
        a32 = float(roc_auc_score(y, np.nan_to_num(s32, nan=big, posinf=big)))
        a16 = float(roc_auc_score(y, np.nan_to_num(s16, nan=big, posinf=big)))
        out.update(auroc_fp32=a32, auroc_fp16=a16, delta_auroc=a16 - a32)
        out["n_anomalous"] = int(y.sum())
    return out
