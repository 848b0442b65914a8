#!/usr/bin/env bash
# Build a TensorRT engine for an exported edgeanom bundle with trtexec, on the device that will run it.
# Works without the edgeanom Python package (only trtexec, which JetPack ships in /usr/src/tensorrt/bin).
#
#   export/jetson/build_engine.sh BUNDLE_DIR [--fp16 | --int8 CALIB_CACHE] [--max-batch N] [--opt-batch N]
#                                            [--workspace MB] [--shape CxHxW | TxC | F] [--trtexec PATH]
#
# The engine goes to BUNDLE_DIR/engines/model.<precision>.b<N>.plan (a raw plan: trtexec, DeepStream and
# Triton load it as is), with a build log next to it. The timing cache BUNDLE_DIR/engines/timing.cache is
# reused and updated, so rebuilding after a model change is fast.
#
# TensorRT 10 (and 8.5/8.6 on JetPack 5 / 6.0): FP16 = --fp16 on the FP32 ONNX (the fused score head pinned to FP32 with precision constraints);
#              INT8 = --int8 --calib=CALIB_CACHE (a calibration cache written by `edgeanom export --engine
#              --int8 --calib-data PATH` on a machine with TensorRT's Python bindings).
# TensorRT 11: no precision flags (networks are strongly typed): FP16 builds from model.fp16.onnx
#              (`edgeanom export --fp16` writes it); INT8 needs a Q/DQ-quantized ONNX (not produced yet).
# The input shape is read from BUNDLE_DIR/bundle.json (python3 or jq) unless --shape is given.
set -euo pipefail

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }

[[ $# -ge 1 ]] || usage 2
case "$1" in -h|--help) usage 0 ;; esac
BUNDLE=$1; shift
PRECISION=fp32 CALIB="" MAX_BATCH=8 OPT_BATCH="" WORKSPACE=1024 SHAPE="" TRTEXEC=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --fp16) PRECISION=fp16 ;;
    --int8) PRECISION=int8; CALIB=${2:?--int8 needs a calibration cache file}; shift ;;
    --max-batch) MAX_BATCH=${2:?}; shift ;;
    --opt-batch) OPT_BATCH=${2:?}; shift ;;
    --workspace) WORKSPACE=${2:?}; shift ;;
    --shape) SHAPE=${2:?}; shift ;;
    --trtexec) TRTEXEC=${2:?}; shift ;;
    -h|--help) usage 0 ;;
    *) echo "build_engine: unknown option $1" >&2; usage 2 ;;
  esac
  shift
done

die() { echo "build_engine: $*" >&2; exit 1; }
[[ -f "$BUNDLE/bundle.json" ]] || die "'$BUNDLE' is not an edgeanom bundle (no bundle.json)"
[[ "$MAX_BATCH" =~ ^[1-9][0-9]*$ ]] || die "--max-batch must be a positive integer, got '$MAX_BATCH'"
[[ -z "$OPT_BATCH" ]] && OPT_BATCH=$(( (MAX_BATCH + 1) / 2 ))
(( OPT_BATCH >= 1 && OPT_BATCH <= MAX_BATCH )) || die "--opt-batch must be between 1 and --max-batch"

if [[ -z "$TRTEXEC" ]]; then
  TRTEXEC=$(command -v trtexec || true)
  [[ -z "$TRTEXEC" && -x /usr/src/tensorrt/bin/trtexec ]] && TRTEXEC=/usr/src/tensorrt/bin/trtexec
fi
[[ -n "$TRTEXEC" && -x "$TRTEXEC" ]] || die "trtexec not found: on a Jetson it is /usr/src/tensorrt/bin/trtexec (JetPack's tensorrt package); elsewhere install TensorRT, or pass --trtexec PATH"

# bundle.json fields: onnx.file, onnx.fp16_file, onnx.fused, input.shape
read_field() {
  local expr=$1
  if command -v python3 >/dev/null 2>&1; then
    python3 - "$BUNDLE/bundle.json" "$expr" <<'PY'
import json, sys
meta = json.load(open(sys.argv[1]))
onnx = meta.get("onnx") or {}
value = {
    "file": onnx.get("file") or "model.onnx",
    "fp16_file": onnx.get("fp16_file") or "",
    "fused": "yes" if onnx.get("fused") else "",
    "input": onnx.get("input") or "input",
    "shape": "x".join(str(d) for d in meta["input"]["shape"]),
}[sys.argv[2]]
print(value)
PY
  elif command -v jq >/dev/null 2>&1; then
    case "$expr" in
      file) jq -r '.onnx.file // "model.onnx"' "$BUNDLE/bundle.json" ;;
      fp16_file) jq -r '.onnx.fp16_file // ""' "$BUNDLE/bundle.json" ;;
      fused) jq -r 'if .onnx.fused then "yes" else "" end' "$BUNDLE/bundle.json" ;;
      input) jq -r '.onnx.input // "input"' "$BUNDLE/bundle.json" ;;
      shape) jq -r '.input.shape | map(tostring) | join("x")' "$BUNDLE/bundle.json" ;;
    esac
  else
    die "need python3 or jq to read bundle.json (or pass --shape and run from a bundle exported with defaults)"
  fi
}

