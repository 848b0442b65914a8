"""Export: ONNX graphs (FP32, FP16, fused scoring), TensorRT engines with a cache, Triton model repositories.

Entry point: `edgeanom.export.pipeline.export_bundle` (what `edgeanom export` runs). Modules import their heavy
dependencies (onnx, torch, tensorrt) inside functions, so importing this package is cheap.
"""

from edgeanom._facade import make_callable

make_callable(__name__, "edgeanom.api:export")  # edgeanom.export(...) calls the API function
