#!/usr/bin/env bash
# Read-only captures of facts the pages state about the live GPU (issue 9): what NVML and nvidia-smi say
# about MIG with MIG mode as it is (current/pending mode, the GPU-instance profiles NVML lists, or the error it
# gives), the compute capability the MIG checks key on, and the /proc/devices names and /dev node modes of this
# driver. Nothing is changed: no MIG mode, compute mode, persistence, clock or power change, no reset.
#
#   OUT=$OUT bash tests/gpu/capture-facts.sh        # on the GPU host; files land in $OUT/facts/
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-out/gpu}/facts
mkdir -p "$OUT"
run() {  # name, command...: output and exit status, never fails the script
  local name=$1; shift
  { echo "\$ $*"; timeout 20 "$@" 2>&1; echo "[exit $?]"; } > "$OUT/$name.txt"
}
run nvidia-smi-query nvidia-smi --query-gpu=index,name,driver_version,compute_cap,mig.mode.current,mig.mode.pending,compute_mode,persistence_mode --format=csv
run nvidia-smi-q-mig nvidia-smi -q -d MIG          # not a documented -d section on every driver: the error is data
run nvidia-smi-mig-lgip nvidia-smi mig -lgip       # GPU-instance profiles; with MIG off the driver says why it will not list them
run proc-devices cat /proc/devices
run dev-nodes ls -ln /dev/nvidia0 /dev/nvidiactl /dev/nvidia-uvm /dev/nvidia-uvm-tools /dev/nvidia-modeset
run driver-version cat /proc/driver/nvidia/version
run driver-params cat /proc/driver/nvidia/params
# NVLink fabric (issue 14): each GPU's fabric state as the doctor's NVML probe reads it (0 = Not Supported expected on these VMs)
run nvml-fabric env PYTHONPATH="$PWD/snippets:$PWD/.gpu-deps" "$PY" -c 'import json, pynvml; from gpu_runbook.probes.nvml import collect_nvml; print(json.dumps([d.get("fabric") for d in collect_nvml(pynvml).get("devices", [])]))'
PYTHONPATH="$PWD/.gpu-deps${PYTHONPATH:+:$PYTHONPATH}" "$PY" - > "$OUT/nvml-mig-profiles.json" 2>&1 <<'EOF'
"""NVML's view of MIG on each GPU, read-only: mode, and every GPU-instance profile it describes (or its error)."""
import json

import pynvml

out = {}
pynvml.nvmlInit()
try:
    out["driver"] = pynvml.nvmlSystemGetDriverVersion()
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        gpu = {"name": pynvml.nvmlDeviceGetName(handle)}
        try:
            gpu["compute_capability"] = list(pynvml.nvmlDeviceGetCudaComputeCapability(handle))
            current, pending = pynvml.nvmlDeviceGetMigMode(handle)
            gpu["mig_mode"] = {"current": current, "pending": pending}
        except pynvml.NVMLError as exc:
            gpu["mig_mode_error"] = str(exc)
        profiles = {}
        for profile in range(pynvml.NVML_GPU_INSTANCE_PROFILE_COUNT):
            try:
                info = pynvml.nvmlDeviceGetGpuInstanceProfileInfo(handle, profile)
                profiles[profile] = {"id": info.id, "slices": info.sliceCount, "instances": info.instanceCount,
                                     "memory_mib": info.memorySizeMB, "sm": info.multiprocessorCount}
            except pynvml.NVMLError as exc:
                profiles[profile] = {"error": str(exc)}
        gpu["gpu_instance_profiles"] = profiles
        out[str(index)] = gpu
finally:
    pynvml.nvmlShutdown()
print(json.dumps(out, indent=1, sort_keys=True))
EOF
echo "capture-facts: wrote $(ls "$OUT" | wc -l) files to $OUT"