ONNX=$(read_field file); FP16_ONNX=$(read_field fp16_file); FUSED=$(read_field fused); INPUT=$(read_field input)
[[ -n "$SHAPE" ]] || SHAPE=$(read_field shape)
[[ -f "$BUNDLE/$ONNX" ]] || die "$BUNDLE/$ONNX is missing: run \`edgeanom export $BUNDLE\` first"

# TensorRT's version: trtexec prints "[TensorRT v100300]" (major*10000 + minor*100 + patch; 8.x: v8601).
HELP=$("$TRTEXEC" --help 2>&1 || true)
CODE=$(grep -oE 'TensorRT v[0-9]+' <<<"$HELP" | head -n1 | grep -oE '[0-9]+' || true)
if [[ -n "$CODE" ]]; then
  if (( CODE >= 100000 )); then MAJOR=$(( CODE / 10000 )); else MAJOR=$(( CODE / 1000 )); fi
elif command -v dpkg-query >/dev/null 2>&1; then
  MAJOR=$(dpkg-query -W -f='${Version}' libnvinfer-bin 2>/dev/null | cut -d. -f1 || true)
fi
[[ -n "${MAJOR:-}" ]] || { echo "build_engine: could not tell the TensorRT version; assuming 10" >&2; MAJOR=10; }
# build without the timing run that follows: --skipInference (TensorRT >= 8.6), --buildOnly before that
BUILD_ONLY=--skipInference
grep -q -- '--skipInference' <<<"$HELP" || BUILD_ONLY=--buildOnly

mkdir -p "$BUNDLE/engines"
PLAN="engines/model.${PRECISION}.b${MAX_BATCH}.plan"
ARGS=(
  "--saveEngine=$PLAN"
  "--minShapes=${INPUT}:1x${SHAPE}"
  "--optShapes=${INPUT}:${OPT_BATCH}x${SHAPE}"
  "--maxShapes=${INPUT}:${MAX_BATCH}x${SHAPE}"
  "--memPoolSize=workspace:${WORKSPACE}M"
  "--timingCacheFile=engines/timing.cache"
  "$BUILD_ONLY"
)
KEEP_FP32=()
# Per-layer precision flags exist in trtexec from TensorRT 9 on; on 8.5/8.6 (JetPack 5 / 6.0) the fused score head
# builds in FP16 like the rest (export's FP16 parity table shows what that costs).
if [[ -n "$FUSED" ]] && (( MAJOR >= 9 )); then
  KEEP_FP32=("--precisionConstraints=prefer" "--layerPrecisions=score_head/*:fp32")
elif [[ -n "$FUSED" && "$PRECISION" != fp32 ]]; then
  echo "build_engine: TensorRT $MAJOR's trtexec cannot pin the score head to FP32 (needs TensorRT >= 9); it builds in $PRECISION" >&2
fi

if (( MAJOR >= 11 )); then
  case "$PRECISION" in
    fp32) CMD=("$TRTEXEC" "--onnx=$ONNX" "${ARGS[@]}") ;;
    fp16)
      [[ -n "$FP16_ONNX" && -f "$BUNDLE/$FP16_ONNX" ]] \
        || die "TensorRT $MAJOR builds FP16 from the FP16 ONNX: run \`edgeanom export $BUNDLE --fp16\` first"
      CMD=("$TRTEXEC" "--onnx=$FP16_ONNX" "${ARGS[@]}") ;;
    int8) die "TensorRT $MAJOR removed INT8 calibration: INT8 needs a Q/DQ-quantized ONNX, which edgeanom does not produce yet; use --fp16" ;;
  esac
else
  case "$PRECISION" in
    fp32) CMD=("$TRTEXEC" "--onnx=$ONNX" "${ARGS[@]}") ;;
    fp16) CMD=("$TRTEXEC" "--onnx=$ONNX" --fp16 "${KEEP_FP32[@]}" "${ARGS[@]}") ;;
    int8)
      CALIB_ABS=$(cd "$(dirname "$CALIB")" && pwd)/$(basename "$CALIB")
      [[ -f "$CALIB_ABS" ]] || die "calibration cache '$CALIB' not found"
      CMD=("$TRTEXEC" "--onnx=$ONNX" --int8 --fp16 "--calib=$CALIB_ABS" "${KEEP_FP32[@]}" "${ARGS[@]}") ;;
  esac
fi

LOG="$BUNDLE/${PLAN%.plan}.log"
echo "build_engine: TensorRT $MAJOR, $PRECISION, batch 1/$OPT_BATCH/$MAX_BATCH, input $INPUT ${SHAPE}"
echo "build_engine: (cd $BUNDLE && ${CMD[*]})"
if (cd "$BUNDLE" && "${CMD[@]}") >"$LOG" 2>&1; then
  echo "build_engine: wrote $BUNDLE/$PLAN (log: $LOG)"
else
  tail -n 30 "$LOG" >&2
  die "trtexec failed (full log: $LOG)"
fi
