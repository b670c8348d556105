"""The collection plan: every file, path, directory and command the probes may touch, in one place.

Nothing outside this plan is read or run; tests hold the probes to it and the docs show it
(docs/reference/collection-plan.md is generated from these tables). Paths are host paths: under
`--root /host` they are read below /host.
"""

from __future__ import annotations

from typing import NamedTuple

# Files whose text is recorded (globs allowed). Each is read-only, capped at MAX_FILE_BYTES.
FILES: tuple[str, ...] = (
    # kernel and driver
    "/proc/devices",
    "/proc/modules",
    "/proc/cmdline",
    "/proc/sys/kernel/osrelease",
    "/proc/sys/kernel/tainted",
    "/proc/driver/nvidia/version",
    "/proc/driver/nvidia/params",
    "/proc/driver/nvidia/registry",
    "/proc/driver/nvidia/gpus/*/information",
    "/proc/driver/nvidia/capabilities/mig/config",
    "/proc/driver/nvidia/capabilities/mig/monitor",
    "/proc/driver/nvidia-caps/mig-minors",
    "/proc/driver/nvidia-caps/sys-minors",
    # MIG instances that exist (host) or were granted (container): one access file per GPU and compute
    # instance, named by the GPU's device minor; their DeviceFileMinor names the /dev/nvidia-caps node
    "/proc/driver/nvidia/capabilities/gpu*/mig/gi*/access",
    "/proc/driver/nvidia/capabilities/gpu*/mig/gi*/ci*/access",
    "/sys/module/nvidia/version",
    "/sys/module/nvidia_uvm/version",
    "/sys/module/nouveau/initstate",
    "/sys/module/nvidia/initstate",
    "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c",
    "/proc/sys/kernel/modules_disabled",
    "/proc/sys/net/core/bpf_jit_harden",
    "/proc/sys/net/core/bpf_jit_enable",
    "/etc/modprobe.d/*.conf",
    "/lib/modprobe.d/*.conf",
    "/usr/lib/modprobe.d/*.conf",
    "/run/modprobe.d/*.conf",
    "/etc/udev/rules.d/*nvidia*.rules",
    "/lib/udev/rules.d/*nvidia*.rules",
    "/usr/lib/udev/rules.d/*nvidia*.rules",
    "/etc/os-release",
    "/etc/hostname",
    # cgroups and container context
    "/proc/self/cgroup",
    "/proc/1/cgroup",
    "/proc/self/mountinfo",
    "/proc/self/status",
    "/sys/fs/cgroup/cgroup.controllers",
    "/sys/fs/cgroup/devices.list",
    "/sys/fs/cgroup/devices/devices.list",
    "/sys/fs/selinux/enforce",
    "/etc/selinux/config",
    "/sys/fs/selinux/booleans/container_use_devices",
    "/sys/fs/selinux/booleans/container_use_xserver_devices",
    "/run/.containerenv",
    # container toolkit and runtimes
    "/etc/nvidia-container-runtime/config.toml",
    "/etc/nvidia-container-runtime/config.toml.d/*.toml",
    "/etc/docker/daemon.json",
    "/etc/containerd/config.toml",
    "/etc/containerd/conf.d/*.toml",
    "/etc/containerd/config.d/*.toml",
    "/etc/crio/crio.conf",
    "/etc/crio/crio.conf.d/*",
    "/etc/crio/conf.d/*.toml",  # where nvidia-ctk 1.18.0-1.19.0 wrote CRI-O's drop-in (CRI-O does not read it)
    "/etc/cdi/*.yaml",
    "/etc/cdi/*.json",
    "/var/run/cdi/*.yaml",
    "/var/run/cdi/*.json",
    "/etc/ld.so.conf.d/*.conf",
    # Kubernetes node: the kubelet's device checkpoint (what device plugins registered) and GPU feature
    # discovery's label file for NFD's local source
    "/var/lib/kubelet/device-plugins/kubelet_internal_checkpoint",
    "/etc/kubernetes/node-feature-discovery/features.d/*",
)

