"""Remote inference on a Triton server: `--backend triton://HOST:PORT/MODEL` (gRPC).

The way a plant with many cameras shares one GPU server: sources, preprocessing, scoring of what comes back,
alarms and sinks stay on the edge box; each preprocessed batch goes to Triton, whose dynamic batcher merges
the requests of every box. The model served must be the bundle's exported graph (`edgeanom export --triton`):
its input and output names and per-sample shape are checked against the bundle when the runner opens, and
with the fused graph the score that comes back is the bundle's final score (`onnx.fused.map_scored`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from edgeanom.errors import EdgeanomError, first_line

if TYPE_CHECKING:
    from edgeanom.bundle import Bundle

SCHEME = "triton://"
_URL = re.compile(
    r"^triton://(?P<host>\[[0-9a-fA-F:]+\]|[A-Za-z0-9.\-]+):(?P<port>\d{1,5})/(?P<model>[A-Za-z0-9_.\-]+)$"
)
TIMEOUT_S = 30.0


def parse_url(url: str) -> tuple[str, str]:
    """'triton://host:8001/model' -> ('host:8001', 'model'); a malformed one is a one-line error."""
    m = _URL.match(url)
    if m is None or not 0 < int(m["port"]) < 65536:
        raise EdgeanomError(
            f"--backend {url}: expected triton://HOST:PORT/MODEL (Triton's gRPC port, e.g. 8001)"
        )
    return f"{m['host']}:{m['port']}", m["model"]


class TritonRunner:
    """`infer(batch)` -> {output name: array}, by one gRPC request per batch."""

    def __init__(self, url: str, sample_shape: Optional[tuple[int, ...]] = None) -> None:
        try:
            import tritonclient.grpc as grpcclient
            from tritonclient.utils import InferenceServerException
        except ImportError:
            raise EdgeanomError(
                f"--backend {url}: needs tritonclient (pip install 'edgeanom[triton]')"
            ) from None
        self._grpc, self._error = grpcclient, InferenceServerException
        self.address, self.model = parse_url(url)
        self.name = f"triton[{self.address}/{self.model}]"
        self._client = grpcclient.InferenceServerClient(url=self.address)
        try:
            if not self._client.is_model_ready(self.model, client_timeout=TIMEOUT_S):
                raise EdgeanomError(f"--backend {url}: the server has no ready model '{self.model}'")
            meta = self._client.get_model_metadata(self.model, as_json=True, client_timeout=TIMEOUT_S)
            config = self._client.get_model_config(self.model, as_json=True, client_timeout=TIMEOUT_S)
        except InferenceServerException as exc:
            raise EdgeanomError(
                f"--backend {url}: cannot reach the Triton server ({first_line(exc)[:300]})"
            ) from None
        inputs = meta.get("inputs") or []
        if len(inputs) != 1 or inputs[0].get("datatype") != "FP32":
            raise EdgeanomError(
                f"--backend {url}: model '{self.model}' must take one FP32 input, has {inputs}"
            )
        self.input_name = str(inputs[0]["name"])
        self.output_names = [str(o["name"]) for o in meta.get("outputs") or []]
        batching = int((config.get("config") or {}).get("max_batch_size") or 0)
        dims = [int(d) for d in inputs[0].get("shape") or []][1 if batching else 0 :]
        if sample_shape is not None and [d for d in dims if d > 0] and dims != list(sample_shape):
            raise EdgeanomError(
                f"--backend {url}: model '{self.model}' takes samples of shape {dims}, the bundle's input.shape "
                f"is {list(sample_shape)}: serve the bundle's own export (edgeanom export --triton)"
            )
        self.max_batch: Optional[int] = batching or None

    def infer(self, batch: np.ndarray) -> dict[str, np.ndarray]:
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        grpc = self._grpc
        request = grpc.InferInput(self.input_name, list(batch.shape), "FP32")
        request.set_data_from_numpy(batch)
        wanted = [grpc.InferRequestedOutput(n) for n in self.output_names]
        try:
            result = self._client.infer(self.model, [request], outputs=wanted, client_timeout=TIMEOUT_S)
        except self._error as exc:
            raise EdgeanomError(
                f"Triton {self.address}/{self.model}: inference failed ({first_line(exc)[:300]})"
            ) from None
        return {n: result.as_numpy(n) for n in self.output_names}

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def __enter__(self) -> TritonRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def unavailable() -> Optional[str]:
    import importlib.util

    if importlib.util.find_spec("tritonclient") is None:
        return "tritonclient: not installed (pip install 'edgeanom[triton]')"
    return None


def open_url(bundle: Bundle, url: str, options: Any) -> TritonRunner:
    """The registry's entry for a `triton://` backend (the server decides precision and threads).
    `options` is the registry's BackendOptions (not imported: the registry imports this module)."""
    if options.precision != "fp32":
        raise EdgeanomError(
            f"--backend {url}: --precision {options.precision} is chosen when the repository is exported "
            "(edgeanom export --fp16 --triton DIR); leave --precision at fp32 here"
        )
    return TritonRunner(url, tuple(bundle.input_shape))
