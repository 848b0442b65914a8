"""Tiny hand-built bundles for testing the runtime without training (needs the `onnx` package only).

The model "reconstructs" every sample as one fixed reference (the expected background frame, or an all-zero
scaled window), so a sample's score is its mean squared distance from that reference: predictable, instant,
and scored by exactly the same ONNX Runtime + C++ path as a trained model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import numpy as np

from edgeanom.bundle import Bundle, fixed_threshold, new_bundle, onnx_section, preprocess_section


def _constant_onnx(
    path: Path, reference: np.ndarray, output: str = "reconstruction", fixed_batch: Optional[int] = None
) -> None:
    """ONNX graph: output = input * 0 + reference (broadcast over the batch axis)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    ref = np.ascontiguousarray(reference, dtype=np.float32)[None]
    batch: Any = fixed_batch if fixed_batch else "batch"
    dims = [batch, *ref.shape[1:]]
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["input", "zero"], ["zeroed"]),
            helper.make_node("Add", ["zeroed", "reference"], [output]),
        ],
        "constant_reference",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, dims)],
        initializer=[
            numpy_helper.from_array(np.zeros((1,), np.float32), "zero"),
            numpy_helper.from_array(ref, "reference"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def image_bundle(
    path: Path,
    background: np.ndarray,
    threshold: float,
    *,
    color: str = "gray",
    score_map: Optional[dict[str, Any]] = None,
    fixed_batch: Optional[int] = None,
) -> Bundle:
    """A bundle whose model expects `background` (uint8 HxW grey or HxWx3 BGR at model size)."""
    import cv2

    bg = np.asarray(background)
    h, w = bg.shape[:2]
    if color == "gray":
        img = bg if bg.ndim == 2 else cv2.cvtColor(bg, cv2.COLOR_BGR2GRAY)
        ref = img[None].astype(np.float32) / 255.0
    else:
        img = cv2.cvtColor(bg, cv2.COLOR_BGR2RGB) if bg.ndim == 3 else cv2.cvtColor(bg, cv2.COLOR_GRAY2RGB)
        ref = img.transpose(2, 0, 1).astype(np.float32) / 255.0
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _constant_onnx(path / "model.onnx", ref, fixed_batch=fixed_batch)
    bundle = new_bundle(
        path,
        model_type="constant-reference",
        input_kind="image",
        shape=ref.shape,
        names=["input"],
        preprocess=preprocess_section(image={"size": [h, w], "color": color}),
        score_map=score_map,
        threshold=fixed_threshold(threshold),
        onnx=onnx_section("reconstruction"),
    )
    bundle.save()
    return bundle


def window_bundle(
    path: Path,
    columns: list[str],
    length: int,
    threshold: float,
    *,
    stride: int = 1,
    offset: Optional[list[float]] = None,
    scale: Optional[list[float]] = None,
    time_column: Optional[str] = None,
    kind: str = "window",
) -> Bundle:
    """A sensor bundle (windows of `length` rows, or single rows with kind="vector") expecting scaled zeros."""
    c = len(columns)
    shape = [length, c] if kind == "window" else [c]
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    _constant_onnx(path / "model.onnx", np.zeros(shape, np.float32))
    scaler = {
        "kind": "standard",
        "offset": list(offset) if offset is not None else [0.0] * c,
        "scale": list(scale) if scale is not None else [1.0] * c,
    }
    bundle = new_bundle(
        path,
        model_type="constant-reference",
        input_kind=kind,
        shape=shape,
        names=list(columns),
        preprocess=preprocess_section(
            scaler=scaler,
            window={"length": length, "stride": stride} if kind == "window" else None,
            columns=list(columns),
            time_column=time_column,
        ),
        threshold=fixed_threshold(threshold),
        onnx=onnx_section("reconstruction"),
    )
    bundle.save()
    return bundle


class ScriptedCamera:
    """A fake live camera for tests: delivers frames, drops out after `drop_after` frames, refuses
    `failed_reopens` reopen attempts, then delivers `after_reconnect` more frames and ends."""

    kind = "frames"
    drop_stale = True
    reconnect = True
    fps: Optional[float] = None

    def __init__(
        self,
        frame: np.ndarray,
        drop_after: int = 5,
        failed_reopens: int = 2,
        after_reconnect: int = 5,
        name: str = "camera:fake",
        interval_s: float = 0.005,
    ) -> None:
        self.name = name
        self.frame = frame
        self.drop_after = drop_after
        self.failed_reopens = failed_reopens
        self.after_reconnect = after_reconnect
        self.interval_s = interval_s
        self.last_ref: Optional[str] = None
        self.opens = 0
        self.open_attempts = 0
        self._delivered = 0
        self._is_open = False

    def open(self) -> None:
        from edgeanom.errors import EdgeanomError

        self.open_attempts += 1
        if self.opens >= 1 and self.open_attempts - 1 <= self.failed_reopens:
            raise EdgeanomError(
                f"cannot open camera '{self.name}' (scripted failure {self.open_attempts - 1})"
            )
        self.opens += 1
        self._is_open = True

    def read(self) -> Optional[np.ndarray]:
        import time

        from edgeanom.runtime.sources.base import SourceLost

        if not self._is_open:
            raise SourceLost("not open")
        if self.opens == 1 and self._delivered >= self.drop_after:
            raise SourceLost("scripted drop-out")
        if self.opens > 1 and self._delivered >= self.drop_after + self.after_reconnect:
            return None
        time.sleep(self.interval_s)
        self._delivered += 1
        return self.frame.copy()

    def close(self) -> None:
        self._is_open = False
