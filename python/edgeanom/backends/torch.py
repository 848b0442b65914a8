"""PyTorch reference runner: the bundle's checkpoint run eagerly, for parity checks and training machines.

On CPU it runs on one intra-op thread unless told otherwise: eager torch with several threads on a busy,
shared machine was 40-75x slower than with one (2 cores, other processes competing), and ONNX Runtime is the
default CPU backend anyway. On CUDA every `infer` is staged as H2D copy (from page-locked memory), forward
pass and D2H copy, each bracketed by CUDA events, and the GPU times are published as `last_timings`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgeanom.bundle import Bundle
from edgeanom.errors import EdgeanomError

if TYPE_CHECKING:
    from edgeanom.backends.registry import BackendOptions

STAGES = ("h2d", "compute", "d2h")
CPU_DEFAULT_THREADS = 1


class CudaStageEvents:
    """Four events on the current CUDA stream bounding H2D, compute and D2H; mark(i) records boundary i.

    `make_event` builds one timing event (default `torch.cuda.Event(enable_timing=True)`); tests pass a fake.
    """

    def __init__(self, make_event: Callable[[], Any]) -> None:
        self.events = [make_event() for _ in range(len(STAGES) + 1)]

    def mark(self, i: int) -> None:
        self.events[i].record()

    def elapsed_ms(self) -> dict[str, float]:
        """Waits for the last event, then returns `{"h2d_ms", "compute_ms", "d2h_ms"}`."""
        ev = self.events
        ev[-1].synchronize()
        return {f"{name}_ms": float(ev[i].elapsed_time(ev[i + 1])) for i, name in enumerate(STAGES)}


class TorchRunner:
    """`infer(batch)` -> {the bundle's ONNX output name: array}, computed by the torch model under no_grad.

    `threads` sets torch's intra-op threads (process-wide, as torch has one pool); 0 means 1 on CPU and
    torch's default on CUDA. `last_timings` holds the GPU times (ms) of the last `infer` on CUDA
    (`{"h2d_ms", "compute_ms", "d2h_ms"}`) and stays empty on CPU, where there are no transfers to time.
    """

    def __init__(self, model: Any, output_name: str, device: str = "cpu", threads: int = 0) -> None:
        import torch

        self.on_cuda = str(getattr(device, "type", device)).startswith("cuda")
        if threads > 0:
            torch.set_num_threads(int(threads))
        elif not self.on_cuda:
            torch.set_num_threads(CPU_DEFAULT_THREADS)
        self.threads = int(torch.get_num_threads())
        self.model = model
        self.device = device
        self.input_name = "input"
        self.output_names = [output_name]
        self.name = f"torch[{device}]"
        self.max_batch: Optional[int] = None
        self.last_timings: dict[str, float] = {}
        self._stages: Optional[CudaStageEvents] = None
        self._pin_memory = self.on_cuda
        self._staging: Any = None  # page-locked input buffer, grown to the largest batch seen
        if self.on_cuda:
            self._stages = CudaStageEvents(lambda: torch.cuda.Event(enable_timing=True))

    @classmethod
    def from_bundle(cls, bundle: Bundle, threads: int = 0, device: Optional[str] = None) -> TorchRunner:
        import torch

        from edgeanom.models.checkpoint import load_model

        if bundle.model_family != "torch":
            raise EdgeanomError(
                f"bundle {bundle.path}: '{bundle.model_type}' is a scikit-learn model; run it with "
                "--backend onnxruntime"
            )
        dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = load_model(bundle, device=dev)
        return cls(model, str(bundle.onnx.get("output", "reconstruction")), device=dev, threads=threads)

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        x = np.ascontiguousarray(batch, dtype=np.float32)
        if self._stages is not None:
            return self._infer_staged(torch, x, self._stages)
        self.last_timings = {}
        with torch.inference_mode():
            out = _first_output(self.model(torch.from_numpy(x).to(self.device)))
        return {self.output_names[0]: out.detach().to("cpu").numpy()}

    def _infer_staged(self, torch: Any, x: np.ndarray, stages: CudaStageEvents) -> dict[str, np.ndarray]:
        """H2D from the pinned staging buffer, forward, D2H into pinned memory; all on the current stream."""
        self.last_timings = {}
        host_in = self._host_input(torch, x)
        with torch.inference_mode():
            stages.mark(0)
            t = host_in.to(self.device, non_blocking=True)
            stages.mark(1)
            out = _first_output(self.model(t))
            stages.mark(2)
            host_out = torch.empty(out.shape, dtype=out.dtype, pin_memory=self._pin_memory)
            host_out.copy_(out, non_blocking=True)
            stages.mark(3)
        self.last_timings = stages.elapsed_ms()  # waits for the D2H copy
        return {self.output_names[0]: host_out.numpy()}

    def _host_input(self, torch: Any, x: np.ndarray) -> Any:
        """`x` copied into the reused page-locked buffer (safe: the previous call waited for its copy)."""
        if self._staging is None or self._staging.numel() < x.size:
            self._staging = torch.empty(max(x.size, 1), dtype=torch.float32, pin_memory=self._pin_memory)
        host = self._staging[: x.size].view(x.shape)
        np.copyto(host.numpy(), x)
        return host

    def close(self) -> None:
        self.model = None
        self._stages = None
        self._staging = None

    def __enter__(self) -> TorchRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _first_output(out: Any) -> Any:
    return out[0] if isinstance(out, (tuple, list)) else out


# --- the backend table's entry points (edgeanom.backends.registry) ----------------------------------------
def unavailable(bundle: Optional[Bundle] = None) -> Optional[str]:
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "torch: not installed (pip install 'edgeanom[train]')"
    if bundle is None:
        return None
    ckpt = bundle.checkpoint_path
    if ckpt is None or not ckpt.is_file():
        return "torch: bundle has no PyTorch checkpoint"
    if bundle.model_family != "torch":
        return f"torch: model family is '{bundle.model_family}', not a PyTorch model"
    return None


def precision_unavailable(precision: str, bundle: Optional[Bundle] = None) -> Optional[str]:
    if precision != "fp32":
        return (
            f"the torch backend is the FP32 reference path; {precision} runs on --backend onnxruntime "
            "(FP16 ONNX from `edgeanom export --fp16`) or tensorrt"
        )
    return None


def open_for_bundle(bundle: Bundle, options: BackendOptions) -> TorchRunner:
    return TorchRunner.from_bundle(bundle, threads=options.threads)
