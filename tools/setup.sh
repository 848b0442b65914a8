#!/usr/bin/env bash
# One-shot set-up on a fresh machine: CPU PyTorch first (so no multi-GB CUDA wheels are pulled),
# then edgeanom with the extras for training, streaming sinks and development.
# Usage: bash tools/setup.sh [--services]   (--services also apt-installs mosquitto and chromium for the tests)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if ! "$PY" -c "import torch" 2>/dev/null; then
  # A plain 'torch' requirement would fetch the CUDA build; the CPU build is all training here needs.
  "$PY" -m pip install --quiet torch==2.13.0 || "$PY" -m pip install --quiet torch --index-url https://download.pytorch.org/whl/cpu
fi
"$PY" -m pip install --quiet ".[train,stream,triton,openvino,dev]"

if [[ "${1:-}" == "--services" ]]; then
  need=()
  command -v mosquitto >/dev/null || [[ -x /usr/sbin/mosquitto ]] || need+=(mosquitto)
  command -v chromium >/dev/null || need+=(chromium)
  if ((${#need[@]})); then
    if [[ $(id -u) == 0 ]]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
      echo "setup: cannot install ${need[*]} without root; their tests will be skipped" >&2; exit 0
    fi
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
  fi
  # A real Triton server for the Triton tests: the nvidia-pytriton wheel bundles tritonserver (CPU, Python
  # backend) and pins numpy<2, so it gets a venv of its own. Its Python stub links the system's libpython,
  # so the venv is made from the system Python (a pyenv/conda Python of the same minor version breaks it).
  TRITON_VENV=build/triton-venv
  if [[ ! -x $TRITON_VENV/bin/python ]] && [[ -x /usr/bin/python3 ]]; then
    if /usr/bin/python3 -m venv "$TRITON_VENV" 2>/dev/null &&
      "$TRITON_VENV/bin/pip" install --quiet "nvidia-pytriton>=0.5" "numpy<2" onnxruntime; then
      echo "setup: Triton server venv in $TRITON_VENV"
    else
      rm -rf "$TRITON_VENV"
      echo "setup: could not set up the Triton server venv; the Triton server tests will be skipped" >&2
    fi
  fi
fi
echo "setup: edgeanom $("$PY" -c 'import edgeanom; print(edgeanom.__version__)') installed"