# Paths whose lstat is recorded (device nodes, links, marker files). Missing ones are recorded as ENOENT:
# the absence of /dev/nvidia-uvm is a fact a check needs.
PATHS: tuple[str, ...] = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
    "/dev/nvidia-uvm-tools",
    "/dev/nvidia-modeset",
    "/dev/nvidia[0-9]*",
    "/dev/nvidia-caps/*",
    "/dev/nvidia-caps-imex-channels/*",
    "/dev/nvidia-nvswitch*",
    "/dev/nvidia-nvlink",
    "/dev/dri/*",
    "/.dockerenv",
    "/run/.containerenv",
    "/usr/bin/nvidia-smi",
    "/usr/bin/nvidia-container-cli",
    "/usr/bin/nvidia-container-runtime",
    "/usr/bin/nvidia-container-runtime-hook",
    "/usr/bin/nvidia-ctk",
    "/usr/bin/nvidia-cdi-hook",
    "/usr/local/cuda/compat",
    "/usr/local/cuda/compat/*",
    "/etc/nvidia-container-runtime",
    "/etc/cdi",
    "/var/run/cdi",
    "/sys/fs/cgroup/cgroup.controllers",
    "/sys/fs/cgroup/devices",
    "/sys/fs/selinux",
    "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so*",
    "/usr/lib/x86_64-linux-gnu/libcuda.so*",
    "/usr/lib64/libnvidia-ml.so*",
    "/usr/lib64/libcuda.so*",
    "/usr/lib/aarch64-linux-gnu/libnvidia-ml.so*",
    "/usr/lib/aarch64-linux-gnu/libcuda.so*",
    "/usr/local/nvidia/lib64/libnvidia-ml.so*",
    "/usr/local/nvidia/lib64/libcuda.so*",
    "/lib/firmware/nvidia/*/gsp_*",
    "/run/nvidia/driver",
    "/run/nvidia/driver/usr/bin/nvidia-smi",
    # toolkit config targets: ldconfig named in config.toml (toolkit 1.15.0+ picks <path>.real where it
    # exists, so both spellings are looked at), debug log files and their directory
    "/sbin/ldconfig",
    "/sbin/ldconfig.real",
    "/usr/sbin/ldconfig",
    "/usr/sbin/ldconfig.real",
    "/var/log",
    "/var/log/nvidia-container-toolkit.log",
    "/var/log/nvidia-container-runtime.log",
    # MPS: the control daemon's default pipe directory and its socket (present while the daemon runs)
    "/tmp/nvidia-mps",  # noqa: S108  (lstat only)
    "/tmp/nvidia-mps/control",  # noqa: S108  (lstat only)
    "/etc/kubernetes/node-feature-discovery/features.d",
)

# Paths the collecting process's environment names, lstat only like PATHS: a CUDA client started here would
# use them. Only absolute, plain paths (no "..", no glob characters) are taken.
ENV_PATHS: dict[str, tuple[str, ...]] = {
    "CUDA_MPS_PIPE_DIRECTORY": ("", "/control"),  # the MPS pipe directory and the daemon's control socket
}


def env_paths(environ: dict[str, str]) -> tuple[str, ...]:
    """The ENV_PATHS this environment names.

    >>> env_paths({"CUDA_MPS_PIPE_DIRECTORY": "/run/mps/"})
    ('/run/mps', '/run/mps/control')
    >>> env_paths({"CUDA_MPS_PIPE_DIRECTORY": "../x"}), env_paths({"CUDA_MPS_PIPE_DIRECTORY": "/a/*"}), env_paths({})
    ((), (), ())
    """
    paths: list[str] = []
    for name, suffixes in ENV_PATHS.items():
        value = environ.get(name, "").strip().rstrip("/")
        if not value.startswith("/") or "/../" in value + "/" or any(c in value for c in "*?[]\n"):
            continue
        paths += [value + suffix for suffix in suffixes]
    return tuple(paths)


# Directories whose entries are listed ({name: link target or None}).
DIRS: tuple[str, ...] = (
    "/dev/char",
    "/dev/nvidia-caps",
    "/var/lib/kubelet/device-plugins",  # kubelet.sock and one socket per registered device plugin
)

