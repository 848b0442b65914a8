#!/usr/bin/env bash
# Builds the C++ core's stress driver and cross-build check with AddressSanitizer + UndefinedBehaviorSanitizer
# and runs them (any report aborts with a non-zero exit). About a minute on a 2-core machine:
# ~40 s of compiling, ~15 s of running. Not part of every CI run; run it after changing csrc/.
#   bash tools/sanitize.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-300}
OUT=${TMPDIR:-/tmp}/edgeanom-sanitize
mkdir -p "$OUT"
FLAGS=(-std=c++17 -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
       -ffp-contract=off -Icsrc -pthread)
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
g++ "${FLAGS[@]}" csrc/tools/fuzz_core.cpp -o "$OUT/fuzz_core"
g++ "${FLAGS[@]}" csrc/tools/crosscheck.cpp -o "$OUT/crosscheck"
"$OUT/fuzz_core" "$ROUNDS"
a=$("$OUT/crosscheck"); b=$("$OUT/crosscheck" generic)
[[ "$a" == "$b" ]] || { echo "sanitize: kernel families disagree: $a vs $b" >&2; exit 1; }
echo "sanitize: crosscheck $a (both kernel families), no sanitizer report"
