#!/usr/bin/env bash
# Capture a redacted snapshot while an MPS control daemon runs on a private pipe directory, then quit it.
# Leaves the GPU as it was: no compute-mode change, and with no CUDA client connecting the daemon never
# starts an MPS server. The directories are private (mktemp), so no other MPS user on the host is touched.
# Usage (GPU host): OUT=dir bash tests/gpu/capture-mps.sh   -> $OUT/snapshot-mps.json, $OUT/mps-control.log
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export PYTHONPATH="$PWD/snippets${PYTHONPATH:+:$PYTHONPATH}"
if ! command -v nvidia-cuda-mps-control >/dev/null; then
  echo "capture-mps: nvidia-cuda-mps-control is not installed here" >&2
  exit 2
fi
work=$(mktemp -d /tmp/gpu-runbook-mps.XXXXXX)
export CUDA_MPS_PIPE_DIRECTORY="$work/pipe" CUDA_MPS_LOG_DIRECTORY="$work/log"
mkdir -p "$CUDA_MPS_PIPE_DIRECTORY" "$CUDA_MPS_LOG_DIRECTORY"
stop() {
  echo quit | nvidia-cuda-mps-control >/dev/null 2>&1
  for _ in $(seq 50); do [ -S "$CUDA_MPS_PIPE_DIRECTORY/control" ] || break; sleep 0.1; done
  cp "$CUDA_MPS_LOG_DIRECTORY/control.log" "$OUT/mps-control.log" 2>/dev/null
  rm -rf "$work"
}
trap stop EXIT
nvidia-cuda-mps-control -d || exit 2
for _ in $(seq 50); do [ -S "$CUDA_MPS_PIPE_DIRECTORY/control" ] && break; sleep 0.1; done
"$PY" -m gpu_runbook collect --redact --force -o "$OUT/snapshot-mps.json"
"$PY" -m gpu_runbook check --snapshot "$OUT/snapshot-mps.json" --only mps-daemon,mps-thread-percentage,mps-multi-gpu
