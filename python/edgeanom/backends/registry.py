"""The backend table: name -> module that opens a Runner for a bundle and says why it cannot run here.

`run`, `bench`, `info` and the Python API all read this table. Adding a backend is one module with
`unavailable(bundle)` and `open_for_bundle(bundle, options)` plus one `Backend(...)` line below. Modules are
imported only when a backend is asked for, and their heavy dependencies only when a runner is opened.
"""

from __future__ import annotations

import contextlib
import importlib
from dataclasses import dataclass
from typing import Any, Optional

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class BackendOptions:
    """What every backend may be asked for; a backend ignores what it has no use for."""

    precision: str = "fp32"
    max_batch: Optional[int] = None
    threads: int = 0
    reuse_outputs: bool = False  # outputs may be overwritten by the next infer (the run loop copies first)
    spin_wait: Optional[bool] = None


@dataclass(frozen=True)
class Backend:
    name: str
    module: str
    precisions: tuple[str, ...]
    description: str

    def _impl(self) -> Any:
        return importlib.import_module(self.module)

    def unavailable(self, bundle: Optional[Bundle] = None) -> Optional[str]:
        """Why this backend cannot run here (or for this bundle); None when it can. Loads nothing heavy."""
        return self._impl().unavailable(bundle)

    def precision_unavailable(self, precision: str, bundle: Optional[Bundle] = None) -> Optional[str]:
        if precision not in PRECISIONS:
            return f"{precision}: unknown precision (choose from {', '.join(PRECISIONS)})"
        if precision == "int8" and "int8" not in self.precisions:
            return (
                f"int8: only the TensorRT backend builds INT8 engines ({self.name} skipped); "
                "int8 needs the TensorRT backend (--backend tensorrt)"
            )
        check = getattr(self._impl(), "precision_unavailable", None)
        reason = check(precision, bundle) if check is not None else None
        if reason is None and precision not in self.precisions:
            reason = f"{precision}: the {self.name} backend runs {'/'.join(self.precisions)}"
        return reason

    def open(self, bundle: Bundle, options: BackendOptions) -> Any:
        return self._impl().open_for_bundle(bundle, options)


BACKENDS: dict[str, Backend] = {
    b.name: b
    for b in (
        Backend("tensorrt", "edgeanom.backends.tensorrt", PRECISIONS, "TensorRT engine on a CUDA GPU"),
        Backend(
            "onnxruntime",
            "edgeanom.backends.onnxruntime",
            ("fp32", "fp16"),
            "ONNX Runtime (TensorRT EP, CUDA EP or CPU)",
        ),
        Backend("openvino", "edgeanom.backends.openvino", ("fp32", "fp16"), "OpenVINO (Intel CPU or GPU)"),
        Backend("torch", "edgeanom.backends.torch", ("fp32",), "PyTorch checkpoint (the FP32 reference)"),
    )
}
AUTO_ORDER = ("tensorrt", "onnxruntime")  # `auto` tries these in turn: fastest first


def auto_order(bundle: Bundle) -> tuple[list[str], Optional[tuple[str, str]]]:
    """The backends `auto` tries, in turn: TensorRT first, then the CPU runtime `edgeanom bench` measured
    faster on this machine (`cpu_choice`; its (name, why) is returned too), ONNX Runtime last."""
    from edgeanom.backends.cpu_choice import measured_choice

    measured = measured_choice(bundle)
    if (
        measured is not None
        and measured[0] != "onnxruntime"
        and BACKENDS[measured[0]].unavailable(bundle) is None
    ):
        return ["tensorrt", measured[0], "onnxruntime"], measured
    return list(AUTO_ORDER), measured


def get_backend(name: str) -> Backend:
    try:
        return BACKENDS[name]
    except KeyError:
        raise EdgeanomError(
            f"unknown backend {name!r}: expected one of {', '.join(['auto', *BACKENDS])}"
        ) from None


def backend_names() -> list[str]:
    return list(BACKENDS)


def describe_backends() -> list[dict[str, Any]]:
    """Every backend with its precisions and why it cannot run here, if it cannot (for `edgeanom info`)."""
    from edgeanom.backends.triton import unavailable as triton_unavailable

    table = [
        {
            "name": b.name,
            "description": b.description,
            "precisions": list(b.precisions),
            "unavailable": b.unavailable(),
        }
        for b in BACKENDS.values()
    ]
    remote = "a model on a remote Triton server, over gRPC (its precision is chosen at export)"
    return [*table, {"name": "triton://HOST:PORT/MODEL", "description": remote, "precisions": ["fp32"],
                     "unavailable": triton_unavailable()}]  # fmt: skip


def open_runner(
    bundle: Bundle,
    backend: str = "auto",
    precision: str = "fp32",
    max_batch: Optional[int] = None,
    threads: int = 0,
    *,
    reuse_outputs: bool = False,
    spin_wait: Optional[bool] = None,
) -> Any:
    """Open the bundle's model on a backend. `auto` picks the fastest one available.

    The runner's `selection` attribute says what was chosen and why (e.g. why TensorRT was skipped), so the
    CLI can tell the user.
    """
    if precision not in PRECISIONS:
        raise EdgeanomError(f"unknown precision {precision!r}: expected one of {', '.join(PRECISIONS)}")
    options = BackendOptions(precision, max_batch, threads, reuse_outputs, spin_wait)
    if backend.startswith("triton://"):  # a remote Triton server: one per URL, not a table entry
        from edgeanom.backends.triton import open_url

        runner = open_url(bundle, backend, options)
        _note(runner, f"{runner.name} (asked for: remote inference)")
        return runner
    if backend != "auto":
        chosen = get_backend(backend)
        reason = chosen.precision_unavailable(precision, bundle)
        if reason:
            raise EdgeanomError(reason)
        runner = chosen.open(bundle, options)
        _note(runner, f"{runner.name} (asked for{'; the reference path' if backend == 'torch' else ''})")
        return runner
    skipped: list[str] = []
    order, measured = auto_order(bundle)
    for i, name in enumerate(order):
        candidate = BACKENDS[name]
        last = i == len(order) - 1
        want = "fp32" if precision == "int8" and last else precision  # INT8 only where TensorRT builds it
        reason = candidate.unavailable(bundle) or candidate.precision_unavailable(want, bundle)
        if reason and not last:
            skipped.append(f"{name} skipped: {reason}")
            continue
        if reason:
            raise EdgeanomError(reason)
        try:
            runner = candidate.open(
                bundle, BackendOptions(want, max_batch, threads, reuse_outputs, spin_wait)
            )
        except (EdgeanomError, ImportError, RuntimeError) as exc:
            if last:
                raise
            skipped.append(f"{name} failed: {exc}")
            continue
        why = "; ".join(skipped) if skipped else "fastest available"
        if measured is not None and measured[0] == name:
            why = f"{why}; {measured[1]}"
        _note(runner, f"auto: {runner.name} ({why})")
        return runner
    raise EdgeanomError("no backend could be opened")  # unreachable: the last candidate raises


def _note(runner: Any, text: str) -> None:
    with contextlib.suppress(AttributeError):  # a runner with __slots__: the CLI falls back to its name
        runner.selection = text
