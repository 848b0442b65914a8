"""Inference backends behind one interface: a batch in, named outputs out.

A runner is a context manager with `infer(batch) -> dict[name, array]`. Heavy dependencies
(onnxruntime, tensorrt, torch) are imported only when a backend is opened.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Runner(Protocol):
    name: str  # e.g. "onnxruntime[CPUExecutionProvider]"
    input_name: str
    output_names: list[str]

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc: object) -> None: ...
