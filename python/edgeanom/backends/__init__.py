"""Inference backends behind one interface: a batch in, named outputs out.

A runner is a context manager with `infer(batch) -> dict[name, array]`. Heavy dependencies
(onnxruntime, tensorrt, torch) are imported only when a backend is opened.
"""

from __future__ import annotations

import contextlib
from typing import Any, Optional, Protocol

import numpy as np

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError


class Runner(Protocol):
    name: str  # e.g. "onnxruntime[CPUExecutionProvider]"
    input_name: str
    output_names: list[str]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc: object) -> None: ...


BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch")
PRECISIONS = ("fp32", "fp16", "int8")


def open_runner(
    bundle: Bundle,
    backend: str = "auto",
    precision: str = "fp32",
    max_batch: Optional[int] = None,
    threads: int = 0,
    *,
    reuse_outputs: bool = False,
    spin_wait: Optional[bool] = None,
) -> Runner:
    """Open the bundle's model on a backend. `auto` picks the fastest one available.

    The runner's `selection` attribute says what was chosen and why (e.g. why TensorRT was skipped), so the
    CLI can tell the user. `reuse_outputs` lets ONNX Runtime on CPU write into the same output buffers on
    every call (the caller must be done with one batch's outputs before the next `infer`).
    """
    if backend not in BACKENDS:
        raise EdgeanomError(f"unknown backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    if precision not in PRECISIONS:
        raise EdgeanomError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    if backend == "tensorrt":
        runner = _open_tensorrt(bundle, precision, max_batch)
        _note(runner, f"{runner.name} (asked for)")
        return runner
    if backend == "torch":
        from edgeanom.backends.torch import TorchRunner

        if precision != "fp32":
            raise EdgeanomError(
                f"the torch backend is the FP32 reference path; {precision} runs on --backend onnxruntime "
                "(FP16 ONNX from `edgeanom export --fp16`) or tensorrt"
            )

        runner = TorchRunner.from_bundle(bundle, threads=threads)
        _note(runner, f"{runner.name} (asked for; the reference path)")
        return runner
    if backend == "onnxruntime":
        runner = _open_onnxruntime(bundle, precision, threads, reuse_outputs, spin_wait)
        _note(runner, f"{runner.name} (asked for)")
        return runner
    # auto: a TensorRT engine beats every ONNX Runtime provider; ONNX Runtime picks TRT EP > CUDA EP > CPU.
    skipped = []
    trt_reason = tensorrt_unavailable()
    if trt_reason is None:
        try:
            runner = _open_tensorrt(bundle, precision, max_batch)
            _note(runner, f"auto: {runner.name} (fastest available)")
            return runner
        except (EdgeanomError, ImportError, RuntimeError) as exc:
            skipped.append(f"tensorrt failed: {exc}")
    else:
        skipped.append(f"tensorrt skipped: {trt_reason}")
    runner = _open_onnxruntime(
        bundle, "fp32" if precision == "int8" else precision, threads, reuse_outputs, spin_wait
    )
    _note(runner, f"auto: {runner.name} ({'; '.join(skipped)})")
    return runner


def tensorrt_unavailable() -> Optional[str]:
    """Why the TensorRT backend cannot run here, or None when it can (TensorRT and a CUDA device present)."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed"
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return "cuda-python is not installed (pip install 'edgeanom[trt]')"
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception as exc:  # no driver
        return f"no CUDA driver ({exc})"
    if int(err) != 0 or count < 1:
        return "no CUDA device"
    return None


def _open_tensorrt(bundle: Bundle, precision: str, max_batch: Optional[int]) -> Runner:
    from edgeanom.backends.tensorrt import TensorRTRunner

    kwargs: dict[str, Any] = {"precision": precision}
    if max_batch is not None:
        kwargs["max_batch"] = int(max_batch)
    return TensorRTRunner.from_bundle(bundle, **kwargs)


def _open_onnxruntime(
    bundle: Bundle, precision: str, threads: int, reuse_outputs: bool, spin_wait: Optional[bool]
) -> Runner:
    from edgeanom.backends.onnxruntime import OnnxRuntimeRunner, provider_options_for

    if precision == "int8":
        raise EdgeanomError(
            "int8 needs the TensorRT backend (--backend tensorrt); ONNX Runtime runs fp32/fp16"
        )
    path = bundle.onnx_path
    if precision == "fp16":
        fp16 = bundle.onnx.get("fp16_file")
        if not fp16 or not (bundle.path / fp16).is_file():
            raise EdgeanomError(
                f"bundle {bundle.path} has no FP16 ONNX model (make one with: edgeanom export {bundle.path} --fp16)"
            )
        path = bundle.path / fp16
    return OnnxRuntimeRunner(
        path,
        intra_op_threads=threads,
        reuse_outputs=reuse_outputs,
        spin_wait=spin_wait,
        provider_options=provider_options_for(bundle.path, precision),
        # the CPU NCHWc layout pass is FP32-only and crashes on some FP16 graphs (LSTM models, onnxruntime 1.32)
        disabled_optimizers=("NchwcTransformer",) if precision == "fp16" else (),
    )


def _note(runner: Any, text: str) -> None:
    with contextlib.suppress(AttributeError):  # a runner with __slots__: the CLI falls back to its name
        runner.selection = text
