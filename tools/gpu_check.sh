#!/usr/bin/env bash
# The GPU check: everything this project can prove on a CUDA machine with PyTorch but no TensorRT and no
# internet (the machine the `device` tool lends), in one call of at most 8 minutes.
#
#   bash tools/gpu_check.sh [OUT_DIR]     (default: benchmarks/results/gpu)
#
# 1. builds the C++ core into the machine's Python without downloading anything (--no-build-isolation,
#    --no-deps: pybind11, scikit-build-core, cmake, numpy, onnx, onnxruntime, opencv, torch come with it);
# 2. runs the GPU-marked tests (`pytest -m gpu`; TensorRT ones skip with their reason);
# 3. trains a small conv-ae bundle on CUDA (`edgeanom train --device cuda`) from generated frames;
# 4. `edgeanom bench --backend torch` on CUDA at batch 1, 8 and 32 with CUDA-event stage timings, and the
#    same through ONNX Runtime on the CPU for comparison, JSON under OUT_DIR.
# Each step's log goes to OUT_DIR; the script stops at the first failure and says which step it was.
# GPU_CHECK_DEVICE=cpu rehearses every step on a machine without a GPU (the GPU tests then skip).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${1:-benchmarks/results/gpu}"
mkdir -p "$OUT_DIR"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
PY="${PYTHON:-python3}"
DEVICE="${GPU_CHECK_DEVICE:-cuda}"
export PYTHONUNBUFFERED=1

step() {
    local name="$1"
    shift
    echo "== $name"
    local started=$SECONDS
    if ! "$@" >"$OUT_DIR/$name.log" 2>&1; then
        tail -n 40 "$OUT_DIR/$name.log"
        echo "gpu_check: step '$name' failed after $((SECONDS - started)) s (log: $OUT_DIR/$name.log)" >&2
        exit 1
    fi
    echo "   ok in $((SECONDS - started)) s"
}

if [ "$DEVICE" = cuda ]; then
    "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "gpu_check: torch sees no CUDA device")'
fi
"$PY" -c 'import torch; c = torch.cuda.is_available(); print("torch", torch.__version__, "CUDA", torch.version.cuda, torch.cuda.get_device_name(0) if c else "no GPU")' \
    | tee "$OUT_DIR/device.txt"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader >>"$OUT_DIR/device.txt" 2>/dev/null || true

step install "$PY" -m pip install -q --no-deps --no-build-isolation .
# only the modules that hold GPU tests: the others import services (MQTT, Triton) this machine lacks
mapfile -t GPU_TESTS < <(grep -l "mark.gpu" tests/test_*.py)
step tests "$PY" -m pytest -m gpu -q -p no:cacheprovider -o addopts="" "${GPU_TESTS[@]}"
step frames "$PY" - "$WORK/frames" <<'EOF'
import sys
from pathlib import Path

import cv2
import numpy as np

out = Path(sys.argv[1])
out.mkdir(parents=True)
rng = np.random.default_rng(0)
yy, xx = np.mgrid[0:128, 0:128]
for i in range(256):
    img = 128 + 60 * np.sin((xx + 3 * i) / 9.0) * np.cos(yy / 11.0) + rng.normal(0, 4, (128, 128))
    cv2.imwrite(str(out / f"{i:04d}.png"), np.clip(img, 0, 255).astype(np.uint8))
EOF
step train "$PY" -m edgeanom train --data "$WORK/frames" --model-type conv-ae --device "$DEVICE" --epochs 5 \
    --out "$WORK/bundle" -q
# the torch backend runs on CUDA when torch sees a GPU and reports CUDA-event stage times there
step bench "$PY" -m edgeanom bench -m "$WORK/bundle" --backend torch --batch 1 --batch 8 --batch 32 \
    --warmup-s 2 --duration-s 5 --report "$OUT_DIR/bench_torch_$DEVICE.json"
step bench_onnxruntime "$PY" -m edgeanom bench -m "$WORK/bundle" --backend onnxruntime \
    --batch 1 --batch 8 --batch 32 --warmup-s 1 --duration-s 3 --report "$OUT_DIR/bench_onnxruntime.json"
echo "gpu_check: all steps passed; results in $OUT_DIR"
