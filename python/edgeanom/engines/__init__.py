"""TensorRT engines: CUDA/TensorRT entry points (cuda), the engine cache (cache) and the builder (build)."""
