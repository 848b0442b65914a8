"""The trtexec command lines printed for the target device, TensorRT 10 and 11 forms."""

from __future__ import annotations

import shlex

from edgeanom.engines.cache import Profile
from edgeanom.export.trtexec import trtexec_commands

PROFILE = Profile.for_batch((3, 64, 64), 8)


def commands(precision: str, fp16_onnx: str | None = "model.fp16.onnx", fused: bool = True) -> dict:
    return trtexec_commands(
        onnx_fp32="model.fused.onnx",
        onnx_fp16=fp16_onnx,
        plan="engines/model.plan",
        input_name="input",
        profile=PROFILE,
        precision=precision,
        workspace_mb=512,
        timing_cache="engines/timing.cache",
        calib_cache="engines/calibration.cache" if precision == "int8" else None,
        fused=fused,
    )


COMMON = [
    "--saveEngine=engines/model.plan",
    "--minShapes=input:1x3x64x64",
    "--optShapes=input:4x3x64x64",
    "--maxShapes=input:8x3x64x64",
    "--memPoolSize=workspace:512M",
    "--timingCacheFile=engines/timing.cache",
    "--skipInference",
]


def test_fp32_is_the_same_for_both_versions() -> None:
    cmds = commands("fp32")
    assert cmds[10].argv == ["trtexec", "--onnx=model.fused.onnx", *COMMON]
    assert cmds[11].argv == cmds[10].argv


def test_fp16_flag_on_trt10_strongly_typed_fp16_onnx_on_trt11() -> None:
    cmds = commands("fp16")
    assert cmds[10].argv == [
        "trtexec",
        "--onnx=model.fused.onnx",
        "--fp16",
        "--precisionConstraints=prefer",
        "--layerPrecisions=score_head/*:fp32",
        *COMMON,
    ]
    assert cmds[11].argv == ["trtexec", "--onnx=model.fp16.onnx", *COMMON]
    assert "--fp16" not in cmds[11].argv and "--stronglyTyped" not in cmds[11].argv  # always on in 11
    # the shell form quotes the wildcard, so it can be pasted as is
    assert shlex.split(cmds[10].shell()) == cmds[10].argv
    assert "'--layerPrecisions=score_head/*:fp32'" in cmds[10].shell()


def test_unfused_graph_needs_no_precision_constraints() -> None:
    argv = commands("fp16", fused=False)[10].argv
    assert argv is not None and not any(a.startswith("--layerPrecisions") for a in argv)


def test_fp16_on_trt11_without_fp16_onnx_says_what_to_run() -> None:
    cmd = commands("fp16", fp16_onnx=None)[11]
    assert cmd.argv is None and "edgeanom export --fp16" in cmd.note
    assert cmd.shell().startswith("# TensorRT 11:")


def test_int8_calibration_cache_on_trt10_not_supported_on_trt11() -> None:
    cmds = commands("int8")
    argv = cmds[10].argv
    assert argv is not None
    assert {"--int8", "--fp16", "--calib=engines/calibration.cache"} <= set(argv)
    assert "--calib-data" in cmds[10].note
    assert cmds[11].argv is None and "Q/DQ" in cmds[11].note