# The part of PATHS and DIRS under /dev: recorded before any live probe runs (as root, NVML and nvidia-smi
# create missing nodes), and the paths once more after them.
DEV_PATHS: tuple[str, ...] = tuple(p for p in PATHS if p.startswith("/dev/"))
DEV_DIRS: tuple[str, ...] = tuple(p for p in DIRS if p.startswith("/dev/"))

# Device nodes the open test (probes/devopen.py) opens O_RDONLY|O_NONBLOCK and closes at once, recording
# only the errno: EPERM = the devices cgroup (v1 list or v2 eBPF filter) denies it, ENOENT = the node is
# missing, EACCES = mode bits deny this user. The only place a probe opens a /dev node. Why these two:
# opening the control node or UVM allocates a per-file state and touches no GPU (nvidia-smi and every
# CUDA program open both first). GPU nodes (/dev/nvidiaN) are left out: without persistence mode their
# first open initialises the GPU, which is slow and can hang on a sick one; NVML covers them.
OPEN_TESTS: tuple[str, ...] = (
    "/dev/nvidiactl",
    "/dev/nvidia-uvm",
)
OPEN_TEST_TIMEOUT_S = 3.0

# Environment variables recorded from the collecting process (prefixes end with "_").
ENV_NAMES: tuple[str, ...] = (
    "NVIDIA_", "CUDA_", "GPU_RUNBOOK_", "LD_LIBRARY_PATH", "LD_PRELOAD", "KUBERNETES_SERVICE_HOST",
    "container",
)


class Command(NamedTuple):
    """A read-only command the probes may run: argument list (never a shell) and its own timeout."""

    argv: tuple[str, ...]
    timeout: float
    why: str


COMMANDS: dict[str, Command] = {
    "nvidia-smi": Command(
        ("nvidia-smi", "--query-gpu=index,name,uuid,driver_version,pci.bus_id,compute_mode,mig.mode.current",
         "--format=csv,noheader"),
        8.0, "the driver answers at all; a hang here is itself a diagnosis"),
    "nvidia-smi-version": Command(("nvidia-smi", "--version"), 5.0,
                                  "driver, CUDA and NVML versions as the tool reports them"),
    "nvidia-container-cli-info": Command(("nvidia-container-cli", "info"), 8.0,
                                         "what libnvidia-container sees: driver, NVML, devices"),
    "nvidia-container-cli-version": Command(("nvidia-container-cli", "--version"), 5.0, "toolkit version"),
    "nvidia-ctk-version": Command(("nvidia-ctk", "--version"), 5.0, "toolkit version"),
    "nvidia-ctk-cdi-list": Command(("nvidia-ctk", "cdi", "list"), 8.0, "CDI devices the toolkit resolves"),
    "getenforce": Command(("getenforce",), 3.0, "SELinux mode"),
    "mokutil-sb-state": Command(("mokutil", "--sb-state"), 3.0, "Secure Boot state"),
    # Reads the kernel ring buffer (needs root or kernel.dmesg_restrict=0); no level filter, because the
    # driver's Xid lines do not carry one fixed log level.
    "dmesg": Command(("dmesg",), 5.0, "kernel log: NVRM Xid lines, the GPU errors since boot"),
}

# Where a containerised driver exposes its root filesystem on the host. The NVIDIA GPU Operator's
# driver container mounts it at /run/nvidia/driver: nvidia-smi and libnvidia-ml.so.1 live below it,
# not on the host's PATH or loader path. When the host has no nvidia-smi of its own, the probes run
# the tools and NVML with this root's bin and lib directories appended to PATH and LD_LIBRARY_PATH.
DRIVER_ROOTS: tuple[str, ...] = ("/run/nvidia/driver",)
DRIVER_ROOT_BIN = ("usr/bin",)
DRIVER_ROOT_LIBS = ("usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib/aarch64-linux-gnu", "usr/lib")

MAX_FILE_BYTES = 1024 * 1024
# Whole-run budget: a probe that would pass it is abandoned and recorded as "deadline".
DEFAULT_DEADLINE_S = 15.0
NVML_TIMEOUT_S = 10.0
