#!/usr/bin/env bash
# The test command: lint, then the whole suite (GPU/TensorRT tests skip with a reason on CPU machines).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
"$PY" -m ruff check python tests benchmarks tools
"$PY" -m ruff format --check python tests benchmarks tools
"$PY" -m pytest -q -p no:cacheprovider "$@"
