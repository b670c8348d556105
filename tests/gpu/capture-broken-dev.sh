#!/usr/bin/env bash
# Real captures of broken /dev states, with the host left alone: each case runs in a private mount
# namespace (unshare -m, private propagation) whose /dev is a fresh tmpfs holding only the NVIDIA nodes
# the case names, the way a container runtime builds one. The host's /dev, the driver and the GPU are not
# touched; the namespace and its tmpfs go away when the case ends. Needs root (mount, mknod).
#
# Usage (GPU host): OUT=dir bash tests/gpu/capture-broken-dev.sh
#   -> $OUT/dev-<case>.json (redacted snapshot) and $OUT/dev-<case>.txt (what nvidia-smi, NVML and, where
#      installed, PyTorch print in that state).
set -uo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
OUT=${OUT:-out/gpu}
export PYTHONPATH="$PWD/snippets${PYTHONPATH:+:$PYTHONPATH}"
TORCH_PY=${TORCH_PY:-$(command -v python3)}

inner() {  # runs inside the namespace: build /dev, then collect and try the tools as $user
  local name=$1 user=$2; shift 2
  mount -t tmpfs -o nosuid,mode=755,size=65536k tmpfs /dev || return 2
  mknod -m 666 /dev/null c 1 3; mknod -m 666 /dev/zero c 1 5; mknod -m 666 /dev/urandom c 1 9
  local spec node major minor mode
  for spec in "$@"; do
    IFS=: read -r node major minor mode <<<"$spec"
    mknod -m "$mode" "/dev/$node" c "$major" "$minor"
  done
  local as=()
  [ "$user" = root ] || as=(runuser -u "$user" --)
  "${as[@]}" "$PY" -m gpu_runbook collect --redact > "$OUT/dev-$name.json"
  {
    echo "## ls -l /dev"; ls -l /dev
    echo "## nvidia-smi"; timeout 30 "${as[@]}" nvidia-smi; echo "exit $?"
    echo "## pynvml nvmlInit"
    timeout 30 "${as[@]}" "$PY" -c 'import pynvml
try:
    pynvml.nvmlInit(); print("nvmlInit ok:", pynvml.nvmlDeviceGetCount(), "GPU(s)")
except pynvml.NVMLError as e:
    print(type(e).__name__ + ":", e)'
    echo "## torch"
    timeout 90 "${as[@]}" "$TORCH_PY" -c 'import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("is_available:", torch.cuda.is_available())
torch.zeros(1).cuda()
print("tensor on GPU ok")' 2>&1 | tail -n 4
  } > "$OUT/dev-$name.txt" 2>&1
}

if [ "${1:-}" = --inner ]; then
  shift
  inner "$@"
  exit $?
fi
if [ "$(id -u)" != 0 ] || ! command -v unshare >/dev/null; then
  echo "capture-broken-dev: needs root and unshare (util-linux) for a private mount namespace" >&2
  exit 2
fi
mkdir -p "$OUT"
chmod 755 "$OUT"
major() { awk -v n="$1" '$2 == n { print $1; exit }' /proc/devices; }
ctl=$(major nvidiactl); ctl=${ctl:-195}
uvm=$(major nvidia-uvm)
if [ -z "$uvm" ]; then
  echo "capture-broken-dev: nvidia-uvm is not in /proc/devices; load the driver first" >&2
  exit 2
fi
gpus=$(for n in /dev/nvidia[0-9]*; do [ -c "$n" ] && echo "${n#/dev/}:$ctl:${n#/dev/nvidia}"; done)
all=("nvidiactl:$ctl:255:666" "nvidia-uvm:$uvm:0:666" "nvidia-uvm-tools:$uvm:1:666")
for g in $gpus; do all+=("$g:666"); done
case_() { echo "== $1"; unshare -m --propagation private bash "$0" --inner "$@"; echo "rc $?"; }
case_ private-dev-healthy root "${all[@]}"
case_ private-dev-no-uvm root "nvidiactl:$ctl:255:666" $(for g in $gpus; do echo "$g:666"; done)
case_ private-dev-no-nodes root
case_ private-dev-mode-0600-nonroot nobody "nvidiactl:$ctl:255:600" "nvidia-uvm:$uvm:0:600" \
  $(for g in $gpus; do echo "$g:600"; done)
ls -l "$OUT"/dev-*
