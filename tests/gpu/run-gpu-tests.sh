#!/usr/bin/env bash
# `make test-gpu`: GPU tests and notebooks on the live host, then a run record in tests/gpu/runs/.
# Works air-gapped: if ./wheelhouse exists (make wheelhouse), missing tools are installed from it
# into .gpu-deps/ (never into the system Python). Read-only on the GPU: no mode, clock or reset changes.
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
if [ ! -e /proc/driver/nvidia/version ]; then
  echo "test-gpu: no NVIDIA driver loaded on this host (/proc/driver/nvidia/version missing); nothing to verify" >&2
  exit 2
fi
OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
if ! "$PY" -c 'import papermill, nbval, ipykernel, pynvml' 2>/dev/null; then
  if [ -d wheelhouse ]; then
    "$PY" -m pip install -q --no-index --find-links wheelhouse --target .gpu-deps \
      nvidia-ml-py pytest papermill nbval ipykernel nbformat || exit 2
    export PYTHONPATH="$PWD/.gpu-deps${PYTHONPATH:+:$PYTHONPATH}"
  else
    # No wheelhouse: try the package index (a GPU host with internet); say what to do if that fails too.
    "$PY" -m pip install -q --target .gpu-deps nvidia-ml-py pytest papermill nbval ipykernel nbformat || {
      echo "test-gpu: papermill/nbval/ipykernel/pynvml missing, no ./wheelhouse and no package index;" \
           "build one elsewhere with: make wheelhouse WHEEL_PYTHON=<this host's python>" >&2
      exit 2
    }
    export PYTHONPATH="$PWD/.gpu-deps${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
# Absolute: notebook kernels start in notebooks/, where relative entries would point nowhere.
export PYTHONPATH="$PWD/snippets${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -m pytest -p no:cacheprovider -o addopts="-ra" -m gpu tests/gpu --junitxml "$OUT/gpu-junit.xml" 2>&1 \
  | tee "$OUT/pytest-gpu.txt"
status=${PIPESTATUS[0]}
"$PY" -m pytest -p no:cacheprovider -o addopts="" --nbval-lax notebooks 2>&1 | tee "$OUT/nbval.txt"
nbval=${PIPESTATUS[0]}
# A redacted live snapshot: the real capture that healthy-host scenarios are built from.
"$PY" -m gpu_runbook collect --redact --force -o "$OUT/snapshot-live.json"
# Whole-process time of `gpu-runbook check` next to `nvidia-smi -q` (median of 11 alternating runs) and
# where it goes; record_run.py puts it into the run record (the Performance page shows it).
"$PY" benchmarks/bench_check.py --runs 11 --json "$OUT/bench-check.json" > "$OUT/bench-check.txt" 2>&1 \
  || echo "test-gpu: benchmark failed (see $OUT/bench-check.txt); the record will have no benchmark" >&2
"$PY" tests/gpu/record_run.py --junit "$OUT/gpu-junit.xml" --bench "$OUT/bench-check.json" | tee "$OUT/record.txt"
record=${PIPESTATUS[0]}
cp tests/gpu/runs/*.json "$OUT/" 2>/dev/null || true
echo "test-gpu: pytest exit $status, nbval exit $nbval, record exit $record"
[ "$status" = 0 ] && [ "$nbval" = 0 ] && [ "$record" = 0 ]
