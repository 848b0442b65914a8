"""Stage clocks for H2D / compute / D2H: CUDA events on a GPU, the host clock otherwise.

CUDA kernels run asynchronously, so host timestamps around them measure queueing, not work. Events
recorded on the stream between the stages measure what the GPU did, like trtexec's "GPU Compute Time".
`TorchStagedInfer` uses them to split a PyTorch runner's inference into its three stages; a runner that
does its own staging (TensorRT) can use `CudaEventStages` and publish `last_timings`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Optional

import numpy as np

DEVICE_STAGES = ("h2d", "compute", "d2h")


class HostStages:
    """Boundary timestamps with time.perf_counter_ns; stage i lasts from mark(i) to mark(i + 1)."""

    def __init__(self, names: Sequence[str] = DEVICE_STAGES) -> None:
        self.names = tuple(names)
        self._t = [0] * (len(self.names) + 1)

    def mark(self, i: int) -> None:
        self._t[i] = time.perf_counter_ns()

    def elapsed_ms(self) -> dict[str, float]:
        return {n: (self._t[i + 1] - self._t[i]) / 1e6 for i, n in enumerate(self.names)}


class CudaEventStages:
    """The same boundaries as CUDA events on the current stream; elapsed_ms() waits for the last one."""

    def __init__(self, names: Sequence[str] = DEVICE_STAGES) -> None:
        import torch

        self.names = tuple(names)
        self._events = [torch.cuda.Event(enable_timing=True) for _ in range(len(self.names) + 1)]

    def mark(self, i: int) -> None:
        self._events[i].record()

    def elapsed_ms(self) -> dict[str, float]:
        self._events[-1].synchronize()
        ev = self._events
        return {n: float(ev[i].elapsed_time(ev[i + 1])) for i, n in enumerate(self.names)}


def is_cuda_device(device: Any) -> bool:
    return str(getattr(device, "type", device)).startswith("cuda")


class TorchStagedInfer:
    """Runs a torch module as H2D copy, forward pass and D2H copy, timing each stage.

    Returns the same named outputs as the runner's `infer` plus a dict of stage times in ms.
    """

    def __init__(self, module: Any, device: Any, output_names: Sequence[str]) -> None:
        import torch

        self.torch = torch
        self.module = module
        self.device = torch.device(device)
        self.output_names = list(output_names)
        params = list(module.parameters())
        self.dtype = params[0].dtype if params else torch.float32
        self.clock: HostStages | CudaEventStages = (
            CudaEventStages() if is_cuda_device(self.device) else HostStages()
        )

    def __call__(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        torch = self.torch
        with torch.inference_mode():
            self.clock.mark(0)
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.device, dtype=self.dtype)
            self.clock.mark(1)
            out = self.module(t)
            self.clock.mark(2)
            arrays = self._to_numpy(out)
            self.clock.mark(3)
        return arrays, self.clock.elapsed_ms()

    def _to_numpy(self, out: Any) -> dict[str, np.ndarray]:
        if isinstance(out, dict):
            return {k: v.float().cpu().numpy() for k, v in out.items()}
        if isinstance(out, (tuple, list)):
            return {n: v.float().cpu().numpy() for n, v in zip(self.output_names, out)}
        return {self.output_names[0]: out.float().cpu().numpy()}


def staged_torch_infer(runner: Any, force: bool = False) -> Optional[TorchStagedInfer]:
    """A staged, event-timed inference for a PyTorch runner on a CUDA device, else None.

    The runner must expose its `module` (or `model`, a torch.nn.Module) and `device`. `force` also
    builds one for a CPU device (used by tests to exercise the path without a GPU).
    """
    module = getattr(runner, "module", None) or getattr(runner, "model", None)
    device = getattr(runner, "device", None)
    if module is None or device is None or not hasattr(module, "parameters"):
        return None
    if not (force or is_cuda_device(device)):
        return None
    names = list(getattr(runner, "output_names", None) or ["reconstruction"])
    return TorchStagedInfer(module, device, names)


def torch_cuda_ready() -> bool:
    """True when torch is importable with a usable CUDA device (does not import torch otherwise)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    import torch

    return bool(torch.cuda.is_available())
