"""Serve an exported edgeanom graph with a real Triton server (the nvidia-pytriton wheel's tritonserver, CPU,
Python backend), for the Triton tests. Runs in the Triton venv (numpy<2), not in the test's Python:

    python triton_serve.py MODEL.onnx NAME GRPC_PORT HTTP_PORT METRICS_PORT

The graph runs in ONNX Runtime inside the Python backend, with Triton's dynamic batcher in front.
"""

import sys

import numpy as np
import onnxruntime as ort
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig


def main() -> None:
    path, name, grpc, http, metrics = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    source = session.get_inputs()[0]
    outputs = [o.name for o in session.get_outputs()]

    @batch
    def infer(**inputs):
        values = session.run(outputs, {source.name: inputs[source.name].astype(np.float32)})
        return {n: v.reshape(-1, 1) if v.ndim == 1 else v for n, v in zip(outputs, values)}  # scores: [N, 1]

    shapes = {o.name: tuple(o.shape[1:]) for o in session.get_outputs()}
    config = TritonConfig(grpc_port=grpc, http_port=http, metrics_port=metrics, log_verbose=0)
    with Triton(config=config) as triton:
        triton.bind(
            model_name=name,
            infer_func=infer,
            inputs=[Tensor(name=source.name, dtype=np.float32, shape=tuple(source.shape[1:]))],
            outputs=[Tensor(name=n, dtype=np.float32, shape=shapes[n] or (1,)) for n in outputs],
            config=ModelConfig(max_batch_size=16, batcher=DynamicBatcher(max_queue_delay_microseconds=1000)),
        )
        print("ready", flush=True)
        triton.serve()


if __name__ == "__main__":
    main()
