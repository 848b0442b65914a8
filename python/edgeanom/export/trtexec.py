"""The trtexec command lines that build the same engine as `edgeanom export --engine`, for TensorRT 10 and 11.

Printed when this machine cannot build an engine (no TensorRT or no GPU), and used by the device-side recipe
`export/jetson/build_engine.sh`. TensorRT 10 takes precision flags (`--fp16`, `--int8 --calib`); TensorRT 11
removed them: every network is strongly typed, so FP16 comes from the FP16 ONNX and INT8 needs Q/DQ nodes.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edgeanom.engines.cache import Profile

# Layers of the fused score head (named by `fused.HEAD_PREFIX`) stay FP32 when TensorRT 10 may pick FP16.
FP32_LAYERS = "score_head/*:fp32"


@dataclass(frozen=True)
class TrtexecCommand:
    """argv for one TensorRT major version, or None with the reason it cannot build this precision."""

    tensorrt: int
    argv: Optional[list[str]]
    note: str = ""

    def shell(self) -> str:
        return shlex.join(self.argv) if self.argv else f"# TensorRT {self.tensorrt}: {self.note}"


def _shape(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape)


def trtexec_commands(
    *,
    onnx_fp32: str | Path,
    onnx_fp16: Optional[str | Path],
    plan: str | Path,
    input_name: str,
    profile: Profile,
    precision: str,
    workspace_mb: int,
    timing_cache: str | Path,
    calib_cache: Optional[str | Path] = None,
    fused: bool = True,
) -> dict[int, TrtexecCommand]:
    """{10: command, 11: command}; paths are used exactly as given (pass them relative to the bundle)."""
    common = [
        f"--saveEngine={plan}",
        f"--minShapes={input_name}:{_shape(profile.min)}",
        f"--optShapes={input_name}:{_shape(profile.opt)}",
        f"--maxShapes={input_name}:{_shape(profile.max)}",
        f"--memPoolSize=workspace:{int(workspace_mb)}M",
        f"--timingCacheFile={timing_cache}",
        "--skipInference",
    ]
    keep_fp32 = ["--precisionConstraints=prefer", f"--layerPrecisions={FP32_LAYERS}"] if fused else []
    if precision == "fp32":
        trt10 = TrtexecCommand(10, ["trtexec", f"--onnx={onnx_fp32}", *common])
        trt11 = TrtexecCommand(11, ["trtexec", f"--onnx={onnx_fp32}", *common])
    elif precision == "fp16":
        trt10 = TrtexecCommand(
            10,
            ["trtexec", f"--onnx={onnx_fp32}", "--fp16", *keep_fp32, *common],
            "TensorRT 8.5/8.6 (JetPack 5 / 6.0): drop --precisionConstraints/--layerPrecisions (TensorRT >= 9); "
            "the score head then builds in FP16"
            if keep_fp32
            else "",
        )
        trt11 = (
            TrtexecCommand(
                11, ["trtexec", f"--onnx={onnx_fp16}", *common], "strongly typed from the FP16 ONNX"
            )
            if onnx_fp16
            else TrtexecCommand(11, None, "needs the FP16 ONNX: run `edgeanom export --fp16` first")
        )
    elif precision == "int8":
        calib = calib_cache or "calibration.cache"
        trt10 = TrtexecCommand(
            10,
            ["trtexec", f"--onnx={onnx_fp32}", "--int8", "--fp16", f"--calib={calib}", *keep_fp32, *common],
            f"{calib} is written by `edgeanom export --engine --int8 --calib-data PATH` on a TensorRT machine",
        )
        trt11 = TrtexecCommand(
            11, None, "INT8 needs an explicitly quantized (Q/DQ) ONNX; edgeanom does not produce one yet"
        )
    else:
        raise ValueError(f"unknown precision {precision!r}")
    return {10: trt10, 11: trt11}
