#!/usr/bin/env bash
# Install edgeanom on a Jetson without shadowing JetPack's GStreamer-enabled OpenCV.
#
# pip cannot see the apt-installed cv2 (python3-opencv / JetPack's OpenCV), so a normal install would pull
# opencv-python-headless, whose cv2 has no GStreamer and wins on sys.path. Here we install edgeanom with
# --no-deps and then its other dependencies explicitly, leaving cv2 to the system.
# TensorRT and its Python bindings also come from JetPack (python3-libnvinfer); onnxruntime-gpu for Jetson
# comes from NVIDIA's Jetson Zoo wheels (pass its path or URL as ORT_WHEEL=...), else the CPU build is used.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

# Supported: JetPack 6.x (Ubuntu 22.04, Python 3.10, TensorRT 8.6 / 10.3). JetPack 5's Python 3.8 is below
# edgeanom's minimum (3.9); there only export/jetson/build_engine.sh (trtexec, no Python) applies.
if ! "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 9))'; then
  echo "install_jetson: $("$PY" -V 2>&1) is too old: edgeanom needs Python >= 3.9 (JetPack 6); on JetPack 5 use export/jetson/build_engine.sh" >&2
  exit 1
fi

if ! "$PY" -c "import cv2" 2>/dev/null; then
  echo "install_jetson: no system OpenCV found (sudo apt-get install python3-opencv, or JetPack's nvidia-opencv)" >&2
  exit 1
fi
"$PY" - <<'PY'
import cv2, re
info = cv2.getBuildInformation()
m = re.search(r"GStreamer:\s*(\S+)", info)
print(f"install_jetson: system OpenCV {cv2.__version__}, GStreamer: {m.group(1) if m else 'unknown'}")
PY
"$PY" -m pip install --no-deps .
# JetPack's OpenCV (and TensorRT's bindings) are built against numpy 1.x: numpy 2 would break `import cv2`.
NUMPY_SPEC="numpy>=1.21,<2"
"$PY" -m pip install "$NUMPY_SPEC" "typer>=0.12" "rich>=13" "PyYAML>=6" "paho-mqtt>=2.0" "pyserial>=3.5" "psutil>=5.9"
if [[ -n "${ORT_WHEEL:-}" ]]; then "$PY" -m pip install "$ORT_WHEEL"; else "$PY" -m pip install "onnxruntime>=1.16"; fi
"$PY" -c "import cv2; print('install_jetson: cv2 in use:', cv2.__file__)"
"$PY" -c "import tensorrt; print('install_jetson: TensorRT', tensorrt.__version__)" 2>/dev/null \
  || echo "install_jetson: TensorRT Python bindings not found (sudo apt-get install python3-libnvinfer)"
edgeanom info
