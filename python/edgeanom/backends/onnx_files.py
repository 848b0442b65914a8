"""Which ONNX file of a bundle a runtime that reads ONNX (ONNX Runtime, OpenVINO) loads for a precision."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from edgeanom.bundle import Bundle


def graph_unavailable(runtime: str, precision: str, bundle: Optional[Bundle]) -> Optional[str]:
    """Why `runtime` cannot run `precision` (for this bundle), or None: INT8 is TensorRT's, FP16 needs the
    bundle's FP16 graph."""
    if precision == "int8":
        return f"int8 needs the TensorRT backend (--backend tensorrt); {runtime} runs fp32/fp16"
    if precision == "fp16" and bundle is not None:
        fp16 = bundle.onnx.get("fp16_file")
        if not fp16 or not (bundle.path / fp16).is_file():
            return (
                f"bundle {bundle.path} has no FP16 ONNX model "
                f"(make one with: edgeanom export --model {bundle.path} --fp16)"
            )
    return None


def graph_for(bundle: Bundle, precision: str) -> Path:
    """The deployed graph, or its FP16 twin."""
    return bundle.onnx_path if precision != "fp16" else bundle.path / str(bundle.onnx["fp16_file"])
