"""Inference backends behind one interface: a batch in, named outputs out.

A runner is a context manager with `infer(batch) -> dict[name, array]`. Heavy dependencies
(onnxruntime, tensorrt, torch) are imported only when a backend is opened.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edgeanom.engines.cuda import tensorrt_unavailable


class Runner(Protocol):
    name: str  # e.g. "onnxruntime[CPUExecutionProvider]"
    input_name: str
    output_names: list[str]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc: object) -> None: ...


from edgeanom.backends.registry import (  # noqa: E402
    BACKENDS,
    PRECISIONS,
    Backend,
    BackendOptions,
    backend_names,
    get_backend,
    open_runner,
)

__all__ = [
    "BACKENDS",
    "PRECISIONS",
    "Backend",
    "BackendOptions",
    "Runner",
    "backend_names",
    "get_backend",
    "open_runner",
    "tensorrt_unavailable",
]
